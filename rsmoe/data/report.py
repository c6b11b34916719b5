"""The validation report: issues (file, record, problem, fix), counts, and quarantine queries.

`rsmoe.data.validation.validate` fills it; `prepare` reads it back with `from_json` and asks
"is this record quarantined?" through the `quarantined_*` helpers. Also home of the RSIEval
question-type normaliser, shared by validation and the loaders.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rsmoe.data.records import QA_TYPES

_QA_ALIASES = {
    "exist": "presence", "existence": "presence", "presences": "presence", "object_presence": "presence",
    "count": "quantity", "counting": "quantity", "number": "quantity", "quantities": "quantity",
    "colour": "color", "colors": "color", "colours": "color",
    "absolute_position": "ab_position", "abs_position": "ab_position", "ab_pos": "ab_position",
    "position": "ab_position", "location": "ab_position",
    "relative_position": "re_position", "rel_position": "re_position", "re_pos": "re_position",
    "area_comparison": "area_comp", "area_compare": "area_comp", "area": "area_comp",
    "road_orientation": "road_ori", "road_direction": "road_ori", "road_dir": "road_ori",
    "image_type": "image", "image_property": "image", "scene_classification": "scene", "scene_type": "scene",
    "reason": "reasoning",
}


def normalize_qa_type(label: Any) -> str | None:
    """An RSIEval question type as written by people -> one of QA_TYPES, or None if unknown.

    'Absolute Position', 'ab-position', ' COLOUR ', 'road direction' -> ab_position, color, road_ori.
    """
    if not isinstance(label, str):
        return None
    key = re.sub(r"[\s\-./]+", "_", label.strip().lower()).strip("_")
    if key in QA_TYPES:
        return key
    return _QA_ALIASES.get(key)


# --------------------------------------------------------------------------- report

@dataclass(frozen=True)
class Issue:
    """One problem: which file, which record in it, what is wrong, how to fix it.

    `table` and `key` say what a quarantine entry removes (indices are 0-based list positions):
      images       image id                         label_files  label id (file stem)
      labels       (image id, 1-based line)         captions     (annotation index, filename)
      qa_images    (annotation index, filename, number of its QA pairs: all are dropped)
      qa           (annotation index, filename, pair index)
      captioned    record index (captioned sets: an image and all of its sentences)
      captioned_sentences   (record index, sentence index)
    A filename is None when the record has none.
    """

    file: str
    record: str
    problem: str
    fix: str
    table: str = ""
    key: Any = None

    def __str__(self) -> str:
        return f"{self.file} [{self.record}]: {self.problem}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = list(self.key) if isinstance(self.key, tuple) else self.key
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Issue":
        key = d.get("key")
        return cls(d["file"], d["record"], d["problem"], d["fix"], d.get("table", ""),
                   tuple(key) if isinstance(key, list) else key)


TABLES = ("images", "label_files", "labels", "captions", "qa_images", "qa", "captioned", "captioned_sentences")


@dataclass
class ValidationReport:
    raw_dir: str  # as given when relative, else its name: no absolute paths of this machine
    hard_errors: list[Issue] = field(default_factory=list)
    quarantine: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    expectations: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> file, width, height, ...
    inputs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.hard_errors

    # ---- what prepare asks: "is this record quarantined?" (`x in report.quarantined_...()`)
    def _keys(self, table: str) -> set:
        return {i.key for i in self.quarantine if i.table == table}

    def quarantined_images(self) -> set[str]:
        """Image ids (file stems in images/) to skip."""
        return self._keys("images")

    def quarantined_label_lines(self) -> dict[str, set[int]]:
        """image id -> 1-based labelTxt line numbers to skip (the file's other rows are fine)."""
        out: dict[str, set[int]] = {}
        for image_id, line in self._keys("labels"):
            out.setdefault(image_id, set()).add(line)
        return out

    def quarantined_captions(self) -> set[str]:
        """Filenames whose caption to skip (every caption of a filename used twice)."""
        return {fn for _, fn in self._keys("captions") if fn is not None}

    def quarantined_caption_indices(self) -> set[int]:
        """0-based positions in the captions file's `annotations` list to skip, including records
        without a usable filename: filter the raw list with these before strict parsing."""
        return {i for i, _ in self._keys("captions")}

    def quarantined_qa_annotations(self) -> set[str]:
        """Filenames of QA-file annotations to skip whole (caption and every pair)."""
        return {fn for _, fn, _ in self._keys("qa_images") if fn is not None}

    def quarantined_qa_annotation_indices(self) -> set[int]:
        """0-based positions in the QA file's `annotations` list to skip whole."""
        return {a for a, _, _ in self._keys("qa_images")}

    def _qa_triples(self) -> set[tuple[int, str | None, int]]:
        whole = {(a, fn, j) for a, fn, n in self._keys("qa_images") for j in range(n)}
        return self._keys("qa") | whole

    def quarantined_qa(self) -> set[tuple[str, int]]:
        """(filename, 0-based pair index) of QA pairs to skip, including all pairs of skipped annotations."""
        return {(fn, j) for _, fn, j in self._qa_triples() if fn is not None}

    def quarantined_qa_indices(self) -> set[tuple[int, int]]:
        """(annotation index, pair index), both 0-based, of QA pairs to skip."""
        return {(a, j) for a, _, j in self._qa_triples()}

    def quarantined_captioned(self) -> set[int]:
        """Captioned sets (rsicap / karpathy / folder): record indices of images to skip whole."""
        return self._keys("captioned")

    def quarantined_sentences(self) -> set[tuple[int, int]]:
        """Captioned sets: (record index, sentence index) of references to skip."""
        return self._keys("captioned_sentences")

    def kept_images(self) -> dict[str, dict[str, Any]]:
        """image id -> {file (relative to raw_dir), width, height, bands, dtype, format} of usable images."""
        bad = self.quarantined_images()
        return {k: v for k, v in self.images.items() if k not in bad}

    # ---- output
    def to_dict(self) -> dict[str, Any]:
        lines = self.quarantined_label_lines()
        return {
            "ok": self.ok, "raw_dir": self.raw_dir, "inputs": self.inputs, "params": self.params,
            "counts": self.counts, "images": self.images, "expectations": self.expectations,
            "hard_errors": [i.to_dict() for i in self.hard_errors],
            "warnings": [i.to_dict() for i in self.warnings],
            "quarantine": {  # `issues` is the truth; the rest are the helpers' answers, for non-Python readers
                "issues": [i.to_dict() for i in self.quarantine],
                "images": sorted(self.quarantined_images()),
                "label_files": sorted(self._keys("label_files")),
                "label_lines": {k: sorted(v) for k, v in sorted(lines.items())},
                "captions": sorted(self.quarantined_captions()),
                "caption_indices": sorted(self.quarantined_caption_indices()),
                "qa_annotations": sorted(self.quarantined_qa_annotations()),
                "qa": [list(k) for k in sorted(self.quarantined_qa())],
                "qa_indices": [list(k) for k in sorted(self.quarantined_qa_indices())],
                "captioned": sorted(self.quarantined_captioned()),
                "captioned_sentences": [list(k) for k in sorted(self.quarantined_sentences())],
            },
        }

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "ValidationReport":
        """Read a report.json written by `to_json` (what `prepare` does)."""
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        issues = lambda items: [Issue.from_dict(i) for i in items]  # noqa: E731
        return cls(raw_dir=d["raw_dir"], hard_errors=issues(d.get("hard_errors", [])),
                   quarantine=issues(d.get("quarantine", {}).get("issues", [])),
                   warnings=issues(d.get("warnings", [])), counts=d.get("counts", {}),
                   expectations=d.get("expectations", []), images=d.get("images", {}),
                   inputs=d.get("inputs", {}), params=d.get("params", {}))

    def summary(self, max_items: int = 10) -> str:
        out = [f"validate {self.raw_dir}"]
        width = max([12] + [len(t) for t in self.counts])
        out.append(f"  {'table':<{width}} {'total':>7} {'kept':>7} {'quarantined':>12}")
        for table in TABLES:
            if table in self.counts:
                c = self.counts[table]
                out.append(f"  {table:<{width}} {c['total']:>7} {c['kept']:>7} {c['quarantined']:>12}")
        problems = [("HARD", i) for i in self.hard_errors] + [("quarantined", i) for i in self.quarantine]
        if problems:
            out.append(f"problems ({len(self.hard_errors)} hard, {len(self.quarantine)} quarantined), "
                       f"first {min(max_items, len(problems))}:")
            out += [f"  - {kind}: {issue}" for kind, issue in problems[:max_items]]
            if len(problems) > max_items:
                out.append(f"  ... {len(problems) - max_items} more in the report's 'quarantine' / 'hard_errors'")
        if self.warnings:
            out.append(f"warnings: {len(self.warnings)} (first: {self.warnings[0]})")
        failed = sum(not e["success"] for e in self.expectations)
        out.append(f"expectations: {len(self.expectations) - failed} passed, {failed} failed")
        verdict = "OK" if self.ok else f"FAILED: {len(self.hard_errors)} hard error(s)"
        kept = self.counts.get("images") or self.counts.get("captioned", {})
        out.append(f"verdict: {verdict}; {kept.get('kept', 0)} of {kept.get('total', 0)} images kept")
        return "\n".join(out)
