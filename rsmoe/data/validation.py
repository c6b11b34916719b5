"""The `validate` stage's logic: Great Expectations suites over the raw DOTA-style folder.

    RAW_DIR/images/<id>.png|.tif|.tiff|.jpg|.jpeg   scenes (or ready-made RSICap crops)
    RAW_DIR/labelTxt/<id>.txt                       DOTA labels
    captions file (RSICap) / QA file (RSIEval)      optional, anywhere

Each input becomes a pandas table (one row per image, label file, label row, caption, QA image
and QA pair) with columns computed in Python (decodability, bounds, word counts, ...); a GX 1.x
suite per table then checks them, and every unexpected row maps back to one `Issue` naming the
file, the record and the fix. Record-level problems are quarantined and the rest carries on;
`hard_errors` (missing folders, unreadable annotation files, duplicate ids, too much
quarantined) make the stage fail. `prepare` asks the report "is this record quarantined?".
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from rsmoe.data.dota import LabelFormatError, parse_row, read_label_rows
from rsmoe.data.images import IMAGE_EXTENSIONS, ImageReadError, list_images, load_rgb, probe
from rsmoe.data.records import DOTA_V15_CLASSES, QA_TYPES
from rsmoe.data.report import Issue, ValidationReport, normalize_qa_type  # noqa: F401 (re-exported)
from rsmoe.errors import InputError
from rsmoe.params import ValidateParams

IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # re-exported for prepare: both stages list the same files
CROP_NAME = re.compile(r"^(P\d{4,})_(\d{4})\.png$")  # RSICap crop of DOTA scene PXXXX
_ABSOLUTE = r"^(?:/|\\|[A-Za-z]:)"
_DOTDOT = r"(?:^|[/\\])\.\.(?:[/\\]|$)"
SUPPORTED_DTYPES = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
SUPPORTED_COLOUR = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV",
                    "I", "I;16", "I;16B", "I;16L", "I;16N", "F",  # Pillow modes
                    "MINISBLACK", "MINISWHITE", "RGB", "PALETTE", "SEPARATED", "YCBCR", "CIELAB")  # TIFF
RSICAP_FORMAT = '{"annotations": [{"image_id", "filename", "text_input", "text_output"}, ...]} (RSICap)'
RSIEVAL_FORMAT = ('{"annotations": [{"filename", "caption", "qa_pairs": [{"question", "answer", "type"}]}, ...]}'
                  " (RSIEval)")

# --------------------------------------------------------------------------- GX plumbing

@dataclass(frozen=True)
class _Check:
    """One expectation and how an unexpected row becomes an Issue (None: not quarantined)."""

    expectation: Any
    issue: Callable[[pd.Series], Issue | None]
    outcome: str = "quarantine"  # or "warning", "hard"


@functools.cache
def _gx():
    os.environ["GX_ANALYTICS_ENABLED"] = "false"  # before the import: no usage statistics, no network
    # GX logs hundreds of INFO lines while importing and some of its modules set their own level:
    # quiet the parent before the import and every GX logger after it
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return gx


class _Runner:
    """One ephemeral GX context per `validate` call; `run(table, df, checks)` per table."""

    def __init__(self) -> None:
        self.gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = self.gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.source = self.context.data_sources.add_pandas("raw")
        self.results: list[dict[str, Any]] = []

    def run(self, table: str, df: pd.DataFrame, checks: list[_Check]) -> dict[str, list[Issue]]:
        out: dict[str, list[Issue]] = {"quarantine": [], "warning": [], "hard": []}
        if df.empty:
            return out
        gx = self.gx
        for i, c in enumerate(checks):
            c.expectation.meta = {"check": i}
            if c.outcome == "warning":
                c.expectation.severity = "warning"
        batch_def = self.source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
        suite = self.context.suites.add(gx.ExpectationSuite(name=table, expectations=[c.expectation for c in checks]))
        vd = self.context.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch_def, suite=suite))
        result = vd.run(batch_parameters={"dataframe": df}, result_format="COMPLETE")
        picked: dict[str, dict[int, Issue]] = {k: {} for k in out}
        for r in sorted(result.results, key=lambda r: r.expectation_config.meta["check"]):
            check = checks[r.expectation_config.meta["check"]]
            info = r.exception_info or {}
            if info.get("raised_exception"):
                raise RuntimeError(f"Great Expectations failed on table '{table}', "
                                   f"{r.expectation_config.type}: {info.get('exception_message')}")
            res = r.result or {}
            self.results.append({
                "table": table, "expectation": r.expectation_config.type,
                "column": r.expectation_config.kwargs.get("column"), "severity": check.outcome,
                "success": bool(r.success), "unexpected_count": int(res.get("unexpected_count") or 0),
                "unexpected_examples": [_plain(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
            })
            for idx in res.get("unexpected_index_list") or []:
                if any(idx in p for p in picked.values()):
                    continue  # one issue per record: the first failing check in suite order
                issue = check.issue(df.loc[idx])
                if issue is not None:
                    picked[check.outcome][idx] = issue
        return {k: [v[i] for i in sorted(v)] for k, v in picked.items()}


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (str, int, float, bool, type(None))) else str(v)


# --------------------------------------------------------------------------- tables

def _display(path: Path, raw_dir: Path) -> str:
    try:
        return path.resolve().relative_to(raw_dir.resolve()).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() else path.name


def _image_row(path: Path, raw_dir: Path, bands: tuple[int, int, int]) -> dict[str, Any]:
    row: dict[str, Any] = {"image_id": path.stem, "file": _display(path, raw_dir), "width": None,
                           "height": None, "bands": None, "dtype": None, "colour": None, "format": None,
                           "bands_usable": None, "decodable": False, "truncated": False,
                           "problem": None, "fix": None}
    try:
        info = probe(path)
        row.update(width=info.width, height=info.height, bands=info.bands, dtype=info.dtype,
                   colour=info.mode.split("/")[-1], format=info.format,
                   bands_usable=info.format != "TIFF" or info.bands < 3 or info.bands > max(bands))
        load_rgb(path, bands)  # full decode: truncation and corrupt pixel data show only here
        row["decodable"] = True
    except ImageReadError as err:
        row.update(truncated=err.kind == "truncated", problem=err.problem, fix=err.fix)
    return row


def _image_table(raw_dir: Path, files: list[Path], bands, progress: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm

    workers = max(1, min(4, os.cpu_count() or 1))  # decoding releases the GIL; order is kept by map
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(files), desc="decode images", unit="img",
                                                    disable=not progress) as bar:
        rows = []
        for row in pool.map(lambda p: _image_row(p, raw_dir, bands), files):
            rows.append(row)
            bar.update(1)
    df = pd.DataFrame(rows, dtype=object)
    label_dir = raw_dir / "labelTxt"
    labels = {p.stem for p in label_dir.glob("*.txt") if p.is_file()} if label_dir.is_dir() else set()
    df["has_label"] = [i in labels for i in df["image_id"]]
    return df


def _image_checks(p: ValidateParams, bands) -> list[_Check]:
    E = _gx().expectations

    def issue(problem: Callable[[pd.Series], str], fix: str | Callable[[pd.Series], str], table="images"):
        return lambda r: Issue(r["file"], "image", problem(r), fix if isinstance(fix, str) else fix(r),
                               table, r["image_id"])

    def size(r: pd.Series) -> str:
        return f"{r['width']}x{r['height']} px is outside the allowed {p.min_side}..{p.max_side} px per side"

    return [
        _Check(E.ExpectColumnValuesToBeInSet(column="truncated", value_set=[False]),
               issue(lambda r: r["problem"], "re-download or re-export the image; the file ends early")),
        _Check(E.ExpectColumnValuesToBeInSet(column="bands_usable", value_set=[True]),
               issue(lambda r: f"has {r['bands']} bands but bands={list(bands)} asks for band {max(bands)}",
                     "set data.bands in params.yaml to 3 band indices this image has")),
        _Check(E.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True]),
               issue(lambda r: r["problem"], lambda r: r["fix"])),
        _Check(E.ExpectColumnValuesToBeInSet(column="dtype", value_set=list(SUPPORTED_DTYPES)),
               issue(lambda r: f"unsupported sample type {r['dtype']}", "re-export as 8/16-bit integer or float32")),
        _Check(E.ExpectColumnValuesToBeInSet(column="colour", value_set=list(SUPPORTED_COLOUR)),
               issue(lambda r: f"unsupported colour model {r['colour']}", "re-export as RGB or multi-band GeoTIFF")),
        _Check(E.ExpectColumnValuesToBeBetween(column="width", min_value=p.min_side, max_value=p.max_side),
               issue(size, "drop the image or change validate.min_side / max_side in params.yaml")),
        _Check(E.ExpectColumnValuesToBeBetween(column="height", min_value=p.min_side, max_value=p.max_side),
               issue(size, "drop the image or change validate.min_side / max_side in params.yaml")),
        _Check(E.ExpectColumnValuesToBeUnique(column="image_id"), lambda r: None, "hard"),  # reported below
        _Check(E.ExpectColumnValuesToBeInSet(column="has_label", value_set=[True]),
               lambda r: Issue(r["file"], "image", f"no labelTxt/{r['image_id']}.txt: no objects for this image",
                               "add the DOTA label file, or ignore if the image is used for captions only",
                               "images", r["image_id"]), "warning"),
    ]


def _label_tables(raw_dir: Path, images: pd.DataFrame, bad: set[str]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(label_files: one row per labelTxt, labels: one row per object row of a kept image, the number
    of rows dropped with their quarantined image)."""
    label_dir = raw_dir / "labelTxt"
    files = sorted(p for p in label_dir.glob("*.txt") if p.is_file()) if label_dir.is_dir() else []
    sizes = {r["image_id"]: (r["width"], r["height"]) for _, r in images.iterrows()}
    file_rows, rows, dropped = [], [], 0
    for path in files:
        rel = _display(path, raw_dir)
        file_rows.append({"label_id": path.stem, "file": rel, "has_image": path.stem in sizes})
        if path.stem not in sizes:
            continue
        _, label_rows = read_label_rows(path)
        if path.stem in bad:  # nothing to check against: the rows go with their image
            dropped += len(label_rows)
            continue
        width, height = sizes[path.stem]
        rows += [_label_row(path.stem, rel, row, width, height) for row in label_rows]
    return pd.DataFrame(file_rows, dtype=object), pd.DataFrame(rows, dtype=object), dropped


def _label_row(image_id: str, rel: str, row, width, height) -> dict[str, Any]:
    parts = row.text.split()
    coords = None
    if len(parts) >= 8:
        try:
            coords = [float(v) for v in parts[:8]]
        except ValueError:
            coords = None
    numeric = coords is not None and all(math.isfinite(c) for c in coords)
    out: dict[str, Any] = {
        "image_id": image_id, "file": rel, "line": row.line, "text": row.text, "n_fields": len(parts),
        "coords_numeric": numeric if len(parts) in (9, 10) else None,
        "category": parts[8] if len(parts) in (9, 10) else None,
        "difficult": parts[9] if len(parts) == 10 else None,
        "outside_px": None, "area": None, "parse_ok": True, "problem": None, "fix": None,
    }
    if numeric and len(parts) in (9, 10):
        xs, ys = coords[0::2], coords[1::2]
        area = 0.5 * abs(sum(xs[i] * ys[i - 3] - xs[i - 3] * ys[i] for i in range(4)))  # shoelace
        out["area"] = area
        if width is not None and height is not None:
            out["outside_px"] = max(0.0, -min(xs), -min(ys), max(xs) - width, max(ys) - height)
    try:
        parse_row(row, rel)
    except LabelFormatError as err:
        out.update(parse_ok=False, problem=err.problem, fix=err.fix)
    return out


def _label_checks(p: ValidateParams) -> tuple[list[_Check], list[_Check]]:
    E = _gx().expectations
    classes = ", ".join(DOTA_V15_CLASSES)

    def row_issue(problem: Callable[[pd.Series], str], fix: str | Callable[[pd.Series], str]):
        return lambda r: Issue(r["file"], f"line {r['line']}", problem(r), fix if isinstance(fix, str) else fix(r),
                               "labels", (r["image_id"], int(r["line"])))

    file_checks = [_Check(
        E.ExpectColumnValuesToBeInSet(column="has_image", value_set=[True]),
        lambda r: Issue(r["file"], "file", f"no image images/{r['label_id']}.* for this label file "
                        f"(looked for {', '.join(IMAGE_EXTENSIONS)})",
                        "add the image or delete the orphan label file", "label_files", r["label_id"]))]
    row_checks = [
        _Check(E.ExpectColumnValuesToBeInSet(column="n_fields", value_set=[9, 10]),
               row_issue(lambda r: f"expected 8 coordinates, a category and a difficult flag, found "
                         f"{r['n_fields']} fields", "write 'x1 y1 x2 y2 x3 y3 x4 y4 category difficult'")),
        _Check(E.ExpectColumnValuesToBeInSet(column="coords_numeric", value_set=[True]),
               row_issue(lambda r: f"non-numeric or non-finite coordinate in '{' '.join(r['text'].split()[:8])}'",
                         "coordinates must be finite numbers in pixels")),
        _Check(E.ExpectColumnValuesToBeInSet(column="category", value_set=list(DOTA_V15_CLASSES)),
               row_issue(lambda r: f"unknown category '{r['category']}'", f"use one of the DOTA classes: {classes}")),
        _Check(E.ExpectColumnValuesToBeInSet(column="difficult", value_set=["0", "1"]),
               row_issue(lambda r: f"difficult flag '{r['difficult']}' is not 0 or 1",
                         "set the last field to 0 (normal) or 1 (difficult)")),
        _Check(E.ExpectColumnValuesToBeBetween(column="outside_px", min_value=0, max_value=p.coord_tolerance),
               row_issue(lambda r: f"polygon lies {r['outside_px']:.1f} px outside the image "
                         f"(tolerance {p.coord_tolerance:g} px)",
                         "fix the coordinates (pixels of this image, origin top-left) or raise "
                         "validate.coord_tolerance")),
        _Check(E.ExpectColumnValuesToBeBetween(column="area", min_value=0, strict_min=True),
               row_issue(lambda r: "polygon has zero area (corners coincide or are collinear)",
                         "give the four distinct corners of the oriented box")),
        _Check(E.ExpectColumnValuesToBeInSet(column="parse_ok", value_set=[True]),  # same rule as prepare
               row_issue(lambda r: r["problem"], lambda r: r["fix"])),
    ]
    return file_checks, row_checks


# ---- captions and QA

class _HardError(Exception):
    def __init__(self, issue: Issue):
        self.issue = issue


def _read_annotations(path: Path, raw_dir: Path, fmt: str) -> tuple[str, list]:
    """(display name, the `annotations` list) or _HardError naming the file and the format."""
    shown = _display(path, raw_dir)
    if not path.is_file():
        raise _HardError(Issue(shown, "file", "file not found", f"check the path in params.yaml; expected {fmt}"))
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _HardError(Issue(shown, "file", f"not valid JSON ({err})", f"fix the file; expected {fmt}")) from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        got = f"keys {sorted(data)[:5]}" if isinstance(data, dict) else type(data).__name__
        raise _HardError(Issue(shown, "file", f"wrong top-level structure (got {got})", f"write it as {fmt}"))
    return shown, data["annotations"]


def _text(v: Any) -> str | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    return v.strip() or None if isinstance(v, str) else None


class _Targets:
    """Which files an annotation's `filename` may name: an image in images/ or a crop of a scene."""

    def __init__(self, images: pd.DataFrame, bad: set[str]):
        self.by_name = dict(zip((Path(f).name for f in images["file"]), images["image_id"]))
        self.ids, self.bad = set(images["image_id"]), bad

    def check(self, filename: str | None) -> tuple[bool | None, str | None]:
        """(ok, problem); None when the filename checks already reject it."""
        if filename is None or re.search(_ABSOLUTE, filename) or re.search(_DOTDOT, filename):
            return None, None
        if filename in self.by_name:
            if self.by_name[filename] in self.bad:
                return False, f"refers to images/{filename}, which is quarantined"
            return True, None
        m = CROP_NAME.match(filename)
        if not m:
            return False, f"'{filename}' is not in images/ and is not a crop name like P0001_0002.png"
        scene = m.group(1)
        if scene not in self.ids:
            return False, f"'{filename}' is not in images/ and its scene {scene} is missing (no images/{scene}.*)"
        if scene in self.bad:
            return False, f"is a crop of scene {scene}, which is quarantined"
        return True, None


def _annotation_table(annotations: list, targets: _Targets, kind: str) -> pd.DataFrame:
    rows = []
    for i, a in enumerate(annotations):
        obj = isinstance(a, dict)
        a = a if obj else {}
        fn = a.get("filename") if isinstance(a.get("filename"), str) and a.get("filename").strip() else None
        ok, problem = targets.check(fn)
        row = {"index": i, "is_object": obj, "filename": fn, "target_ok": ok, "target_problem": problem}
        if kind == "captions":
            text = _text(a.get("text_output"))
            row.update(image_id=None if a.get("image_id") is None else str(a.get("image_id")), text_output=text,
                       words=len(text.split()) if text else None)
        else:
            pairs = a.get("qa_pairs")
            row.update(caption=_text(a.get("caption")), qa_is_list=isinstance(pairs, list) if obj else None,
                       n_pairs=len(pairs) if isinstance(pairs, list) else 0)
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)


def _annotation_checks(table: str, shown: str, p: ValidateParams, df: pd.DataFrame) -> list[_Check]:
    E = _gx().expectations
    users = {col: _users(df, col) for col in ("filename", "image_id") if col in df}

    def key(r: pd.Series) -> tuple:
        base = (int(r["index"]), r["filename"])
        return base if table == "captions" else (*base, int(r["n_pairs"]))

    def issue(problem: Callable[[pd.Series], str], fix: str):
        return lambda r: Issue(shown, _record(r), problem(r), fix, table, key(r))

    def dup_filename(r: pd.Series) -> Issue:  # every user: which one is right is not ours to guess
        return Issue(shown, _record(r), f"filename '{r['filename']}' is used by annotations "
                     f"{', '.join(map(str, users['filename'][r['filename']]))}",
                     "keep one annotation per image and delete the others", table, key(r))

    def dup_id(r: pd.Series) -> Issue | None:  # the first user keeps the id
        first = users["image_id"][r["image_id"]][0]
        return None if first == r["index"] else Issue(
            shown, _record(r), f"duplicate image_id '{r['image_id']}' (first used by annotation {first})",
            "give every annotation its own image_id, or delete the duplicate", table, key(r))

    checks = [
        _Check(E.ExpectColumnValuesToBeInSet(column="is_object", value_set=[True]),
               issue(lambda r: "annotation is not a JSON object", "write each annotation as {...} with named fields")),
        _Check(E.ExpectColumnValuesToNotBeNull(column="filename"),
               issue(lambda r: "missing or empty 'filename'", "give the image's file name, e.g. 'P0001_0002.png'")),
        _Check(E.ExpectColumnValuesToNotMatchRegex(column="filename", regex=_ABSOLUTE),
               issue(lambda r: f"filename '{r['filename']}' is an absolute path",
                     "make it relative to RAW_DIR/images, e.g. 'P0001_0002.png'")),
        _Check(E.ExpectColumnValuesToNotMatchRegex(column="filename", regex=_DOTDOT),
               issue(lambda r: f"filename '{r['filename']}' contains '..'", "remove '..' from the filename")),
        _Check(E.ExpectColumnValuesToBeInSet(column="target_ok", value_set=[True]),
               issue(lambda r: f"filename {r['target_problem']}",
                     "add the image (or its DOTA scene) to images/, fix the name, or remove the annotation")),
    ]
    if table == "captions":
        checks += [
            _Check(E.ExpectColumnValuesToNotBeNull(column="text_output"),
                   issue(lambda r: "empty or missing text_output", "write the caption in 'text_output'")),
            _Check(E.ExpectColumnValuesToBeBetween(column="words", min_value=p.caption_min_words,
                                                   max_value=p.caption_max_words),
                   issue(lambda r: f"caption has {r['words']} words, outside "
                         f"{p.caption_min_words}..{p.caption_max_words}",
                         "rewrite the caption or change validate.caption_min_words / caption_max_words")),
            _Check(E.ExpectColumnValuesToBeUnique(column="image_id"), dup_id),
        ]
    else:
        checks += [
            _Check(E.ExpectColumnValuesToBeInSet(column="qa_is_list", value_set=[True]),
                   issue(lambda r: "'qa_pairs' is missing or not a list",
                         "write 'qa_pairs': [{question, answer, type}, ...]")),
            _Check(E.ExpectColumnValuesToNotBeNull(column="caption"),
                   lambda r: Issue(shown, _record(r), "empty or missing 'caption'",
                                   "write the reference caption (its QA pairs are still used)", table, key(r)),
                   "warning"),
        ]
    checks.append(_Check(E.ExpectColumnValuesToBeUnique(column="filename"), dup_filename))
    return checks


def _users(df: pd.DataFrame, col: str) -> dict[Any, list[int]]:
    """value -> annotation indices that use it."""
    out: dict[Any, list[int]] = {}
    for value, index in zip(df[col], df["index"]):
        if value is not None:
            out.setdefault(value, []).append(int(index))
    return out


def _record(r: pd.Series) -> str:
    return f"annotation {r['index']}" + (f" ({r['filename']})" if r.get("filename") else "")


def _qa_table(annotations: list, skip: set[int]) -> pd.DataFrame:
    """One row per QA pair of the annotations not in `skip` (quarantined whole)."""
    rows = []
    for i, a in enumerate(annotations):
        if i in skip or not isinstance(a, dict):
            continue
        pairs = a.get("qa_pairs")
        fn = a["filename"] if isinstance(a.get("filename"), str) and a["filename"].strip() else None
        for j, qa in enumerate(pairs if isinstance(pairs, list) else []):
            obj = isinstance(qa, dict)
            qa = qa if obj else {}
            raw_type = qa.get("type")
            rows.append({"ann": i, "pair": j, "filename": fn, "is_object": obj, "question": _text(qa.get("question")),
                         "answer": _text(qa.get("answer")), "raw_type": raw_type,
                         "type": normalize_qa_type(raw_type)})
    return pd.DataFrame(rows, dtype=object)


def _qa_checks(shown: str) -> list[_Check]:
    E = _gx().expectations

    def issue(problem: Callable[[pd.Series], str], fix: str):
        return lambda r: Issue(shown, f"qa {r['pair']} of {r['filename'] or 'annotation ' + str(r['ann'])}",
                               problem(r), fix, "qa", (int(r["ann"]), r["filename"], int(r["pair"])))

    return [
        _Check(E.ExpectColumnValuesToBeInSet(column="is_object", value_set=[True]),
               issue(lambda r: "QA pair is not a JSON object", "write it as {question, answer, type}")),
        _Check(E.ExpectColumnValuesToNotBeNull(column="question"),
               issue(lambda r: "empty or missing question", "write the question text")),
        _Check(E.ExpectColumnValuesToNotBeNull(column="answer"),
               issue(lambda r: "empty or missing answer", "write the answer text")),
        _Check(E.ExpectColumnValuesToNotBeNull(column="type"),
               issue(lambda r: f"unknown question type {r['raw_type']!r}",
                     f"use one of the RSIEval types: {', '.join(QA_TYPES)}")),
    ]


# --------------------------------------------------------------------------- the stage logic

def validate(raw_dir: str | Path, params: ValidateParams, *, captions: Path | None = None, qa: Path | None = None,
             bands: Sequence[int] = (0, 1, 2), progress: bool = False) -> ValidationReport:
    """Check RAW_DIR (and the optional captions / QA files); never raises for bad data."""
    raw_dir = Path(raw_dir)
    bands = tuple(int(b) for b in bands)
    report = ValidationReport(
        raw_dir=raw_dir.as_posix() if not raw_dir.is_absolute() else raw_dir.name,
        params=params.model_dump(mode="json"),
        inputs={"bands": list(bands), "captions": captions and _display(Path(captions), raw_dir),
                "qa": qa and _display(Path(qa), raw_dir)})
    images_dir = raw_dir / "images"
    if not raw_dir.is_dir():
        report.hard_errors.append(Issue(report.raw_dir, "directory", "RAW_DIR does not exist or is not a folder",
                                        "pass the folder holding images/ and labelTxt/ (paths.raw in params.yaml)"))
        return report
    if not images_dir.is_dir():
        report.hard_errors.append(Issue("images/", "directory", "RAW_DIR has no images/ folder",
                                        "put scenes in RAW_DIR/images/<id>.png|.tif, labels in RAW_DIR/labelTxt/"))
        return report
    files = list_images(images_dir)
    report.warnings += [Issue(_display(p, raw_dir), "file", "not an image extension, ignored",
                              f"remove it or convert it to one of {', '.join(IMAGE_EXTENSIONS)}", "images")
                        for p in sorted(images_dir.iterdir())
                        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_EXTENSIONS]
    if not files:
        report.hard_errors.append(Issue("images/", "directory", "no image files in images/",
                                        f"add scenes with one of the extensions {', '.join(IMAGE_EXTENSIONS)}"))
        return report
    runner = _Runner()
    images = _check_images(report, runner, raw_dir, files, params, bands, progress)
    bad = report.quarantined_images()
    _check_labels(report, runner, raw_dir, images, params, bad)
    for path, kind in ((captions, "captions"), (qa, "qa")):
        if path is None:
            continue
        try:
            shown, annotations = _read_annotations(Path(path), raw_dir, RSICAP_FORMAT if kind == "captions"
                                                   else RSIEVAL_FORMAT)
        except _HardError as err:
            report.hard_errors.append(err.issue)
            continue
        _check_annotations(report, runner, kind, shown, annotations, images, bad, params)
    report.expectations = runner.results
    return report


def _check_images(report: ValidationReport, runner: _Runner, raw_dir: Path, files: list[Path],
                  params: ValidateParams, bands, progress: bool) -> pd.DataFrame:
    df = _image_table(raw_dir, files, bands, progress)
    res = runner.run("images", df, _image_checks(params, bands))
    report.quarantine += res["quarantine"]
    report.warnings += res["warning"]
    bad = report.quarantined_images()
    for image_id, group in df.groupby("image_id", sort=True):
        if len(group) > 1:
            report.hard_errors.append(Issue(", ".join(group["file"]), f"image {image_id}",
                                            f"{len(group)} files share the image id '{image_id}'",
                                            "keep one file per id (delete or rename the others)", "images", image_id))
    for _, r in df.iterrows():
        report.images.setdefault(r["image_id"], {
            "file": r["file"], "width": r["width"], "height": r["height"], "bands": r["bands"],
            "dtype": r["dtype"], "format": r["format"],
            "status": "quarantined" if r["image_id"] in bad else "kept"})
    n, n_bad = len(df), int(sum(i in bad for i in df["image_id"]))
    report.counts["images"] = {"total": n, "kept": n - n_bad, "quarantined": n_bad}
    if n_bad == n:
        what = "no readable image" if not df["decodable"].any() else "no usable image"
        report.hard_errors.append(Issue("images/", "directory", f"{what}: all {n} images are quarantined",
                                        "fix the images listed in the quarantine (re-export or re-download them)"))
    elif n_bad / n > params.max_quarantine_fraction:
        report.hard_errors.append(Issue("images/", "directory",
                                        f"{n_bad} of {n} images quarantined ({n_bad / n:.0%}), more than "
                                        f"validate.max_quarantine_fraction = {params.max_quarantine_fraction:g}",
                                        "fix the quarantined images, or raise validate.max_quarantine_fraction"))
    return df


def _check_labels(report: ValidationReport, runner: _Runner, raw_dir: Path, images: pd.DataFrame,
                  params: ValidateParams, bad: set[str]) -> None:
    files, rows, dropped = _label_tables(raw_dir, images, bad)
    file_checks, row_checks = _label_checks(params)
    for table, df, checks, extra in (("label_files", files, file_checks, 0), ("labels", rows, row_checks, dropped)):
        res = runner.run(table, df, checks)
        report.quarantine += res["quarantine"]
        report.warnings += res["warning"]
        n_bad = len(res["quarantine"]) + extra  # labels: + rows of quarantined images
        report.counts[table] = {"total": len(df) + extra, "kept": len(df) - len(res["quarantine"]),
                                "quarantined": n_bad}


def _check_annotations(report: ValidationReport, runner: _Runner, kind: str, shown: str, annotations: list,
                       images: pd.DataFrame, bad: set[str], params: ValidateParams) -> None:
    table = "captions" if kind == "captions" else "qa_images"
    df = _annotation_table(annotations, _Targets(images, bad), table)
    res = runner.run(table, df, _annotation_checks(table, shown, params, df))
    report.quarantine += res["quarantine"]
    report.warnings += res["warning"]
    n_bad = len({i.key for i in res["quarantine"]})
    report.counts[table] = {"total": len(df), "kept": len(df) - n_bad, "quarantined": n_bad}
    if kind != "qa":
        return
    dropped = {i.key for i in res["quarantine"]}  # (index, filename, n_pairs): all its pairs go too
    pairs = _qa_table(annotations, {k[0] for k in dropped})
    res = runner.run("qa", pairs, _qa_checks(shown))
    report.quarantine += res["quarantine"]
    n_dropped = sum(k[2] for k in dropped)
    report.counts["qa"] = {"total": len(pairs) + n_dropped, "kept": len(pairs) - len(res["quarantine"]),
                           "quarantined": len(res["quarantine"]) + n_dropped}


# --------------------------------------------------------------------------- captioned sets

def validate_captioned(fmt: str, annotations: str | Path, images: str | Path, params: ValidateParams, *,
                       bands: Sequence[int] = (0, 1, 2), progress: bool = False) -> ValidationReport:
    """Check a captioned set (`rsmoe.data.captioned`: rsicap | karpathy | folder) with the DOTA
    path's rules: each image record is kept or quarantined whole (no filename, a path that leaves
    the image folder, a missing or unreadable image, a size outside the limits, an unknown split),
    each sentence on its own (empty, a repeat of one of the image's earlier captions, too few / many
    words); an image left with no sentence goes too. Never raises for bad records."""
    from rsmoe.data.captioned import read_captioned

    annotations, images = Path(annotations), Path(images)
    bands = tuple(int(b) for b in bands)
    root = images.parent
    shown = _display(annotations, root)
    report = ValidationReport(raw_dir=root.as_posix() if not root.is_absolute() else root.name,
                              params=params.model_dump(mode="json"),
                              inputs={"format": fmt, "annotations": shown, "images": _display(images, root),
                                      "bands": list(bands)})
    if not images.is_dir():
        report.hard_errors.append(Issue(_display(images, root), "directory", "the image folder does not exist",
                                        "set data.images in params.yaml (or --images) to the folder of the images"))
        return report
    try:
        items = read_captioned(fmt, annotations)
    except InputError as err:
        report.hard_errors.append(Issue(shown, str(err.record or "file"), err.problem, err.fix))
        return report
    if not items:
        report.hard_errors.append(Issue(shown, "file", "no records", "add at least one image with a caption"))
        return report
    runner = _Runner()
    df = _captioned_image_table(items, images, bands, progress)
    report.quarantine += runner.run("captioned", df, _captioned_image_checks(shown, images.name, params))["quarantine"]
    bad = report.quarantined_captioned()
    sentences = _sentence_table(items, bad)
    dropped = runner.run("captioned_sentences", sentences, _sentence_checks(shown, params))["quarantine"]
    report.quarantine += dropped
    gone = report.quarantined_sentences()
    for item in items:
        if item.index not in bad and all((item.index, j) in gone for j in range(len(item.sentences))):
            problem = "no usable caption left (every sentence quarantined)" if item.sentences else "no sentences"
            report.quarantine.append(Issue(shown, item.record, problem, "give the image at least one good caption",
                                           "captioned", item.index))
    n, n_bad = len(items), len(report.quarantined_captioned())
    report.counts["captioned"] = {"total": n, "kept": n - n_bad, "quarantined": n_bad}
    report.counts["captioned_sentences"] = {"total": len(sentences), "kept": len(sentences) - len(dropped),
                                            "quarantined": len(dropped)}
    if n_bad == n:
        report.hard_errors.append(Issue(shown, "file", f"all {n} images are quarantined",
                                        "fix the records listed in the quarantine"))
    elif n_bad / n > params.max_quarantine_fraction:
        report.hard_errors.append(Issue(shown, "file", f"{n_bad} of {n} images quarantined ({n_bad / n:.0%}), "
                                        f"more than validate.max_quarantine_fraction = "
                                        f"{params.max_quarantine_fraction:g}",
                                        "fix the quarantined records, or raise validate.max_quarantine_fraction"))
    report.expectations = runner.results
    return report


def _captioned_image_table(items: list, images: Path, bands: tuple[int, int, int], progress: bool) -> pd.DataFrame:
    """One row per image record: where its file is, whether it decodes, its size and split."""
    from tqdm.auto import tqdm

    from rsmoe.data.captioned import inside, normalise_split

    def row(item) -> dict[str, Any]:
        out = {"index": item.index, "record": item.record, "filename": item.filename, "inside": None,
               "exists": None, "split": item.split,
               "split_ok": item.split is None or normalise_split(item.split) is not None,
               "decodable": None, "width": None, "height": None, "problem": None, "fix": None}
        if item.filename is not None:
            out["inside"] = inside(images, item.filename)
            path = images / item.filename
            out["exists"] = bool(out["inside"]) and path.is_file()
            if out["exists"]:
                r = _image_row(path, images.parent, bands)
                out.update({k: r[k] for k in ("decodable", "width", "height", "problem", "fix")})
        return out

    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:  # decoding releases the GIL
        rows = list(tqdm(pool.map(row, items), total=len(items), desc="decode images", unit="img",
                         disable=not progress))
    return pd.DataFrame(rows, dtype=object)


def _captioned_image_checks(shown: str, folder: str, p: ValidateParams) -> list[_Check]:
    E = _gx().expectations

    def issue(problem: Callable[[pd.Series], str], fix: str | Callable[[pd.Series], str]):
        return lambda r: Issue(shown, r["record"], problem(r), fix if isinstance(fix, str) else fix(r),
                               "captioned", int(r["index"]))

    def size(r: pd.Series) -> str:
        return f"image {r['width']}x{r['height']} px is outside {p.min_side}..{p.max_side} px per side"

    resize = "drop the image or change validate.min_side / max_side in params.yaml"
    return [
        _Check(E.ExpectColumnValuesToNotBeNull(column="filename"),
               issue(lambda r: "missing or empty filename", "give the image's file name relative to the image folder")),
        _Check(E.ExpectColumnValuesToBeInSet(column="inside", value_set=[True]),
               issue(lambda r: f"filename '{r['filename']}' leaves the image folder",
                     "make it relative to the image folder, without '..', absolute paths or links out of it")),
        _Check(E.ExpectColumnValuesToBeInSet(column="exists", value_set=[True]),
               issue(lambda r: f"image '{r['filename']}' not found in {folder}/",
                     "add the image, fix the filename, or remove the record")),
        _Check(E.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True]),
               issue(lambda r: r["problem"] or "unreadable image", lambda r: r["fix"] or "re-export the image")),
        *(_Check(E.ExpectColumnValuesToBeBetween(column=side, min_value=p.min_side, max_value=p.max_side),
                 issue(size, resize)) for side in ("width", "height")),
        _Check(E.ExpectColumnValuesToBeInSet(column="split_ok", value_set=[True]),
               issue(lambda r: f"unknown split '{r['split']}'",
                     "use train, val or test (restval counts as train; one split per image)")),
    ]


def _sentence_table(items: list, bad: set[int]) -> pd.DataFrame:
    """One row per sentence of the images not quarantined whole; a repeat (case and spacing
    aside) of an earlier caption of the same image names that caption's record."""
    rows = []
    for item in items:
        if item.index in bad:
            continue
        seen: dict[str, str] = {}
        for j, text in enumerate(item.sentences):
            norm = " ".join(text.lower().split()) if text else None
            first = seen.setdefault(norm, item.where[j]) if norm else None
            repeat = first if first != item.where[j] else None
            rows.append({"index": item.index, "sentence": j, "record": item.where[j], "text": text or None,
                         "duplicate_of": repeat, "unique": repeat is None,
                         "words": len(text.split()) if text else None})
    return pd.DataFrame(rows, dtype=object)


def _sentence_checks(shown: str, p: ValidateParams) -> list[_Check]:
    E = _gx().expectations

    def issue(problem: Callable[[pd.Series], str], fix: str):
        return lambda r: Issue(shown, r["record"], problem(r), fix, "captioned_sentences",
                               (int(r["index"]), int(r["sentence"])))

    return [
        _Check(E.ExpectColumnValuesToNotBeNull(column="text"),
               issue(lambda r: "empty or missing sentence", "write the caption text or remove the sentence")),
        _Check(E.ExpectColumnValuesToBeInSet(column="unique", value_set=[True]),
               issue(lambda r: f"repeats an earlier caption of the same image ({r['duplicate_of']})",
                     "remove the duplicate: a repeated reference counts twice in training and scoring")),
        _Check(E.ExpectColumnValuesToBeBetween(column="words", min_value=p.caption_min_words,
                                               max_value=p.caption_max_words),
               issue(lambda r: f"caption has {r['words']} words, outside {p.caption_min_words}..{p.caption_max_words}",
                     "rewrite it or change validate.caption_min_words / caption_max_words")),
    ]
