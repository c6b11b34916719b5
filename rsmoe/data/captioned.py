"""Captioned image sets besides DOTA: RSICap, Karpathy-format files and a plain folder.

    rsicap    captions.json: {"annotations": [{"image_id", "filename", "text_input", "text_output"}]}
              (several records of one filename are several references)
    karpathy  dataset_*.json of UCM-Captions, Sydney-Captions, RSICD, NWPU-Captions:
              {"images": [{"filename", "imgid", "split", "sentences": [{"raw"}]}]}; every sentence
              is a reference and the set's own split is kept (`restval` counts as train)
    folder    captions.csv (header `filename,caption[,split]`) or captions.jsonl (one
              {"filename", "caption"[, "split"]} per line); several rows per image allowed

`read_captioned` groups each file into `CaptionedImage`s (one per image, with all of its
references) without judging them: a missing filename, an empty or duplicate sentence, an unknown
split or a path that leaves the image folder are the validate stage's to quarantine
(`rsmoe.data.validation.validate_captioned`). Only a file that cannot be read as its format at
all raises `AnnotationError`. `rsmoe.data.prepare_captioned` writes such a set in the prepared
layout, one record per image with all of its `references`.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from rsmoe.data.loaders import KARPATHY_FORMAT, RSICAP_FORMAT, AnnotationError, read_json

FORMATS: tuple[str, ...] = ("dota", "rsicap", "karpathy", "folder")
FOLDER_FORMAT = ("captions.csv with a header row `filename,caption` (optional `split` column), or captions.jsonl "
                 'with one {"filename": ..., "caption": ...} object per line')
# split names of the published sets -> ours; anything else is quarantined
SPLIT_ALIASES: dict[str, str] = {"train": "train", "restval": "train", "val": "val", "valid": "val",
                                 "validation": "val", "test": "test"}
DEFAULT_ANNOTATIONS = {"rsicap": "captions.json", "folder": ("captions.csv", "captions.jsonl")}
_CROP = re.compile(r"^(P\d{4,})_\d{4}$")  # an RSICap crop: its DOTA scene is the split unit


@dataclass(frozen=True)
class CaptionedImage:
    """One image of a captioned set and every reference it has, as the file wrote them."""

    index: int  # 0-based position of its first record (Karpathy image, RSICap annotation, folder row)
    record: str  # how messages name it: "image 3 (a.jpg)", "annotation 7 (b.png)", "row 12 (c.tif)"
    filename: str | None  # relative to the image folder; None when the record has none
    sentences: tuple[str | None, ...]  # None: a sentence that is not text
    split: str | None = None  # as written (normalised by `normalise_split`); None when not given
    instruction: str | None = None
    image_id: str | None = None
    rows: tuple[int, ...] = ()  # every record index merged into this image (rsicap, folder)
    where: tuple[str, ...] = ()  # how messages name each sentence ("image 3 (a.jpg) sentence 2", "row 12 (c.tif)")


def normalise_split(split: str | None) -> str | None:
    return None if split is None else SPLIT_ALIASES.get(str(split).strip().lower())


def find_annotations(fmt: str, annotations: Path | None, images: Path) -> Path:
    """The annotation file of a set: `annotations` when given, else the format's usual name
    beside (or in) the image folder."""
    if annotations is not None:
        return Path(annotations)
    names = DEFAULT_ANNOTATIONS.get(fmt)
    if names is None:
        raise AnnotationError(images, "file", f"format {fmt!r} needs its annotation file",
                              "set data.annotations in params.yaml (or pass ANNOTATIONS on the command line)")
    for name in (names,) if isinstance(names, str) else names:
        for folder in (images.parent, images):
            if (folder / name).is_file():
                return folder / name
    raise AnnotationError(images.parent, "file", f"no {' or '.join((names,) if isinstance(names, str) else names)} "
                          f"beside {images.name}/", "set data.annotations in params.yaml to the annotation file")


def read_captioned(fmt: str, path: str | Path) -> list[CaptionedImage]:
    """Every image of a captioned set's annotation file, in file order (see the module doc)."""
    path = Path(path)
    if fmt == "karpathy":
        return _karpathy(path)
    if fmt == "rsicap":
        rows = [(i, f"annotation {i}", item.get("filename") if isinstance(item, dict) else None,
                 item.get("text_output") if isinstance(item, dict) else None, None,
                 item.get("text_input") if isinstance(item, dict) else None,
                 item.get("image_id") if isinstance(item, dict) else None)
                for i, item in enumerate(read_json(path, "annotations", RSICAP_FORMAT))]
        return _grouped(rows)
    if fmt == "folder":
        return _grouped(_folder_rows(path))
    raise ValueError(f"unknown captioned format {fmt!r}; one of {', '.join(FORMATS[1:])}")


def _text(v: Any) -> str | None:
    return v.strip() if isinstance(v, str) else (str(v) if isinstance(v, int) and not isinstance(v, bool) else None)


def _karpathy(path: Path) -> list[CaptionedImage]:
    out = []
    for i, item in enumerate(read_json(path, "images", KARPATHY_FORMAT)):
        item = item if isinstance(item, dict) else {}
        filename = _text(item.get("filename")) or None
        sentences = []
        for sent in item.get("sentences") or []:
            raw = sent.get("raw") if isinstance(sent, dict) else None
            if raw is None and isinstance(sent, dict) and isinstance(sent.get("tokens"), list):
                raw = " ".join(map(str, sent["tokens"]))
            sentences.append(_text(raw))
        split = item.get("split")
        record = f"image {i} ({filename})"
        out.append(CaptionedImage(i, record, filename, tuple(sentences), None if split is None else str(split), None,
                                  _text(item.get("imgid")) or str(i), (i,),
                                  tuple(f"{record} sentence {j}" for j in range(len(sentences)))))
    return out


def _folder_rows(path: Path) -> list[tuple]:
    """(index, record, filename, caption, split, instruction, image_id) per data row."""
    if not path.is_file():
        raise AnnotationError(path, "file", "not found", "check data.annotations in params.yaml or the command line")
    rows = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise AnnotationError(path, f"line {n}", f"not valid JSON ({err.msg})", f"write it as {FOLDER_FORMAT}")
            item = item if isinstance(item, dict) else {}
            rows.append((len(rows), f"line {n}", item.get("filename"), item.get("caption"), item.get("split"),
                         None, None))
        return rows
    if path.suffix.lower() != ".csv":
        raise AnnotationError(path, "file", "not a .csv or .jsonl file", f"write it as {FOLDER_FORMAT}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"filename", "caption"} - {(c or "").strip().lower() for c in (reader.fieldnames or [])}
        if missing:
            raise AnnotationError(path, "header", f"no {' or '.join(sorted(missing))} column "
                                  f"(header: {reader.fieldnames})", f"write it as {FOLDER_FORMAT}")
        for row in reader:
            row = {(k or "").strip().lower(): v for k, v in row.items()}
            rows.append((len(rows), f"row {reader.line_num}", row.get("filename"), row.get("caption"),
                         row.get("split") or None, None, None))
    return rows


def _grouped(rows: list[tuple]) -> list[CaptionedImage]:
    """Records of one filename -> one image with every caption as a reference (file order)."""
    by: dict[str, list[tuple]] = {}
    out: list[CaptionedImage | None] = []
    for index, record, filename, caption, split, instruction, image_id in rows:
        filename = _text(filename) or None
        where = f"{record} ({filename})"
        if filename is None:  # nothing to group by: its own record, quarantined by validate
            out.append(CaptionedImage(index, where, None, (_text(caption),), split, _text(instruction), None, (index,),
                                      (where,)))
            continue
        if filename not in by:
            by[filename] = []
            out.append(None)  # placeholder, filled in file order of first appearance
        by[filename].append((index, where, caption, split, instruction, image_id, len(out) - 1))
    for filename, group in by.items():
        first = group[0]
        splits = {str(g[3]) for g in group if g[3] is not None}
        out[first[6]] = CaptionedImage(
            first[0], first[1], filename, tuple(_text(g[2]) for g in group),
            ",".join(sorted(splits)) if splits else None,  # two different splits: unknown, quarantined
            _text(first[4]), _text(first[5]) or None, tuple(g[0] for g in group), tuple(g[1] for g in group))
    return [x for x in out if x is not None]


def inside(images: Path, filename: str) -> bool:
    """Does `filename` name a file under the image folder: no absolute path, no `..`, and no link
    that resolves outside it?"""
    p = PurePosixPath(filename.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", filename):
        return False
    target = images / p
    return not target.exists() or target.resolve().is_relative_to(images.resolve())


def prepared_name(filename: str, taken: set[str]) -> str:
    """A flat, unique PNG name for an image's relative path: `a/b/c.jpg` -> `a__b__c.png`."""
    stem = "__".join(PurePosixPath(filename.replace("\\", "/")).with_suffix("").parts)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "image"
    name, n = f"{stem}.png", 1
    while name in taken:
        name, n = f"{stem}-{n}.png", n + 1
    taken.add(name)
    return name


def scene_of(filename: str) -> str:
    """The split unit of an image: its DOTA scene for an RSICap crop (P0000_0001 -> P0000), else itself."""
    stem = PurePosixPath(filename.replace("\\", "/")).with_suffix("").as_posix()
    m = _CROP.match(PurePosixPath(stem).name)
    return m.group(1) if m else stem
