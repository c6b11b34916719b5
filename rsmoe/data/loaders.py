"""Loaders for the public caption / VQA formats: RSICap, RSIEval and Karpathy-style splits.

- RSICap `captions.json`: {"annotations": [{"image_id", "filename", "text_input", "text_output"}]}
- RSIEval `annotations.json`: {"annotations": [{"filename", "caption", "qa_pairs": [{"question",
  "answer", "type"}]}]}; type labels are normalised, the original answer is kept verbatim.
- Karpathy `dataset_*.json` (UCM-Captions, Sydney-Captions, RSICD): {"images": [{"filename",
  "imgid", "split", "sentences": [{"raw", "tokens", ...}]}], "dataset": ...}.
DOTA labelTxt files are read by `rsmoe.data.dota`.

Every loader raises `AnnotationError` naming the file, the record and the fix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

from rsmoe.data.report import normalize_qa_type
from rsmoe.errors import InputError


class AnnotationError(InputError):
    def __init__(self, path: str | Path, record: str, problem: str, fix: str):
        super().__init__(path, problem, fix, record=record)


@dataclass(frozen=True)
class CaptionRecord:
    image_id: str
    filename: str
    instruction: str
    caption: str
    image: Path | None = None  # the image file, when an image folder was given


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str  # verbatim, as annotated ("Ten.", "more than 100")
    type: str  # normalised RSIEval type (presence, quantity, ..., reasoning)
    raw_type: str


@dataclass(frozen=True)
class EvalRecord:
    filename: str
    caption: str
    qa: tuple[QAPair, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class KarpathyImage:
    filename: str
    imgid: int
    split: str
    sentences: tuple[str, ...]


def read_json(path: str | Path, top_key: str, expected: str) -> list[dict[str, Any]]:
    """The list under `top_key` of a JSON file, or AnnotationError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "file", "not found", "check the path in params.yaml or on the command line")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(path, "file", f"not valid JSON ({err})", f"write it as {expected}") from None
    if not isinstance(data, dict) or not isinstance(data.get(top_key), list):
        raise AnnotationError(path, "file", f"no '{top_key}' list at the top level", f"write it as {expected}")
    return data[top_key]


SPLITS: tuple[str, ...] = ("train", "val", "test")


def load_prepared(prepared: str | Path, name: str, *, missing_fix: str = "") -> list[dict[str, Any]]:
    """The annotations of a prepared folder's `captions.json` or `qa.json` (written by `prepare`),
    every one with its split. The one reader of them: training, evaluation and export alike.
    `missing_fix` adds a way out to the error of a missing file."""
    path = Path(prepared) / name
    if not path.is_file():
        raise AnnotationError(path, "file", "not found",
                              "run `rsmoe stage prepare` (or `rsmoe prepare RAW OUT`) first" + missing_fix)
    records = read_json(path, "annotations", f"the prepare stage's {name}")
    for i, record in enumerate(records):
        if record.get("split") not in SPLITS:
            raise AnnotationError(path, f"annotation {i} ({record.get('filename')})",
                                  f"split {record.get('split')!r} is not one of {', '.join(SPLITS)}",
                                  "re-run the prepare stage, or give every record a split")
    return records


def split_records(prepared: str | Path, name: str, split: str, *,
                  missing_fix: str = "") -> list[tuple[dict[str, Any], Path]]:
    """The `split` records of a prepared folder's `captions.json` / `qa.json`, each with its image
    file (prepared/images/FILENAME), which must exist."""
    out = []
    for i, record in enumerate(load_prepared(prepared, name, missing_fix=missing_fix)):
        if record["split"] != split:
            continue
        image = Path(prepared) / "images" / record["filename"]
        if not image.is_file():
            raise AnnotationError(Path(prepared) / name, f"annotation {i}", f"image {image} is missing",
                                  "re-run the prepare stage")
        out.append((record, image))
    return out


def references(record: dict[str, Any]) -> list[str]:
    """Every reference caption of a prepared record: its `references` (captioned sets keep all of
    an image's captions), else its one `text_output`."""
    refs = [r.strip() for r in record.get("references") or () if isinstance(r, str) and r.strip()]
    return refs or [record["text_output"].strip()]


def _field(path: Path, record: str, item: dict[str, Any], key: str) -> str:
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, (str, int)) or str(value).strip() == "":
        raise AnnotationError(path, record, f"missing or empty '{key}'", f"give every record a non-empty '{key}'")
    return str(value).strip()


RSICAP_FORMAT = '{"annotations": [{"image_id", "filename", "text_input", "text_output"}]}'
RSIEVAL_FORMAT = '{"annotations": [{"filename", "caption", "qa_pairs": [{"question", "answer", "type"}]}]}'
KARPATHY_FORMAT = '{"images": [{"filename", "imgid", "split", "sentences": [{"raw"}]}]}'


def load_rsicap(path: str | Path, image_dir: str | Path | None = None,
                skip: Collection[int] = ()) -> list[CaptionRecord]:
    """RSICap captions; with `image_dir`, each record's image must exist there. `skip` holds the
    0-based positions of records to leave out (the validation report's quarantine)."""
    path = Path(path)
    out = []
    for i, item in enumerate(read_json(path, "annotations", RSICAP_FORMAT)):
        if i in skip:
            continue
        where = f"annotation {i}"
        filename = _field(path, where, item, "filename")
        where = f"annotation {i} ({filename})"
        image = None
        if image_dir is not None:
            image = Path(image_dir) / filename
            if not image.is_file():
                raise AnnotationError(path, where, f"image {image} not found", "put the image there or drop the record")
        out.append(CaptionRecord(
            image_id=_field(path, where, item, "image_id") if "image_id" in item else Path(filename).stem,
            filename=filename,
            instruction=str(item.get("text_input") or "Describe this image in detail.").strip(),
            caption=_field(path, where, item, "text_output"),
            image=image,
        ))
    return out


def load_rsieval(path: str | Path, skip: Collection[int] = (),
                 skip_pairs: Collection[tuple[int, int]] = ()) -> list[EvalRecord]:
    """RSIEval captions and QA pairs with normalised type labels. `skip` holds 0-based record
    positions and `skip_pairs` (record, pair) positions to leave out (the report's quarantine)."""
    path = Path(path)
    out = []
    for i, item in enumerate(read_json(path, "annotations", RSIEVAL_FORMAT)):
        if i in skip:
            continue
        filename = _field(path, f"annotation {i}", item, "filename")
        where = f"annotation {i} ({filename})"
        pairs = item.get("qa_pairs", [])
        if not isinstance(pairs, list):
            raise AnnotationError(path, where, "'qa_pairs' is not a list", f"write it as {RSIEVAL_FORMAT}")
        qa = []
        for j, pair in enumerate(pairs):
            if (i, j) in skip_pairs:
                continue
            rec = f"qa {j} of {filename}"
            raw_type = _field(path, rec, pair, "type")
            qtype = normalize_qa_type(raw_type)
            if qtype is None:
                raise AnnotationError(path, rec, f"unknown question type '{raw_type}'",
                                      "use an RSIEval type: presence, quantity, color, ab_position, re_position, "
                                      "area_comp, road_ori, image, scene, reasoning")
            qa.append(QAPair(_field(path, rec, pair, "question"), _field(path, rec, pair, "answer"), qtype, raw_type))
        out.append(EvalRecord(filename, str(item.get("caption") or "").strip(), tuple(qa)))
    return out


def load_karpathy(path: str | Path, split: str | None = None) -> list[KarpathyImage]:
    """Karpathy-format caption splits (UCM-Captions, Sydney-Captions, RSICD), optionally one split."""
    path = Path(path)
    out = []
    for i, item in enumerate(read_json(path, "images", KARPATHY_FORMAT)):
        filename = _field(path, f"image {i}", item, "filename")
        where = f"image {i} ({filename})"
        sentences = []
        for j, sent in enumerate(item.get("sentences") or []):
            raw = sent.get("raw") if isinstance(sent, dict) else None
            if not raw and isinstance(sent, dict) and sent.get("tokens"):
                raw = " ".join(sent["tokens"])
            if not isinstance(raw, str) or not raw.strip():
                raise AnnotationError(path, f"{where} sentence {j}", "empty sentence", "give each sentence a 'raw' text")
            sentences.append(raw.strip())
        if not sentences:
            raise AnnotationError(path, where, "no sentences", "give every image at least one reference sentence")
        item_split = str(item.get("split", "test"))
        if split is None or item_split == split:
            out.append(KarpathyImage(filename, int(item.get("imgid", i)), item_split, tuple(sentences)))
    return out
