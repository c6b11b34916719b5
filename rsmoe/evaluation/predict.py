"""Run a trained model over evaluation data: captions, VQA answers, Karpathy-format sets.

Image tokens come from the frozen-feature cache (the image encoder never changes after
training), so evaluating after training encodes no image twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from rsmoe.data.loaders import load_karpathy, split_records
from rsmoe.errors import InputError
from rsmoe.evaluation.vqa import expert_for
from rsmoe.model.presets import DEFAULT_INSTRUCTION
from rsmoe.model.rsmoe import Caption, RSMoE
from rsmoe.training.features import FrozenFeatures


@dataclass(frozen=True)
class Question:
    image: Path
    question: str
    answer: str  # the gold answer
    type: str  # RSIEval question type


def caption_images(model: RSMoE, images: Sequence[Path], features: FrozenFeatures, *, batch_size: int = 8,
                   stage1: bool = False, max_new_tokens: int | None = None,
                   instruction: str = DEFAULT_INSTRUCTION, desc: str = "captions") -> list[Caption]:
    """Greedy captions for image files, `batch_size` images per batched generate call."""
    out: list[Caption] = []
    with tqdm(total=len(images), desc=desc, unit="img") as bar:
        for start in range(0, len(images), batch_size):
            chunk = list(images[start:start + batch_size])
            out += model.caption(image_tokens=features.image_tokens(chunk), instruction=instruction,
                                 stage1=stage1, max_new_tokens=max_new_tokens)
            bar.update(len(chunk))
    return out


def answer_questions(model: RSMoE, questions: Sequence[Question], features: FrozenFeatures, *,
                     batch_size: int = 32, max_new_tokens: int = 16) -> list[dict]:
    """Each question answered by the expert of its type (one batched call per `batch_size`)."""
    n = len(model.experts)
    rows: list[dict] = []
    with tqdm(total=len(questions), desc="vqa", unit="q") as bar:
        for start in range(0, len(questions), batch_size):
            chunk = list(questions[start:start + batch_size])
            experts = [expert_for(q.type, n) for q in chunk]
            answers = model.answer([q.question for q in chunk], experts,
                                   image_tokens=features.image_tokens([q.image for q in chunk]),
                                   max_new_tokens=max_new_tokens)
            rows += [{"filename": q.image.name, "type": q.type, "question": q.question, "answer": q.answer,
                      "expert": e, "prediction": a} for q, e, a in zip(chunk, experts, answers)]
            bar.update(len(chunk))
    return rows


def load_questions(prepared: Path, split: str) -> list[Question]:
    """The RSIEval-format QA pairs of one split of a prepared folder (qa.json)."""
    return [Question(image, qa["question"], qa["answer"], qa["type"])
            for a, image in split_records(prepared, "qa.json", split) for qa in a.get("qa_pairs", [])]


def karpathy_references(annotations: Path, images: Path, split: str = "test") -> dict[Path, list[str]]:
    """A Karpathy-format caption set (UCM-Captions, Sydney-Captions, RSICD): image file -> references."""
    items = load_karpathy(annotations, split)
    if not items:
        raise InputError(annotations, f"no images in split {split!r}", "check evaluate.zero_shot.*.split")
    out: dict[Path, list[str]] = {}
    for item in items:
        path = Path(images) / item.filename
        if not path.is_file():
            raise InputError(annotations, f"image {path} not found", "fix evaluate.zero_shot.*.images",
                             record=f"image {item.imgid} ({item.filename})")
        out[path] = list(item.sentences)
    return out
