"""Training examples from a prepared folder (RSICap-format captions.json + images/, RSIEval-format qa.json)."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rsmoe.data.aspects import expert_for, group_segments, split_caption
from rsmoe.data.describe import cell_index, unit_centre
from rsmoe.data.loaders import load_prepared, references, split_records
from rsmoe.errors import InputError

log = logging.getLogger("rsmoe")


@dataclass(frozen=True)
class Example:
    image: Path
    instruction: str  # RSICap `text_input` (a question, for a QA example): the Q-Former's and router's condition
    caption: str  # RSICap `text_output` (the answer, for a QA example): the Stage I target
    segments: dict[str, str]  # one target per expert (aspect groups for N experts; a QA example: one expert)
    prompt: str | None = None  # the LLM prompt in Stage II; None: each expert's aspect instruction
    # what the crop's annotations say it shows: {"scene_type": str | None, "counts": {category: n},
    # "cells": {category: [3x3 cells its objects' centres lie in]}}
    # (prepared DOTA crops); None for a record without object annotations (human RSICap captions)
    content: dict | None = None
    # a QA dialogue (`train.qa_format: dialogue`): the crop's (question, answer, expert) turns, trained
    # as multi-turn rows with the loss on the answers only (Stage I: one row; Stage II: one row per
    # expert, its own turns); `instruction` / `prompt` / `caption` hold the first turn
    dialogue: tuple[tuple[str, str, str], ...] = ()


def load_examples(prepared: Path, split: str, n_experts: int, qa_per_image: int = 0,
                  qa_format: str = "pair", qa_types: Sequence[str] | None = None) -> list[Example]:
    """The `split` examples of a prepared folder, with each caption's expert targets.

    Captions written by `prepare` carry their aspect segments; human captions without them
    (real RSICap) are split by `rsmoe.data.aspects.split_caption`. An image with several
    references (Karpathy-format sets: five each) gives one example per reference, the way
    captioning models are fine-tuned on COCO-style sets: every reference is seen once per epoch,
    in a fixed order a resumed run repeats, with no sampling state to checkpoint. With `qa_per_image` > 0,
    up to that many RSIEval-format QA pairs of each image (qa.json) follow as examples of their
    own, each a target of the expert that answers its question type (`expert_for`); with
    `qa_format="dialogue"` they follow as one multi-turn example per image instead (`Example.dialogue`);
    `qa_types` keeps only the pairs of those question types (None: every type).
    """
    path = Path(prepared) / "captions.json"
    out = []
    for a, image in split_records(prepared, "captions.json", split):
        for text in references(a):
            segments = (a.get("segments") if text == a["text_output"].strip() else None) or split_caption(text)
            out.append(Example(image, a.get("text_input") or "Describe this image in detail.", text,
                               group_segments(segments, n_experts), content=_content(a)))
    if not out:
        raise InputError(path, f"no annotations in split {split!r}", "check prepare.splits in params.yaml")
    if qa_per_image:
        out += qa_examples(prepared, {e.image.name for e in out}, n_experts, qa_per_image,
                           dialogue=qa_format == "dialogue", types=qa_types)
    return out


def warn_if_experts_go_untrained(examples: list[Example], n_experts: int) -> float | None:
    """Warn when most caption examples give only one of the N > 1 experts a target: one-sentence
    references (RSICD, UCM-, Sydney-Captions) land in one aspect each, yet at inference every expert
    writes its segment, so N = 3 answers a one-sentence reference with three sentences. Measured on
    val (bench/short_captions.py, one-sentence references, 3 seeds): N = 1 CIDEr 51.9 +- 2.3, N = 3
    0.1 (length gap 2 vs 24 words). Returns the median number of experts an example trains, None
    for N = 1."""
    if n_experts == 1:
        return None
    filled = sorted(sum(bool(t) for t in e.segments.values()) for e in examples if e.prompt is None)
    if not filled:
        return None
    median = filled[len(filled) // 2]
    if median <= 1:
        log.warning("most train captions give only %d of the %d experts a target (one-sentence references?): "
                    "every expert still writes at inference, so captions run %d sentences where the references "
                    "have one; set model.experts: 1 for such data (README, 'Short captions and the experts')",
                    median, n_experts, n_experts)
    return median


def qa_pairs(params, stage) -> int:
    """QA pairs per train crop in a stage (`stage1` / `stage2` section): its own `qa_per_image`,
    else `train.qa_per_image`."""
    return stage.qa_per_image if stage.qa_per_image is not None else params.train.qa_per_image


def _content(record: dict) -> dict | None:
    if "objects" not in record:
        return None
    counts: dict[str, int] = {}
    cells: dict[str, set[int]] = {}
    size = float(record["window"][2]) if record.get("window") else None
    for obj in record["objects"]:
        counts[obj["category"]] = counts.get(obj["category"], 0) + 1
        if size and obj.get("center"):
            cells.setdefault(obj["category"], set()).add(cell_index(*unit_centre(obj["center"], size)))
    return {"scene_type": record.get("scene_type"), "counts": counts,
            "cells": {c: sorted(v) for c, v in cells.items()}}


def _stable(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def qa_examples(prepared: Path, images: set[str], n_experts: int, per_image: int, *,
                dialogue: bool = False, types: Sequence[str] | None = None) -> list[Example]:
    """Up to `per_image` QA pairs of each named image as examples. Which ones, and in which order,
    is a stable hash of the image and the pair, so every run (and a resumed one) trains on the
    same pairs. `dialogue=True`: one example per image holding its pairs as turns (a QA row then
    costs its image prefix once for all its questions, not once per question). `types`: only the
    pairs of these question types are taken (None: all); a name no expert answers is an error."""
    for t in types or ():
        expert_for(t, n_experts)  # raises UnknownQuestionType naming the known types
    path = Path(prepared) / "qa.json"
    out = []
    for i, a in enumerate(load_prepared(prepared, "qa.json", missing_fix=", or set train.qa_per_image: 0")):
        if a["filename"] not in images:
            continue
        pairs = sorted((p for p in a.get("qa_pairs", []) if types is None or p.get("type") in types),
                       key=lambda p: _stable(f"{a['filename']}|{p['question']}"))
        turns = []
        for qa in pairs[:per_image]:
            if not qa["question"].strip() or not qa["answer"].strip():
                raise InputError(path, "an empty question or answer", "fix or drop the pair",
                                 record=f"annotation {i} ({a['filename']})")
            turns.append((qa["question"], qa["answer"], expert_for(qa["type"], n_experts)))
        image = Path(prepared) / "images" / a["filename"]
        if dialogue and turns:
            q, ans, _ = turns[0]
            out.append(Example(image, q, ans, {}, prompt=q, dialogue=tuple(turns)))
        else:
            out += [Example(image, q, ans, {expert: ans}, prompt=q) for q, ans, expert in turns]
    return out
