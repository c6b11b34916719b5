"""The RS-MoE model: frozen image encoder, instruction-aware Q-Former, Instruction Router and
experts as named LoRA adapters on one base LLM (see rsmoe/model/rsmoe.py).

The model classes load lazily: importing `rsmoe.model.presets` (the CLI's parser does, for
`--preset` choices) must not import torch, transformers and PEFT (~3.7 s), or `rsmoe --help` waits.
"""
from rsmoe.model.presets import PRESETS, Preset, get_preset

_LAZY = {"STAGE1", "Caption", "ModelOutput", "RSMoE"}
__all__ = ["PRESETS", "Preset", "get_preset", "RSMoE", "Caption", "ModelOutput", "STAGE1"]


def __getattr__(name: str):
    if name in _LAZY:
        from rsmoe.model import rsmoe as module
        return getattr(module, name)
    raise AttributeError(f"module 'rsmoe.model' has no attribute {name!r}")
