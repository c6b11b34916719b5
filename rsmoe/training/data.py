"""Training examples from a prepared folder (RSICap-format captions.json + images/)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rsmoe.data.aspects import group_segments, split_caption
from rsmoe.errors import InputError


@dataclass(frozen=True)
class Example:
    image: Path
    instruction: str  # RSICap `text_input`
    caption: str  # RSICap `text_output`
    segments: dict[str, str]  # one target per expert (aspect groups for N experts)


def load_examples(prepared: Path, split: str, n_experts: int) -> list[Example]:
    """The `split` examples of a prepared folder, with each caption's expert targets.

    Captions written by `prepare` carry their aspect segments; human captions without them
    (real RSICap) are split by `rsmoe.data.aspects.split_caption`.
    """
    path = Path(prepared) / "captions.json"
    if not path.is_file():
        raise InputError(path, "not found", "run `rsmoe stage prepare` (or `rsmoe prepare RAW OUT`) first")
    annotations = json.loads(path.read_text(encoding="utf-8")).get("annotations", [])
    out = []
    for i, a in enumerate(annotations):
        if a.get("split", "train") != split:
            continue
        image = Path(prepared) / "images" / a["filename"]
        if not image.is_file():
            raise InputError(path, f"image {image} is missing", "re-run the prepare stage", record=f"annotation {i}")
        text = a["text_output"].strip()
        segments = a.get("segments") or split_caption(text)
        out.append(Example(image, a.get("text_input") or "Describe this image in detail.", text,
                           group_segments(segments, n_experts)))
    if not out:
        raise InputError(path, f"no annotations in split {split!r}", "check prepare.splits in params.yaml")
    return out
