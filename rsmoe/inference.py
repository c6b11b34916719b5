"""Inference from a trained model folder: captions and VQA, with the frozen encoders either in
PyTorch or as the exported ONNX graphs (ONNX Runtime), and encoding images to features.

    rsmoe caption --model models/stage2 [--encoder onnx|torch] IMAGE...
    rsmoe vqa --model models/stage2 IMAGE "How many planes are there?"
    rsmoe encode --onnx models/onnx/image_encoder.onnx IMAGE... --out features.safetensors

Images go through the one shared `preprocess` (via `RSMoE.pixel_values` or the export's
sidecar). A file that cannot be read is reported with its reason and skipped; the others are
still captioned.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from rsmoe.data.images import ImageFailure, ImageReadError, load_rgb
from rsmoe.errors import InputError
from rsmoe.model.checkpoint import fingerprints
from rsmoe.model.presets import DEFAULT_INSTRUCTION
from rsmoe.model.rsmoe import Caption, RSMoE


def _read(images: Sequence[Path]) -> tuple[list[Path], list, list[ImageFailure]]:
    good, arrays, failures = [], [], []
    for path in images:
        try:
            arrays.append(load_rgb(Path(path)))
            good.append(Path(path))
        except ImageReadError as err:
            failures.append(ImageFailure.of(path, err))
    return good, arrays, failures


def check_export(model: RSMoE, onnx_dir: Path) -> dict:
    """The export's sidecar, after checking it was made from this model's encoders."""
    from rsmoe.export.ort import SIDECAR, read_sidecar

    sidecar = read_sidecar(Path(onnx_dir) / SIDECAR)
    if sidecar.get("preset") != model.preset.name:
        raise InputError(Path(onnx_dir) / SIDECAR, f"exported from preset {sidecar.get('preset')!r}, the model folder "
                         f"is preset {model.preset.name!r}", "export this model: `rsmoe stage export`, or pass --encoder torch")
    graph = sidecar["graphs"]["image_encoder"]
    if graph.get("weights_fingerprint") != fingerprints(model)["image_encoder"]:
        raise InputError(Path(onnx_dir) / SIDECAR, "the exported image encoder has other weights than the model's",
                         "export this model: `rsmoe stage export`, or pass --encoder torch")
    return sidecar


def caption_files(model: RSMoE, images: Sequence[Path], *, encoder: str = "torch", onnx_dir: Path | None = None,
                  batch_size: int = 8, max_new_tokens: int | None = None) -> tuple[list[tuple[Path, Caption]], list[ImageFailure]]:
    """Greedy captions of image files. encoder="onnx": F_VLM from ONNX Runtime's vlm_encoder graph
    (image encoder + Q-Former + projection), then the PyTorch router and experts."""
    if encoder not in ("torch", "onnx"):
        raise ValueError(f"encoder must be 'torch' or 'onnx', got {encoder!r}")
    good, arrays, failures = _read(images)
    out: list[tuple[Path, Caption]] = []
    if encoder == "onnx":
        from rsmoe.export.ort import VLM_GRAPH, encode_images

        if onnx_dir is None:
            raise ValueError("encoder='onnx' needs onnx_dir (the export folder)")
        check_export(model, onnx_dir)
        feats, bad = encode_images(Path(onnx_dir) / VLM_GRAPH, good, batch_size=batch_size,
                                   instruction=DEFAULT_INSTRUCTION, progress=False)
        failures += bad
        good = [p for p in good if str(p) in feats]
        for start in range(0, len(good), batch_size):
            chunk = good[start:start + batch_size]
            stacked = torch.stack([torch.as_tensor(feats[str(p)]) for p in chunk])
            out += zip(chunk, model.caption(vlm_features=stacked, max_new_tokens=max_new_tokens))
        return out, failures
    for start in range(0, len(good), batch_size):
        out += zip(good[start:start + batch_size],
                   model.caption(arrays[start:start + batch_size], max_new_tokens=max_new_tokens))
    return out, failures


def answer_file(model: RSMoE, image: Path, question: str, qtype: str | None = None, *,
                max_new_tokens: int = 32) -> dict:
    """One question about one image, answered by the expert of its type (guessed when not given)."""
    from rsmoe.evaluation.vqa import expert_for, guess_type

    qtype = qtype or guess_type(question)
    expert = expert_for(qtype, len(model.experts))
    with torch.no_grad():  # an unreadable image raises ImageReadError, naming the file and the fix
        tokens = model.image_tokens(model.pixel_values([load_rgb(Path(image))]))
    answer = model.answer([question], [expert], image_tokens=tokens, max_new_tokens=max_new_tokens)[0]
    return {"image": str(image), "question": question, "type": qtype, "expert": expert, "answer": answer}
