"""The frozen-encoder feature cache.

The image encoder never trains, so F_I is computed once per image and reused by every epoch and
stage; in Stage II the whole VLM encoder is frozen too, so F_VLM is cached the same way. Entries
are keyed by the image file's content hash (and the instruction, for F_VLM) under a folder named
after the encoder's identity (its spec and a fingerprint of its weights): new weights or a new
preset never read stale features. One safetensors file per entry, written atomically.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from rsmoe.data.images import dihedral_view, load_rgb
from rsmoe.files import written_file
from rsmoe.model.checkpoint import fingerprint, vlm_state


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class FeatureStore:
    """key -> tensor, in memory and as root/<key>.safetensors."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.memory: dict[str, torch.Tensor] = {}

    def get(self, key: str) -> torch.Tensor | None:
        if key not in self.memory:
            path = self.root / f"{key}.safetensors"
            if not path.is_file():
                return None
            self.memory[key] = load_file(path)["x"]
        return self.memory[key]

    def put(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to("cpu").contiguous()
        self.memory[key] = value
        with written_file(self.root / f"{key}.safetensors") as tmp:
            save_file({"x": value}, tmp)


class FrozenFeatures:
    """F_I (and, once the VLM encoder is frozen, F_VLM) for image files, computed at most once."""

    def __init__(self, model, root: Path):
        self.model = model
        spec = model.preset.image_encoder.model_dump_json()
        self.images = FeatureStore(Path(root) / f"image-{_sha(spec, str(fingerprint(model.image_encoder.state_dict().items())))}")
        self.encoded_images = 0  # images that went through the image encoder (cache misses)
        self._hashes: dict[Path, str] = {}
        self._vlm: FeatureStore | None = None
        self._root = Path(root)

    def _key(self, path: Path) -> str:
        if path not in self._hashes:
            self._hashes[path] = file_hash(path)
        return self._hashes[path]

    def image_tokens(self, paths: Sequence[Path], view: str = "identity") -> torch.Tensor:
        """-> F_I (B, T, D) for the image files, encoding only the ones not cached yet; `view`: one
        of `rsmoe.data.images.DIHEDRAL_VIEWS` (the flipped or rotated image's F_I, cached apart)."""
        suffix = "" if view == "identity" else f"-{view}"  # the plain image keeps its pre-views key
        keys = [self._key(Path(p)) + suffix for p in paths]
        for i in [i for i, k in enumerate(keys) if self.images.get(k) is None]:
            # one image per forward: a conv's float result depends on the batch it runs in, and
            # an entry must not depend on which other images happened to be missing with it
            with torch.no_grad():
                rgb = dihedral_view(load_rgb(paths[i]), view)
                tokens = self.model.image_tokens(self.model.pixel_values([rgb]))
            self.encoded_images += 1
            self.images.put(keys[i], tokens[0])
        return torch.stack([self.images.get(k) for k in keys]).to(self.model.device)

    def fit_feature_stats(self, paths: Sequence[Path]) -> None:
        """Set the model's F_I standardisation (`qformer.standardize_features`) to the per-channel
        mean and std over every token of these images (the train split's, each image once); a
        no-op for presets without it. Deterministic, so a resumed run sets the same values."""
        if not self.model.preset.qformer.standardize_features:
            return
        total = total_sq = None
        count = 0
        for path in dict.fromkeys(Path(p) for p in paths):
            tokens = self.image_tokens([path])[0].double()  # (T, D)
            s, sq = tokens.sum(0), tokens.pow(2).sum(0)
            total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
            count += tokens.shape[0]
        if not count:
            raise ValueError("no images to compute the feature statistics from")
        mean = total / count
        std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt() + 1e-3  # dead channels stay finite
        self.model.vlm.set_feature_stats(mean.float(), std.float())

    def freeze_vlm(self) -> None:
        """From now on the VLM encoder is frozen: cache F_VLM too, under its weights' identity."""
        ident = _sha(self.images.root.name, self.model.preset.qformer.model_dump_json(),
                     json.dumps(sorted((k, str(fingerprint([(k, v)]))) for k, v in vlm_state(self.model).items())))
        self._vlm = FeatureStore(self._root / f"vlm-{ident}")

    def vlm_features(self, paths: Sequence[Path], instructions: Sequence[str]) -> torch.Tensor:
        """-> F_VLM (B, Q, D); cached only after freeze_vlm(), else computed with gradients."""
        if self._vlm is None:
            return self.model.vlm_features(self.image_tokens(paths), instructions)
        keys = [_sha(self._key(Path(p)), ins) for p, ins in zip(paths, instructions)]
        for i in [i for i, k in enumerate(keys) if self._vlm.get(k) is None]:
            with torch.no_grad():  # one entry per forward, as for F_I
                feats = self.model.vlm_features(self.image_tokens([paths[i]]), [instructions[i]])
            self._vlm.put(keys[i], feats[0])
        return torch.stack([self._vlm.get(k) for k in keys]).to(self.model.device)

    def warm(self, paths: Sequence[Path], instructions: Sequence[str] | None = None, *, progress: bool = True) -> None:
        """Compute every missing entry up front, one image at a time, with a progress bar."""
        for i, path in enumerate(tqdm(list(paths), desc="features", unit="img", disable=not progress)):
            if instructions is not None and self._vlm is not None:
                self.vlm_features([path], [instructions[i]])
            else:
                self.image_tokens([path])
