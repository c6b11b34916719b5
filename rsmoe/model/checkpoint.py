"""A trained RS-MoE as a Hugging Face-style folder, in safetensors and JSON only:

    config.json                      format, the full preset, experts, base-weight fingerprints
    vlm.safetensors                  Q-Former LoRA, query tokens, projections, F_I statistics
    router.safetensors               the Instruction Router
    adapters/<name>/                 one PEFT adapter folder per LLM adapter (stage1, experts)
        adapter_config.json, adapter_model.safetensors

The frozen bases are not copied: they are rebuilt from the preset (pretrained packages or local
paths, random parts from the preset's seed) and checked against sampled fingerprints, so a folder
loaded on top of other base weights fails loudly instead of producing quiet nonsense.
Loading reads no pickle and runs no remote code.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from rsmoe.errors import InputError
from rsmoe.files import swapped_folder
from rsmoe.model.presets import Preset

FORMAT, VERSION = "rsmoe", 1
VLM_GROUPS = ("qformer_lora", "queries", "projection", "feature_stats", "concept_heads")  # saved with the model


class ModelFolderError(InputError):
    """A model folder that is missing a part or does not fit the model it describes."""


def fingerprint(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """sha256 over names, shapes and ~256 evenly spaced values of every tensor (fast on 135 M)."""
    h = hashlib.sha256()
    for name, t in tensors:
        if t.is_meta:
            return None
        flat = t.detach().reshape(-1)
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(flat[:: max(1, flat.numel() // 256)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprints(model) -> dict[str, str | None]:
    vlm_base = [(n, p) for n, p in model.vlm.named_parameters() if vlm_group(n) == "qformer_base"]
    llm_base = [(n, p) for n, p in model.llm.named_parameters() if "lora_" not in n]
    return {"image_encoder": fingerprint(model.image_encoder.state_dict().items()),
            "qformer_base": fingerprint(vlm_base), "llm_base": fingerprint(llm_base)}


STAGE1 = "stage1"  # the Stage I LLM adapter, later propagated into every expert


def vlm_group(name: str) -> str:
    """The parameter group of a VLM-encoder parameter name."""
    return ("qformer_lora" if "lora_" in name else "queries" if name == "query_tokens"
            else "projection" if name.startswith(("projection.", "global_projection."))
            else "feature_stats" if name in ("feature_mean", "feature_std")
            else "concept_heads" if name.startswith(("scene_", "object_", "position_")) else "qformer_base")


def vlm_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous() for n, p in model.vlm.named_parameters() if vlm_group(n) in VLM_GROUPS}


def save_model(model, folder: Path) -> Path:
    """Write the folder next to its final place, then swap it in (a crash leaves the old one)."""
    with swapped_folder(folder) as tmp:
        _write(model, tmp, [STAGE1, *model.experts])
    return Path(folder)


def _write(model, tmp: Path, adapters: list[str]) -> None:
    config = {"format": FORMAT, "version": VERSION, "preset": model.preset.model_dump(mode="json"),
              "experts": list(model.experts), "adapters": adapters, "fingerprints": fingerprints(model)}
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(vlm_state(model), tmp / "vlm.safetensors")
    save_file({k: v.contiguous() for k, v in model.router.state_dict().items()}, tmp / "router.safetensors")
    model.llm.save_pretrained(tmp / "adapters", selected_adapters=adapters, safe_serialization=True)
    (tmp / "adapters" / "README.md").unlink(missing_ok=True)  # PEFT's empty model card


def load_model(cls, folder: Path, *, cache=None, **paths: str):
    folder = Path(folder)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise ModelFolderError(folder, "not an rsmoe model folder (no config.json)",
                               "point at a folder written by save_pretrained / the stage2 stage")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ModelFolderError(cfg_file, f"not valid JSON ({e})", "re-save the model") from e
    if cfg.get("format") != FORMAT or cfg.get("version") != VERSION:
        raise ModelFolderError(cfg_file, f"format {cfg.get('format')!r} v{cfg.get('version')} is not "
                               f"{FORMAT!r} v{VERSION}", "save the model again with this rsmoe version")
    preset = _with_paths(Preset.model_validate(cfg["preset"]), paths)
    model = cls(preset, cache=cache)
    for group, expected in cfg.get("fingerprints", {}).items():
        got = fingerprints(model)[group]
        if expected and got and expected != got:
            raise ModelFolderError(cfg_file, f"the frozen {group} weights differ from those this folder was "
                                   f"trained on (preset {preset.name!r})",
                                   "load it with the same preset weights and package versions, or retrain")
    _load_adapters(model, folder / "adapters", cfg.get("adapters", []))
    _load_exact(folder / "vlm.safetensors", vlm_state(model),
                "Q-Former LoRA / queries / projection / feature stats / concept heads")
    _load_exact(folder / "router.safetensors", model.router.state_dict(), "router")
    model.set_stage("frozen")
    return model


def _with_paths(preset: Preset, paths: dict[str, str]) -> Preset:
    if not paths:
        return preset
    data = preset.model_dump()
    for key, value in paths.items():
        if key == "instructblip":
            data["image_encoder"]["path"] = data["qformer"]["path"] = value
        elif key in ("llm", "image_encoder", "qformer"):
            data[key]["path"] = value
        else:
            raise ValueError(f"unknown path override {key!r}; use llm=, instructblip=, image_encoder= or qformer=")
    return Preset.model_validate(data)


def _load_exact(path: Path, target: dict[str, torch.Tensor], what: str) -> None:
    """Copy the file's tensors into `target`, requiring the same names and shapes."""
    if not path.is_file():
        raise ModelFolderError(path, f"the {what} weights are missing", "re-save the model folder")
    state = _read(path)
    missing, unexpected = sorted(set(target) - set(state)), sorted(set(state) - set(target))
    wrong = sorted(k for k in set(state) & set(target) if state[k].shape != target[k].shape)
    if missing or unexpected or wrong:
        raise ModelFolderError(path, f"the {what} weights do not fit this preset (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]})",
                               "load the folder with the preset it was trained with")
    with torch.no_grad():
        for k, v in state.items():
            target[k].copy_(v)


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error type for a damaged header
        raise ModelFolderError(path, f"not a readable safetensors file ({e})", "re-save the model folder") from e


def _load_adapters(model, root: Path, listed: list[str]) -> None:
    expected = [STAGE1, *model.experts]
    if sorted(listed) != sorted(expected):
        raise ModelFolderError(root.parent / "config.json", f"lists adapters {listed}, the preset has {expected}",
                               "load the folder with the experts setting it was trained with")
    lora = model.preset.llm_lora
    for name in expected:
        folder = root / name
        weights, cfg_file = folder / "adapter_model.safetensors", folder / "adapter_config.json"
        if not weights.is_file() or not cfg_file.is_file():
            raise ModelFolderError(folder, f"the adapter of {name!r} is missing (adapter_model.safetensors and "
                                   "adapter_config.json)", "re-save the model folder")
        cfg = json.loads(cfg_file.read_text())
        if cfg.get("r") != lora.r or cfg.get("lora_alpha") != lora.alpha:
            raise ModelFolderError(cfg_file, f"LoRA r={cfg.get('r')} alpha={cfg.get('lora_alpha')} does not match "
                                   f"the preset's r={lora.r} alpha={lora.alpha}", "load it with its own preset")
        state = _read(weights)
        try:
            result = set_peft_model_state_dict(model.llm, state, adapter_name=name)
        except RuntimeError as e:  # size mismatch
            raise ModelFolderError(weights, f"the adapter {name!r} does not fit this LLM ({str(e)[:200]})",
                                   "load the folder with the preset it was trained with") from e
        want = {n for n, _ in model.llm.named_parameters() if f".{name}." in n and "lora_" in n}
        missing = sorted(k for k in result.missing_keys if k in want)
        unexpected = [k for k in result.unexpected_keys if "lora_" in k]
        if missing or unexpected or len(state) != len(want):
            raise ModelFolderError(weights, f"the adapter {name!r} does not fit this LLM ({len(state)} tensors for "
                                   f"{len(want)} LoRA weights; missing {missing[:2]}, unexpected {unexpected[:2]})",
                                   "load the folder with the preset it was trained with")
