"""What a score must beat: captions and answers written without a model (or without the image).

Every baseline is scored by the same code, on the same split, as the model (`stages/evaluate`):

- `random_caption`: for each evaluated crop, a train-split caption drawn at random (no image, no
  model); the stage reports the mean of 3 seeds.
- `scene_caption`: a random train caption of the crop's scene type: what recognising the scene
  type alone buys. A crop whose type has no train caption gets a random train caption.
- `retrieval_oracle`: the train caption of the crop's scene type whose annotated object counts
  are closest (L1 over the DOTA classes; ties: land cover, then file name). It reads the
  evaluated crop's annotations, so it is an upper reference, not a competitor.
- `blind` (built in the stage, it needs the model): the trained model captioning each crop from
  another crop's image features, `derangement(n)`.
- `majority_answers`: per question type, the train split's most frequent normalised answer.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rsmoe.data.records import DOTA_V15_CLASSES
from rsmoe.evaluation.vqa import normalize_answer

RANDOM_SEEDS = (0, 1, 2)


def _check_train(train: Sequence[Mapping[str, Any]]) -> None:
    if not train:
        raise ValueError("baselines need train-split captions; check prepare.splits in params.yaml")


def random_caption(crops: Sequence[Mapping[str, Any]], train: Sequence[Mapping[str, Any]], seed: int) -> dict[str, str]:
    """filename -> a random train caption (drawn with replacement, `seed`)."""
    _check_train(train)
    rng = random.Random(seed)
    return {c["filename"]: rng.choice(train)["text_output"] for c in crops}


def scene_caption(crops: Sequence[Mapping[str, Any]], train: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, str]:
    """filename -> a random train caption of the crop's `scene_type` (any train caption when none has it)."""
    _check_train(train)
    rng = random.Random(seed)
    by_type: dict[str | None, list[Mapping[str, Any]]] = {}
    for t in train:
        by_type.setdefault(t.get("scene_type"), []).append(t)
    return {c["filename"]: rng.choice(by_type.get(c.get("scene_type")) or list(train))["text_output"] for c in crops}


def counts(record: Mapping[str, Any]) -> list[int]:
    """Objects per DOTA class of a prepared record, in `DOTA_V15_CLASSES` order."""
    tally = Counter(o["category"] for o in record.get("objects") or ())
    return [tally[c] for c in DOTA_V15_CLASSES]


def _distance(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[int, float, str]:
    ca, cb = counts(a), counts(b)
    cover_a, cover_b = a.get("land_cover") or {}, b.get("land_cover") or {}
    cover = sum(abs(cover_a.get(k, 0.0) - cover_b.get(k, 0.0)) for k in set(cover_a) | set(cover_b))
    return sum(abs(x - y) for x, y in zip(ca, cb)), cover, b["filename"]


def retrieval_oracle(crops: Sequence[Mapping[str, Any]], train: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """filename -> the train caption of the same scene type with the closest object counts."""
    _check_train(train)
    out = {}
    for c in crops:
        pool = [t for t in train if t.get("scene_type") == c.get("scene_type")] or list(train)
        out[c["filename"]] = min(pool, key=lambda t: _distance(c, t))["text_output"]
    return out


def derangement(n: int) -> list[int]:
    """A fixed permutation with no fixed point: crop i is captioned from crop (i + n // 2) % n.

    Records come grouped by scene, so half-way round is (for more than one scene) another scene,
    a stronger control than a random shuffle that often lands on the neighbouring crop."""
    if n < 2:
        raise ValueError("the blind control needs at least 2 evaluated images")
    return [(i + n // 2) % n for i in range(n)]


def majority_answers(train_qa: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """Question type -> the train split's most frequent answer, compared in normalised form
    (`vqa.normalize_answer`); returned as its most frequent written form ("Yes.")."""
    by_type: dict[str, Counter] = {}
    written: dict[tuple[str, str], Counter] = {}
    for qa in train_qa:
        norm = normalize_answer(qa["answer"], qa["type"])
        by_type.setdefault(qa["type"], Counter())[norm] += 1
        written.setdefault((qa["type"], norm), Counter())[qa["answer"].strip()] += 1
    out = {}
    for qtype, tally in by_type.items():
        norm = min(tally, key=lambda a: (-tally[a], a))  # ties: alphabetical, so the result is stable
        form = written[(qtype, norm)]
        out[qtype] = min(form, key=lambda a: (-form[a], a))
    return out
