"""The frozen image encoder: images -> a token sequence F_I (B, T, D), and the one shared
image preprocessing used by training, evaluation, `rsmoe encode` and the ONNX export."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from torch import nn

from rsmoe.model.presets import ImageEncoderSpec
from rsmoe.model.weights import WeightsError, efficientnet_lite0_file


def preprocess(images: Sequence[np.ndarray | Image.Image], spec: ImageEncoderSpec) -> torch.Tensor:
    """RGB images (H, W, 3) uint8 or PIL -> pixel_values (B, 3, S, S) float32, normalised.

    Bicubic resize to the encoder's square input, then (x / 255 - mean) / std per channel.
    """
    size = spec.image_size
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    out = []
    for im in images:
        pil = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, dtype=np.uint8))
        pil = pil.convert("RGB")
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.BICUBIC)
        x = torch.from_numpy(np.array(pil, dtype=np.float32)).permute(2, 0, 1) / 255.0
        out.append((x - mean) / std)
    return torch.stack(out) if out else torch.empty(0, 3, size, size)


def read_prefixed(folder: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Tensors whose name starts with `prefix` (prefix removed) from a Hugging Face folder's
    safetensors file or shards. Never reads pickles."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise WeightsError(f"{folder}: no model.safetensors or model.safetensors.index.json; "
                           "point the preset's path at a Hugging Face folder saved as safetensors")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        with safe_open(folder / name, "pt") as f:
            for key in f.keys():
                if key.startswith(prefix):
                    state[key[len(prefix):]] = f.get_tensor(key)
    if not state:
        raise WeightsError(f"{folder}: no tensors named {prefix}*; is this an InstructBLIP folder?")
    return state


class ImageEncoder(nn.Module):
    """Frozen backbone -> tokens (B, T, D). Always in eval mode (EfficientNet has BatchNorm)."""

    def __init__(self, spec: ImageEncoderSpec, backbone: nn.Module, out_dim: int, num_tokens: int):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.out_dim = out_dim
        self.num_tokens = num_tokens
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ImageEncoder":
        return super().train(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, T, D)
        if self.spec.kind == "efficientnet-lite0":
            fmap = self.backbone.extract_features(pixel_values)  # (B, 1280, S/32, S/32)
            tokens = fmap.flatten(2).transpose(1, 2)  # (B, 49, 1280)
            # ReLU6 activations are all >= 0 and unscaled; a parameter-free LayerNorm gives the
            # (frozen, randomly initialised) cross-attention inputs of unit scale.
            return nn.functional.layer_norm(tokens, (self.out_dim,))  # a constant: ONNX export traces it
        return self.backbone(pixel_values=pixel_values).last_hidden_state  # ViT: (B, 1 + P, D)


def build_image_encoder(spec: ImageEncoderSpec, *, load_weights: bool = True) -> ImageEncoder:
    """The preset's image encoder; `load_weights=False` only builds the shapes (meta device)."""
    if spec.kind == "tiny-vit":
        from transformers import ViTConfig, ViTModel
        cfg = ViTConfig(hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
                        num_attention_heads=spec.heads, intermediate_size=2 * spec.hidden_size,
                        image_size=spec.image_size, patch_size=spec.patch_size)
        tokens = 1 + (spec.image_size // spec.patch_size) ** 2
        return ImageEncoder(spec, ViTModel(cfg, add_pooling_layer=False), spec.hidden_size, tokens)
    if spec.kind == "efficientnet-lite0":
        from efficientnet_lite_pytorch import EfficientNet
        net = EfficientNet.from_name("efficientnet-lite0", image_size=spec.image_size)
        if load_weights:
            from safetensors.torch import load_file
            net.load_state_dict(load_file(efficientnet_lite0_file()), strict=True)
        del net._fc, net._dropout, net._avg_pooling  # classifier head: unused
        return ImageEncoder(spec, net, 1280, (spec.image_size // 32) ** 2)
    # eva-vit-g: the InstructBLIP vision tower
    from transformers import InstructBlipVisionConfig, InstructBlipVisionModel
    if load_weights:
        folder = require_path(spec.path, "image_encoder.path", "InstructBLIP")
        cfg = InstructBlipVisionConfig(**json.loads((folder / "config.json").read_text())["vision_config"])
        model = InstructBlipVisionModel(cfg)
        model.load_state_dict(read_prefixed(folder, "vision_model."), strict=True)
    else:
        cfg = InstructBlipVisionConfig(hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
                                       num_attention_heads=spec.heads, intermediate_size=6144,
                                       image_size=spec.image_size, patch_size=spec.patch_size)
        model = InstructBlipVisionModel(cfg)
    tokens = 1 + (cfg.image_size // cfg.patch_size) ** 2
    return ImageEncoder(spec, model, cfg.hidden_size, tokens)


def require_path(path: str | None, key: str, what: str) -> Path:
    if not path:
        raise WeightsError(f"this preset needs a local {what} folder: set model.instructblip in params.yaml "
                           f"(in Python: the preset's {key})")
    folder = Path(path)
    if not (folder / "config.json").exists():
        raise WeightsError(f"{folder}: not a Hugging Face {what} folder (no config.json); fix model.instructblip "
                           f"in params.yaml (the preset's {key})")
    return folder
