"""The VLM encoder: an instruction-aware Q-Former (transformers' `InstructBlipQFormerModel`) with
learnable query tokens and a linear projection to the LLM width, F_VLM = FC(QFormer(Q, T, F_I))."""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import load_file
from torch import nn
from transformers import AutoTokenizer, InstructBlipQFormerConfig, InstructBlipQFormerModel

from rsmoe.data.describe import cells_placement
from rsmoe.model.encoders import require_path, read_prefixed
from rsmoe.model.presets import OBJECT_NAME_TOKENS, QFORMER_LORA_TARGETS, LoraSpec, QFormerSpec
from rsmoe.model.weights import WeightsError, minilm_folder

BERT_VOCAB = 30522


def _placements() -> tuple[tuple[str, ...], list[int]]:
    """The phrases the position head can say (`cells_placement` of every non-empty set of the
    3x3 cells, first seen first) and, for each 9-bit mask of occupied cells, its phrase's index."""
    phrases: list[str] = []
    table = [0]
    for mask in range(1, 512):
        p = cells_placement([i for i in range(9) if mask >> i & 1])
        if p not in phrases:
            phrases.append(p)
        table.append(phrases.index(p))
    return tuple(phrases), table


PLACEMENTS, _PLACEMENT_OF_MASK = _placements()


def placement_indices(cell_logits: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
    """(..., 9) one class's cell logits -> (...) PLACEMENTS indices: the position rule on the cells
    with logit > 0, the likeliest cell when none is. `table` is the mask -> phrase table on the
    logits' device (the module's buffer; built here when None)."""
    table = torch.tensor(_PLACEMENT_OF_MASK, device=cell_logits.device) if table is None else table
    on = (cell_logits > 0) | ((cell_logits == cell_logits.max(-1, keepdim=True).values)
                              & ~(cell_logits > 0).any(-1, keepdim=True))
    bits = torch.tensor([1 << i for i in range(cell_logits.shape[-1])], device=cell_logits.device)
    return table[(on.long() * bits).sum(-1)]


@lru_cache(maxsize=8)
def _cell_pool(side: int) -> torch.Tensor:
    """(9, side * side): averages a square grid of tokens (row-major, row 0 the top) over each
    3x3 cell, a token counted in the cell its centre lies in."""
    if side < 3:
        raise ValueError(f"position tokens need a grid of at least 3x3 image tokens, got {side}x{side}")
    cell = [int((i + 0.5) / side * 3) for i in range(side)]
    pool = torch.zeros(9, side * side)
    for r in range(side):
        for c in range(side):
            pool[3 * cell[r] + cell[c], r * side + c] = 1.0
    return pool / pool.sum(1, keepdim=True)


class VLMEncoder(nn.Module):
    def __init__(self, spec: QFormerSpec, image_dim: int, llm_dim: int, *, load_weights: bool = True):
        super().__init__()
        self.spec = spec
        cfg = _qformer_config(spec, image_dim)
        self.qformer = InstructBlipQFormerModel(cfg)
        self.query_tokens = nn.Parameter(torch.zeros(1, spec.num_query_tokens, spec.hidden_size))
        nn.init.normal_(self.query_tokens, std=cfg.initializer_range)
        self.projection = nn.Linear(spec.hidden_size, llm_dim)
        if spec.standardize_features:  # saved with the model, never trained (set_feature_stats)
            self.feature_mean = nn.Parameter(torch.zeros(image_dim), requires_grad=False)
            self.feature_std = nn.Parameter(torch.ones(image_dim), requires_grad=False)
        self.global_projection = nn.Linear(2 * image_dim, spec.global_tokens * llm_dim) if spec.global_tokens else None
        # concept heads (rsmoe.training.concepts): zeros until fitted, saved with the model, never trained
        if spec.has_scene_tokens:
            n = len(spec.scene_types)
            self.scene_weight = nn.Parameter(torch.zeros(n, 2 * image_dim), requires_grad=False)
            self.scene_bias = nn.Parameter(torch.zeros(n), requires_grad=False)
            self.scene_phrases = nn.Parameter(torch.zeros(n, spec.scene_tokens, llm_dim), requires_grad=False)
        if spec.has_object_tokens:
            k = len(spec.object_classes)
            self.object_weight = nn.Parameter(torch.zeros(k, 2 * image_dim), requires_grad=False)
            self.object_bias = nn.Parameter(torch.zeros(k), requires_grad=False)
            # one row per class and a last one for an empty slot, OBJECT_NAME_TOKENS tokens each
            self.object_phrases = nn.Parameter(torch.zeros(k + 1, OBJECT_NAME_TOKENS, llm_dim), requires_grad=False)
        if spec.has_position_tokens:  # per class, "is an object's centre in this cell?" on each cell's features
            k = len(spec.object_classes)
            self.position_weight = nn.Parameter(torch.zeros(k, 2 * image_dim), requires_grad=False)
            self.position_bias = nn.Parameter(torch.zeros(k), requires_grad=False)
            # one row per PLACEMENTS phrase and a last one for an empty slot
            self.position_phrases = nn.Parameter(torch.zeros(len(PLACEMENTS) + 1, spec.position_tokens, llm_dim),
                                                 requires_grad=False)
            self.register_buffer("placement_of_mask", torch.tensor(_PLACEMENT_OF_MASK), persistent=False)
        if load_weights and spec.init == "minilm":
            _load_minilm(self.qformer)
        elif load_weights and spec.init == "instructblip":
            folder = require_path(spec.path, "qformer.path", "InstructBLIP")
            self.qformer.load_state_dict(read_prefixed(folder, "qformer."), strict=True)
            self.query_tokens.data.copy_(read_prefixed(folder, "query_tokens")[""])

    def add_lora(self, lora: LoraSpec) -> None:
        """Inject the paper's Q-Former LoRA (self-attention q,v; cross-attention q,k,v,o; FFN)."""
        cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                         target_modules=QFORMER_LORA_TARGETS)
        inject_adapter_in_model(cfg, self.qformer)

    @torch.no_grad()
    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The per-channel mean and std of F_I that `standardize_features` removes."""
        if not self.spec.standardize_features:
            raise ValueError("this preset does not standardise its image features (qformer.standardize_features)")
        if mean.shape != self.feature_mean.shape or std.shape != self.feature_std.shape or (std <= 0).any():
            raise ValueError(f"feature stats need shape {tuple(self.feature_mean.shape)} and a positive std")
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def set_scene_head(self, weight: torch.Tensor, bias: torch.Tensor, phrases: torch.Tensor) -> None:
        """The scene-type classifier on `pooled` F_I (S, 2 D_img), (S,) and each type's name as LLM
        token embeddings (S, scene_tokens, D_llm)."""
        if not self.spec.has_scene_tokens:
            raise ValueError("this model has no scene tokens (qformer.scene_tokens 0, or fewer than 2 scene_types)")
        self._set("scene", weight=weight, bias=bias, phrases=phrases)

    def set_object_head(self, weight: torch.Tensor, bias: torch.Tensor, phrases: torch.Tensor) -> None:
        """The per-class presence classifier on `pooled` F_I (K, 2 D_img), (K,) and each class's name
        as LLM token embeddings, then an empty slot's (K + 1, OBJECT_NAME_TOKENS, D_llm)."""
        if not self.spec.has_object_tokens:
            raise ValueError("this model has no object tokens (qformer.object_tokens 0, or no object_classes)")
        self._set("object", weight=weight, bias=bias, phrases=phrases)

    def set_position_head(self, weight: torch.Tensor, bias: torch.Tensor, phrases: torch.Tensor) -> None:
        """The per-class cell-occupancy classifier on `cell_features` (K, 2 D_img), (K,) and each
        PLACEMENTS phrase as LLM token embeddings, then an empty slot's (P + 1, position_tokens, D_llm)."""
        if not self.spec.has_position_tokens:
            raise ValueError("this model has no position tokens (qformer.position_tokens 0, or no object tokens)")
        self._set("position", weight=weight, bias=bias, phrases=phrases)

    @torch.no_grad()
    def _set(self, head: str, **values: torch.Tensor) -> None:
        for name, value in values.items():
            target = getattr(self, f"{head}_{name}")
            if value.shape != target.shape:
                raise ValueError(f"{head} head {name} needs shape {tuple(target.shape)}, got {tuple(value.shape)}")
            target.copy_(value)

    def standardized(self, image_tokens: torch.Tensor) -> torch.Tensor:
        if self.spec.standardize_features:
            return (image_tokens - self.feature_mean) / self.feature_std
        return image_tokens

    @staticmethod
    def pooled(image_tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, D_img) -> (B, 2 D_img): the mean and std over the tokens."""
        mean = image_tokens.mean(1)
        return torch.cat([mean, (image_tokens - mean.unsqueeze(1)).pow(2).mean(1).sqrt()], dim=-1)

    @staticmethod
    def cell_features(image_tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, D_img) tokens of a square grid (after a class token, for a ViT) -> (B, 9, 2 D_img):
        each 3x3 cell's mean token beside the grid's mean token (cell 3 * row + column, row 0 the top)."""
        n = image_tokens.shape[1]
        if math.isqrt(n) ** 2 != n:
            if math.isqrt(n - 1) ** 2 != n - 1:
                raise ValueError(f"position tokens need a square grid of image tokens, got {n}")
            image_tokens = image_tokens[:, 1:]  # the class token
        pool = _cell_pool(math.isqrt(image_tokens.shape[1])).to(device=image_tokens.device, dtype=image_tokens.dtype)
        cells = torch.einsum("ct,btd->bcd", pool, image_tokens)
        return torch.cat([cells, image_tokens.mean(1, keepdim=True).expand_as(cells)], dim=-1)

    def cell_logits(self, cell_features: torch.Tensor) -> torch.Tensor:
        """(B, 9, 2 D_img) -> (B, 9, K): per cell and class, the logit that an object's centre is in it."""
        return cell_features.float() @ self.position_weight.t() + self.position_bias

    def placements_of(self, cell_logits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """(B, 9, K) cell logits, (B, slots) class indices -> (B, slots) PLACEMENTS indices: the
        position rule on the cells the slot's class is found in (logit > 0; the likeliest cell when
        none is), len(PLACEMENTS) (the empty phrase) for an empty slot. A gather, so ONNX keeps it."""
        k = len(self.spec.object_classes)
        idx = slots.clamp(max=k - 1).unsqueeze(1).expand(-1, cell_logits.shape[1], -1)
        phrase = placement_indices(cell_logits.gather(2, idx).transpose(1, 2), self.placement_of_mask)  # (B, slots)
        return torch.where(slots < k, phrase, torch.full_like(phrase, len(PLACEMENTS)))

    def scene_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled.float() @ self.scene_weight.t() + self.scene_bias

    def object_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled.float() @ self.object_weight.t() + self.object_bias

    def object_slots(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 2 D_img) -> (B, slots) class indices: the classes found present (probability > 0.5),
        most likely first; K (the empty slot) where fewer are."""
        return self.slots_of(self.object_logits(pooled))

    def slots_of(self, object_logits: torch.Tensor) -> torch.Tensor:
        top, idx = object_logits.topk(self.spec.object_slots, dim=-1)
        return torch.where(top > 0, idx, torch.full_like(idx, len(self.spec.object_classes)))

    def concept_tokens(self, scene_logits: torch.Tensor | None, object_logits: torch.Tensor | None,
                       cell_logits: torch.Tensor | None = None) -> torch.Tensor:
        """The heads' logits (B, S types), (B, K classes), (B, 9, K) cells -> the LLM tokens they give
        (B, S + O, D_llm), float: the scene-type names' embeddings mixed by the softmax, then each
        slot's class name, followed (position tokens) by where that class lies."""
        parts = []
        if self.spec.has_scene_tokens:  # (B, S) probabilities mix the names' embeddings (S, L, D)
            parts.append(torch.einsum("bs,sld->bld", scene_logits.softmax(-1), self.scene_phrases.float()))
        if self.spec.has_object_tokens:  # (B, slots) -> (B, slots, L [+ P], D) -> (B, slots * (L [+ P]), D)
            slots = self.slots_of(object_logits)
            names = self.object_phrases[slots]
            if self.spec.has_position_tokens:
                names = torch.cat([names, self.position_phrases[self.placements_of(cell_logits, slots)]], dim=2)
            parts.append(names.flatten(1, 2).float())
        return torch.cat(parts, dim=1)

    @property
    def n_concept_tokens(self) -> int:
        """How many of F_VLM's last tokens are concept tokens (scene, then object slots)."""
        per_slot = OBJECT_NAME_TOKENS + (self.spec.position_tokens if self.spec.has_position_tokens else 0)
        return (self.spec.scene_tokens if self.spec.has_scene_tokens else 0) + (
            self.spec.object_slots * per_slot if self.spec.has_object_tokens else 0)

    def forward(self, image_tokens: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """F_I (B, T, D_img), instruction ids/mask (B, L) -> F_VLM (B, Q + G + S + O, D_llm): the
        projected query outputs, then (when the preset has them) the G global tokens, the S scene
        tokens and the O = slots x OBJECT_NAME_TOKENS object tokens."""
        batch, n_query = image_tokens.shape[0], self.spec.num_query_tokens
        image_tokens = self.standardized(image_tokens)
        query = self.query_tokens.expand(batch, -1, -1)
        mask = torch.cat([attention_mask.new_ones(batch, n_query), attention_mask], dim=1)
        out = self.qformer(input_ids=input_ids, attention_mask=mask, query_embeds=query,
                           encoder_hidden_states=image_tokens,
                           encoder_attention_mask=image_tokens.new_ones(image_tokens.shape[:2], dtype=torch.long))
        feats = self.projection(out.last_hidden_state[:, :n_query])  # only the query outputs
        if self.global_projection is None and not (self.spec.has_scene_tokens or self.spec.has_object_tokens):
            return feats
        pooled = self.pooled(image_tokens)
        parts = [feats]
        if self.global_projection is not None:
            parts.append(self.global_projection(pooled).view(batch, -1, feats.shape[-1]))
        if self.spec.has_scene_tokens or self.spec.has_object_tokens:
            parts.append(self.concept_tokens(
                self.scene_logits(pooled) if self.spec.has_scene_tokens else None,
                self.object_logits(pooled) if self.spec.has_object_tokens else None,
                self.cell_logits(self.cell_features(image_tokens)) if self.spec.has_position_tokens else None,
            ).to(feats.dtype))
        return torch.cat(parts, dim=1)


def _qformer_config(spec: QFormerSpec, image_dim: int) -> InstructBlipQFormerConfig:
    if spec.init == "instructblip" and spec.path:
        folder = require_path(spec.path, "qformer.path", "InstructBLIP")
        cfg = json.loads((folder / "config.json").read_text())["qformer_config"]
        return InstructBlipQFormerConfig(**{**cfg, "encoder_hidden_size": image_dim})
    return InstructBlipQFormerConfig(
        vocab_size=BERT_VOCAB, hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, intermediate_size=spec.intermediate_size,
        cross_attention_frequency=spec.cross_attention_frequency, encoder_hidden_size=image_dim)


def qformer_tokenizer(spec: QFormerSpec):
    """The Q-Former's BERT tokenizer: InstructBLIP's own, else MiniLM's (same uncased vocabulary)."""
    if spec.init == "instructblip" and spec.path and (Path(spec.path) / "qformer_tokenizer").exists():
        return AutoTokenizer.from_pretrained(Path(spec.path) / "qformer_tokenizer", local_files_only=True)
    return AutoTokenizer.from_pretrained(minilm_folder(), local_files_only=True)


def _load_minilm(qformer: InstructBlipQFormerModel) -> None:
    """MiniLM-L6 (BERT) weights into the Q-Former's BERT parts; cross-attention stays random.

    BERT adds token-type embedding 0 to every token; the Q-Former has no token types, so that
    vector is folded into the position embeddings. InstructBLIP initialises the query path's
    feed-forward (`*_query`) from the text path's, and so do we.
    """
    bert = load_file(minilm_folder() / "model.safetensors")
    target = qformer.state_dict()
    mapped: dict[str, torch.Tensor] = {
        "embeddings.word_embeddings.weight": bert["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight":
            bert["embeddings.position_embeddings.weight"] + bert["embeddings.token_type_embeddings.weight"][0],
        "embeddings.layernorm.weight": bert["embeddings.LayerNorm.weight"],
        "embeddings.layernorm.bias": bert["embeddings.LayerNorm.bias"],
    }
    for key, value in bert.items():
        if not key.startswith("encoder.layer."):
            continue
        new = key.replace(".attention.self.", ".attention.attention.")
        mapped[new] = value
        for part in (".intermediate.", ".output."):
            if part in new and ".attention." not in new:
                mapped[new.replace(part, part[:-1] + "_query.")] = value
    unknown = sorted(set(mapped) - set(target))
    missing = sorted(k for k in target if k not in mapped and ".crossattention." not in k)
    if unknown or missing or any(mapped[k].shape != target[k].shape for k in mapped):
        raise WeightsError(f"MiniLM does not fit this Q-Former (unknown {unknown[:3]}, missing {missing[:3]}); "
                           "the small preset's Q-Former must be 6 layers of width 384")
    qformer.load_state_dict(mapped, strict=False)


def tokenize_instructions(tokenizer, instructions, max_length: int, return_tensors: str = "pt"):
    """Instructions -> input_ids, attention_mask (B, L): padded to the longest, truncated to
    `max_length`. The one tokenisation of the model (`RSMoE.vlm_features`) and of the ONNX export."""
    return tokenizer(list(instructions), padding=True, truncation=True, max_length=max_length,
                     return_tensors=return_tensors)
