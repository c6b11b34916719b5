"""The RS-MoE model: frozen image encoder, instruction-aware Q-Former, Instruction Router and
experts as named LoRA adapters on one base LLM (see rsmoe/model/rsmoe.py)."""
from rsmoe.model.presets import PRESETS, Preset, get_preset
from rsmoe.model.rsmoe import STAGE1, Caption, ModelOutput, RSMoE

__all__ = ["PRESETS", "Preset", "get_preset", "RSMoE", "Caption", "ModelOutput", "STAGE1"]
