"""Export the frozen encoders of an RS-MoE to ONNX and check them against PyTorch.

    out_dir/
        image_encoder.onnx     pixel_values (B, 3, S, S) f32 -> image_tokens (B, T, D_img)
        vlm_encoder.onnx       pixel_values, input_ids (B, L) i64, attention_mask (B, L) i64
                               -> vlm_features (B, Q, D_llm); Q-Former LoRA merged in
        encoders.json          the sidecar: opset, every input/output (names, dtypes, symbolic
                               shapes), preset, preprocessing, instruction tokens, fingerprints
        qformer_tokenizer/     the Q-Former's tokenizer, so instructions tokenise identically
        parity.json            written by check_parity: ONNX Runtime vs PyTorch, max abs diffs

Exporter: the TorchScript one (`torch.onnx.export(..., dynamo=False)`). In torch 2.13 the default
dynamo exporter needs `onnxscript` (not a dependency) and starts at opset 18 (17 is converted
down); with onnxscript installed it gave the same parity on the tiny preset, so the switch is a
dependency decision, not a numerical one. The TorchScript exporter traces the batch (B) and the
instruction length (L) as symbolic dims; both are exercised by the tests.

Parity: F_VLM agrees to ~1e-5. The image tokens agree to ~5e-5 on noise images but to ~1.3e-4 on
the prepared DOTA crops: float32 convolution noise (oneDNN vs MLAS; the same with every ORT
optimisation off) that EfficientNet's parameter-free LayerNorm multiplies on low-variance tokens,
~4e-6 of the token range. An export bug (wrong merge, mask or shape) is orders larger.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
from peft.tuners.lora import LoraLayer
from torch import nn

from rsmoe.data.images import load_rgb
from rsmoe.errors import InputError
from rsmoe.export.ort import (IMAGE_GRAPH, PARITY, SIDECAR, TOKENIZER, VLM_GRAPH, read_sidecar, run,
                              session, tokenize)
from rsmoe.files import write_json
from rsmoe.model.checkpoint import fingerprint
from rsmoe.model.presets import DEFAULT_INSTRUCTION

log = logging.getLogger("rsmoe")
FORMAT, VERSION = "rsmoe-onnx", 1
EXPORT_BATCH = 2  # traced with B=2 so that no op is specialised to a batch of one


class ParityError(InputError):
    """The ONNX graphs do not reproduce the PyTorch model within the tolerance."""


class _VLMGraph(nn.Module):
    """pixel_values, instruction ids/mask -> F_VLM: the whole frozen encoder as one graph."""

    def __init__(self, image_encoder: nn.Module, vlm: nn.Module):
        super().__init__()
        self.image_encoder, self.vlm = image_encoder, vlm

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        return self.vlm(self.image_encoder(pixel_values), input_ids, attention_mask)  # (B, Q, D_llm)


def merged_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` (CPU, float32, eval) with every LoRA layer merged into its base
    layer and the PEFT wrapper removed; `module` itself is left untouched."""
    out = copy.deepcopy(module).cpu().float().eval()
    for name, layer in list(out.named_modules()):
        if isinstance(layer, LoraLayer):
            layer.merge()  # W += B A * scaling, for the active adapter(s)
            parent, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, child, layer.get_base_layer())
    return out


def export_encoders(model, out_dir: Path, *, opset: int = 17) -> dict:
    """Write image_encoder.onnx, vlm_encoder.onnx, encoders.json and qformer_tokenizer/ into
    `out_dir`; returns the sidecar. Files are written in a temporary sibling folder and moved in,
    the sidecar last, so an interrupted export never leaves a sidecar describing other graphs."""
    out_dir = Path(out_dir)
    if model.qformer_tokenizer is None:
        raise ValueError("export_encoders needs a model built with its weights (load_weights=True)")
    image_encoder = merged_copy(model.image_encoder)  # nothing to merge; a CPU float32 copy
    vlm = merged_copy(model.vlm)
    size, max_len = model.preset.image_encoder.image_size, model.preset.qformer.max_instruction_tokens
    pixels = torch.randn(EXPORT_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    # two lengths, so the traced instruction mask has padding: a mask-skipping shortcut for an
    # all-ones mask (transformers' SDPA masks have one) can never be what the trace records
    enc = tokenize(model.qformer_tokenizer, [DEFAULT_INSTRUCTION, "a"], max_len)
    batch, length = "batch", "instruction_tokens"
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _export(image_encoder, (pixels,), tmp / IMAGE_GRAPH, opset, ["pixel_values"], ["image_tokens"],
                {"pixel_values": {0: batch}, "image_tokens": {0: batch}})
        ids, mask = (torch.from_numpy(enc[k]) for k in ("input_ids", "attention_mask"))
        _export(_VLMGraph(image_encoder, vlm).eval(), (pixels, ids, mask),
                tmp / VLM_GRAPH, opset, ["pixel_values", "input_ids", "attention_mask"], ["vlm_features"],
                {"pixel_values": {0: batch}, "input_ids": {0: batch, 1: length},
                 "attention_mask": {0: batch, 1: length}, "vlm_features": {0: batch}})
        sidecar = _sidecar(model, tmp, image_encoder, vlm, opset)
        model.qformer_tokenizer.save_pretrained(tmp / TOKENIZER)
        write_json(tmp / SIDECAR, sidecar, indent=2)
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in (SIDECAR, PARITY):  # they would describe the previous graphs
            (out_dir / stale).unlink(missing_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == SIDECAR):  # sidecar moved last
            if f.is_dir():
                shutil.rmtree(out_dir / f.name, ignore_errors=True)
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s and %s to %s (opset %d)", IMAGE_GRAPH, VLM_GRAPH, out_dir, opset)
    return sidecar


def _sidecar(model, folder: Path, image_encoder: nn.Module, vlm: nn.Module, opset: int) -> dict:
    """What a user needs to feed the graphs as training does, and what identifies them. The
    image encoder's fingerprint is the one a model folder's config.json records."""
    preset, spec = model.preset, model.preset.image_encoder
    max_len = preset.qformer.max_instruction_tokens
    default = tokenize(model.qformer_tokenizer, [DEFAULT_INSTRUCTION], max_len)["input_ids"][0]
    return {
        "format": FORMAT, "version": VERSION, "opset": opset,
        "exporter": "torch.onnx.export TorchScript (dynamo=False)",
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
        "preset": preset.name,
        "preprocess": {"image_size": spec.image_size, "mean": list(spec.mean), "std": list(spec.std),
                       "resize": "bicubic (Pillow) to size x size",
                       "steps": "RGB uint8 -> x / 255 -> (x - mean) / std per channel -> NCHW float32",
                       "python": "rsmoe.model.encoders.preprocess"},
        "image_encoder_spec": spec.model_dump(mode="json"),
        "instruction": {"max_tokens": max_len, "padding": "right, to the longest in the batch",
                        "truncation": True, "tokenizer": TOKENIZER, "default": DEFAULT_INSTRUCTION,
                        "default_input_ids": default.tolist()},
        "graphs": {
            "image_encoder": _describe(folder / IMAGE_GRAPH, image_encoder.state_dict().items()),
            "vlm_encoder": {**_describe(folder / VLM_GRAPH, [*image_encoder.state_dict().items(),
                                                              *vlm.state_dict().items()]),
                            "lora_merged": True},
        },
    }


def _export(module: nn.Module, args: tuple, path: Path, opset: int, inputs: list[str], outputs: list[str],
            dynamic: dict) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # Expected and checked: TracerWarnings (shape checks on the fixed image size), the
        # legacy-exporter notice, "aten::index ... negative indices" (the Q-Former's padding mask
        # gathers with aranges, never negative) and constant-folding notes. The tests run the
        # graphs at other batch sizes and instruction lengths.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx\..*")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True)
        shapes = [module(*args).shape]  # one output per graph
    # ONNX shape inference loses the fixed output dims (T, D / Q, D) behind the dynamic batch and
    # names them e.g. "Addvlm_features_dim_1"; they do not depend on the inputs, so state them.
    proto = onnx.load(str(path), load_external_data=False)
    for value, shape in zip(proto.graph.output, shapes):
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if i not in dynamic.get(value.name, {}):
                dim.Clear()
                dim.dim_value = shape[i]
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))  # by path: also valid for graphs over 2 GB (external data)


def _describe(path: Path, weights) -> dict:
    """File, sha256, weight fingerprint and the graph's own inputs/outputs (read from the file)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def io(values) -> list[dict]:
        return [{"name": v.name,
                 "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                 "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]} for v in values]

    return {"file": path.name, "sha256": _sha256(path), "weights_fingerprint": fingerprint(weights),
            "inputs": io(graph.input), "outputs": io(graph.output)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- parity

def check_parity(model, out_dir: Path, images: Sequence[Path], *, instruction: str = DEFAULT_INSTRUCTION,
                 tol: float = 1e-4, prefer: Sequence[str] = ("cpu",)) -> dict:
    """ONNX Runtime vs PyTorch on real image files, at batch 1 (each image alone) and at batch
    len(images): max abs diff per graph. Writes out_dir/parity.json, then raises ParityError
    when a diff exceeds `tol`. CPU by default: a GPU provider (TensorRT fp16) has its own error."""
    out_dir = Path(out_dir)
    if not images:
        raise ValueError("check_parity needs at least one image")
    read_sidecar(out_dir / SIDECAR)  # a missing / foreign export fails here, with its fix
    sessions = {g: session(out_dir / f, prefer=prefer) for g, f in (("image_encoder", IMAGE_GRAPH),
                                                                    ("vlm_encoder", VLM_GRAPH))}
    pixels = model.pixel_values([load_rgb(p) for p in images]).cpu()  # the shared preprocess
    enc = tokenize(model.qformer_tokenizer, [instruction] * len(images),
                   model.preset.qformer.max_instruction_tokens)
    batches = [[i] for i in range(len(images))] + ([list(range(len(images)))] if len(images) > 1 else [])
    diffs: dict[str, dict[str, float]] = {"image_encoder": {}, "vlm_encoder": {}}
    was_training = model.training
    model.eval()
    try:
        for idx in batches:
            key = f"batch_{len(idx)}"
            with torch.no_grad():
                tokens = model.image_tokens(pixels[idx])  # (b, T, D_img)
                feats = model.vlm_features(tokens, [instruction] * len(idx))  # (b, Q, D_llm)
            feeds = {"pixel_values": pixels[idx].numpy()}
            got = run(sessions["image_encoder"], feeds)["image_tokens"]
            vlm_feeds = {**feeds, **{k: v[idx] for k, v in enc.items()}}
            got_vlm = run(sessions["vlm_encoder"], vlm_feeds)["vlm_features"]
            for graph, ref, out in (("image_encoder", tokens, got), ("vlm_encoder", feats, got_vlm)):
                diff = float(np.abs(out - ref.float().cpu().numpy()).max())
                diffs[graph][key] = max(diffs[graph].get(key, 0.0), diff)
    finally:
        model.train(was_training)
    worst = {g: max(d.values()) for g, d in diffs.items()}
    report = {"ok": all(v <= tol for v in worst.values()), "tol": tol, "max_abs_diff": worst,
              "per_batch_size": diffs, "images": [str(p) for p in images], "instruction": instruction,
              "providers": {g: s.get_providers()[0] for g, s in sessions.items()}}
    write_json(out_dir / PARITY, report, indent=2)
    if not report["ok"]:
        bad = ", ".join(f"{g} {v:.2e}" for g, v in worst.items() if v > tol)
        raise ParityError(out_dir / PARITY, f"ONNX Runtime differs from PyTorch by more than {tol:g} ({bad})",
                          "re-run `rsmoe stage export` with this model; if the diff stays, the exporter "
                          "mis-traced the graph")
    log.info("ONNX parity ok: max abs diff %s (tol %g)", {g: f"{v:.1e}" for g, v in worst.items()}, tol)
    return report
