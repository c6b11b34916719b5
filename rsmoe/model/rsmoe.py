"""RS-MoE: frozen image encoder -> instruction-aware Q-Former -> (Stage I) one LLM, or
(Stage II) the Instruction Router's soft prompts and N experts that are named LoRA adapters on
one frozen base LLM. The caption is the experts' segments joined in expert order.

    image ─► ImageEncoder ─► F_I (B, T, D_img)
    T ─► VLMEncoder(Q, T, F_I) ─► F_VLM (B, Q, D)
    Stage I : [F_VLM ; E(T)] ─► LLM + adapter "stage1" ─► caption
    Stage II: P_i = Router(T, F_VLM)_i (B, M, D);  [F_VLM ; P_i ; E(T_i)] ─► LLM + adapter i ─► segment i
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from PIL import Image
from torch import nn
from transformers import StoppingCriteria, StoppingCriteriaList

from rsmoe.model.checkpoint import STAGE1, vlm_group
from rsmoe.model.encoders import build_image_encoder, preprocess
from rsmoe.model.experts import mixed_adapters, separate_copies, stacked_adapters
from rsmoe.model.llm import build_llm
from rsmoe.model.presets import DEFAULT_INSTRUCTION, EXPERT_INSTRUCTIONS, LLM_LORA_TARGETS, Preset
from rsmoe.model.router import InstructionRouter
from rsmoe.model.vlm import VLMEncoder, qformer_tokenizer, tokenize_instructions

TRAINING_MODES = ("stage1", "stage2", "one-stage", "image-path", "frozen")
IGNORE = -100


@dataclass
class Row:
    """One LLM sequence: image `image`, decoded by `adapter`, with or without a router prompt."""

    image: int
    adapter: str
    prompt: str  # the text instruction that goes to the LLM (T or T_i)
    instruction: str  # the user instruction T (Q-Former and router condition)
    _: KW_ONLY
    router: bool  # the router's prompts go before the image (Stage II experts), or not (Stage I)
    target: str | None = None
    qa: bool = False  # a QA pair's answer: its loss is a group of its own (`RSMoE._loss`)
    # a multi-turn QA row: (question, answer) turns after the image prefix, each question in the
    # prompt template, each answer a target; replaces `prompt` / `target` (`prompt` holds turn 1)
    turns: tuple[tuple[str, str], ...] = ()

    def pieces(self, template: str) -> list[tuple[str, bool]]:
        """The row's text after the image prefix as (text, is_target) pieces, in order."""
        if self.turns:
            return [x for q, a in self.turns for x in ((template.format(instruction=q), False), (a, True))]
        return [(template.format(instruction=self.prompt), False)] + ([(self.target, True)] if self.target is not None
                                                                       else [])

    @property
    def group(self) -> str:
        return f"{self.adapter}_qa" if self.qa else self.adapter


@dataclass
class ModelOutput:
    loss: torch.Tensor  # mean over the groups present of their token-mean cross-entropy
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # per adapter (expert); `<adapter>_qa`: its QA rows
    tokens: dict[str, int] = field(default_factory=dict)  # target tokens per adapter


@dataclass
class Caption:
    text: str  # the segments joined in expert order
    segments: dict[str, str]


class RSMoE(nn.Module):
    def __init__(self, preset: Preset, *, load_weights: bool = True, cache: Path | str | None = None):
        super().__init__()
        self.preset = preset
        self.experts: tuple[str, ...] = preset.expert_names
        # Every randomly initialised part is drawn from the preset's seed, in a fixed order, so
        # that from_pretrained rebuilds the same frozen random weights (fingerprints check it).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(preset.seed)
            self.image_encoder = build_image_encoder(preset.image_encoder, load_weights=load_weights)
            llm, self.tokenizer = build_llm(preset.llm, load_weights=load_weights, cache=cache)
            llm.requires_grad_(False)
            dim = llm.config.hidden_size
            self.vlm = VLMEncoder(preset.qformer, self.image_encoder.out_dim, dim, load_weights=load_weights)
            self.vlm.requires_grad_(False)
            self.vlm.add_lora(preset.qformer_lora)
            lora = preset.llm_lora
            cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(LLM_LORA_TARGETS), task_type="CAUSAL_LM")
            self.llm = get_peft_model(llm, cfg, adapter_name=STAGE1)
            for name in self.experts:
                self.llm.add_adapter(name, cfg)
            self.router = InstructionRouter(self.experts, dim, preset.router_context, preset.router_hidden)
        self.qformer_tokenizer = qformer_tokenizer(preset.qformer) if load_weights else None
        self.separate: nn.ModuleDict | None = None
        self.set_stage("frozen")
        self.eval()  # like from_pretrained models: dropout off until a training loop calls train()

    # ------------------------------------------------------------------ parameters

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every parameter in exactly one named group (the trainable ones and the frozen bases)."""
        groups: dict[str, list[nn.Parameter]] = {"image_encoder": list(self.image_encoder.parameters())}
        for name, p in self.vlm.named_parameters():
            groups.setdefault(vlm_group(name), []).append(p)
        for name, p in self.llm.named_parameters():
            adapter = _adapter_of(name)
            groups.setdefault(f"llm_lora:{adapter}" if adapter else "llm_base", []).append(p)
        groups["router"] = list(self.router.parameters())
        return groups

    def trainable_groups(self, mode: str) -> tuple[str, ...]:
        vlm = ("qformer_lora", "queries", "projection")
        experts = tuple(f"llm_lora:{e}" for e in self.experts)
        return {"stage1": vlm + (f"llm_lora:{STAGE1}",), "stage2": ("router",) + experts,
                "one-stage": vlm + ("router",) + experts, "image-path": vlm, "frozen": ()}[mode]

    def set_stage(self, mode: str) -> None:
        """Make exactly the parameters trained in `mode` require grad (paper III-C, III-E)."""
        if mode not in TRAINING_MODES:
            raise ValueError(f"unknown training mode {mode!r}; choose one of {', '.join(TRAINING_MODES)}")
        trainable = set(self.trainable_groups(mode))
        for name, params in self.parameter_groups().items():
            for p in params:
                p.requires_grad_(name in trainable)
        self.mode = mode

    def summary(self) -> str:
        """A trainable / frozen parameter table, per group."""
        lines = [f"RSMoE preset={self.preset.name} experts={','.join(self.experts)} mode={self.mode}",
                 f"{'group':<24}{'trainable':>14}{'frozen':>14}"]
        total = [0, 0]
        for name, params in self.parameter_groups().items():
            t = sum(p.numel() for p in params if p.requires_grad)
            f = sum(p.numel() for p in params if not p.requires_grad)
            total[0] += t
            total[1] += f
            lines.append(f"{name:<24}{t:>14,}{f:>14,}")
        lines.append(f"{'total':<24}{total[0]:>14,}{total[1]:>14,}")
        return "\n".join(lines)

    def train(self, mode: bool = True) -> "RSMoE":
        super().train(mode)
        self.image_encoder.eval()  # frozen, and EfficientNet's BatchNorm must not update
        if getattr(self, "mode", None) == "stage2":
            self.vlm.eval()  # frozen in Stage II: deterministic F_VLM, identical to the cached one
        return self

    @property
    def device(self) -> torch.device:
        return self.router.context[self.experts[0]].device

    # ------------------------------------------------------------------ encoders

    def pixel_values(self, images: Sequence[np.ndarray | Image.Image]) -> torch.Tensor:
        return preprocess(images, self.preset.image_encoder).to(self.device)

    @torch.no_grad()
    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> F_I (B, T, D_img); the encoder is frozen, so no graph is kept."""
        return self.image_encoder(pixel_values.to(self.device))

    def vlm_features(self, image_tokens: torch.Tensor, instructions: Sequence[str]) -> torch.Tensor:
        """F_I (B, T, D_img) and one instruction per image -> F_VLM (B, Q, D)."""
        enc = tokenize_instructions(self.qformer_tokenizer, instructions,
                                    self.preset.qformer.max_instruction_tokens).to(self.device)
        return self.vlm(image_tokens.to(self.device), enc.input_ids, enc.attention_mask)

    # ------------------------------------------------------------------ training forwards

    def forward_stage1(self, captions: Sequence[str], *, image_tokens: torch.Tensor | None = None,
                       vlm_features: torch.Tensor | None = None, instructions: Sequence[str] | None = None,
                       dialogues: Sequence[Sequence[tuple[str, str, str]]] | None = None) -> ModelOutput:
        """Stage I: the single LLM (adapter `stage1`) on the full caption, no router. Give the
        image tokens, or the `vlm_features` already computed from them. `dialogues[b]`, when not
        empty, replaces caption b by a multi-turn QA row of its (question, answer, expert) turns."""
        instructions = _per_image(instructions, len(captions))
        dialogues = list(dialogues) if dialogues is not None else [()] * len(captions)
        rows = [_dialogue_row(b, STAGE1, dialogues[b], instructions[b], router=False) if dialogues[b] else
                Row(b, STAGE1, instructions[b], instructions[b], router=False, target=c)
                for b, c in enumerate(captions)]
        if vlm_features is None:
            vlm_features = self.vlm_features(image_tokens, instructions)
        return self._loss(vlm_features, rows)

    def forward_experts(self, segments: Sequence[dict[str, str]], *, image_tokens: torch.Tensor | None = None,
                        vlm_features: torch.Tensor | None = None, instructions: Sequence[str] | None = None,
                        prompts: Sequence[str | None] | None = None,
                        dialogues: Sequence[Sequence[tuple[str, str, str]]] | None = None) -> ModelOutput:
        """Stage II and one-stage: each expert's loss on its own segment of each caption, with its
        router prompt and aspect instruction; an empty segment is masked (no row at all).
        `prompts[b]`, when given, replaces the aspect instruction of image b (a VQA pair: the
        question, as `answer` asks it). `dialogues[b]`, when not empty, gives image b one
        multi-turn QA row per expert that answers some of its (question, answer, expert) turns.
        Stage II may pass cached `vlm_features` (the VLM encoder is frozen there)."""
        instructions = _per_image(instructions, len(segments))
        prompts = list(prompts) if prompts is not None else [None] * len(segments)
        dialogues = list(dialogues) if dialogues is not None else [()] * len(segments)
        if vlm_features is None:
            vlm_features = self.vlm_features(image_tokens, instructions)
        # expert-major: each expert's rows are contiguous, so its LoRA update is one slice
        rows = []
        for e in self.experts:
            rows += [Row(b, e, prompts[b] or EXPERT_INSTRUCTIONS[e], instructions[b], router=True,
                         target=seg[e].strip(), qa=prompts[b] is not None)
                     for b, seg in enumerate(segments) if seg.get(e, "").strip()]
            rows += [_dialogue_row(b, e, mine, instructions[b], router=True) for b, d in enumerate(dialogues)
                     if (mine := [t for t in d if t[2] == e])]
        if not rows:
            raise ValueError("no expert has a non-empty segment in this batch")
        return self._loss(vlm_features, rows)

    def row_logits(self, vlm_features: torch.Tensor, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits (R, L, V) of the rows (right-padded) and their labels (R, L)."""
        embeds, mask, labels = self._assemble(vlm_features, rows, left_pad=False)
        with mixed_adapters(self.llm, [r.adapter for r in rows]):
            return self.llm(inputs_embeds=embeds, attention_mask=mask).logits, labels

    def _loss(self, vlm_features: torch.Tensor, rows: list[Row]) -> ModelOutput:
        embeds, mask, labels = self._assemble(vlm_features, rows, left_pad=False)
        with mixed_adapters(self.llm, [r.adapter for r in rows]):
            hidden = self.llm.get_base_model().get_decoder()(inputs_embeds=embeds, attention_mask=mask)[0]
        # The LM head (vocabulary-wide) only where a target token is predicted: the image, prompt
        # and padding positions (about half of a Stage II row) need no logits.
        targets = labels[:, 1:]
        keep = targets != IGNORE  # (R, L-1)
        logits = self.llm.get_output_embeddings()(hidden[:, :-1][keep]).float()  # (N, V)
        ce = F.cross_entropy(logits, targets[keep], reduction="none")  # (N,)
        row_of = keep.nonzero()[:, 0]
        row_sum = torch.zeros(len(rows), device=ce.device).index_add(0, row_of, ce)
        row_n = keep.sum(1)
        # One token-mean per group: an adapter's caption rows, and apart from them its QA rows, whose
        # two-token answers ("Yes.") would otherwise weigh ~1/20 of a caption segment's tokens.
        losses, tokens = {}, {}
        for group in dict.fromkeys(r.group for r in rows):
            idx = torch.tensor([i for i, r in enumerate(rows) if r.group == group], device=ce.device)
            n = int(row_n[idx].sum())
            losses[group] = row_sum[idx].sum() / max(n, 1)
            tokens[group] = n
        return ModelOutput(torch.stack(list(losses.values())).mean(), losses, tokens)

    # ------------------------------------------------------------------ sequences

    def _assemble(self, vlm_features: torch.Tensor, rows: list[Row], *, left_pad: bool):
        """Rows -> inputs_embeds (R, L, D), attention mask (R, L), labels (R, L) (-100 off target).

        Each row is [F_VLM[image] (Q) ; P_i (M, router rows only) ; E(prompt) ; E(target + eos)].
        Training pads on the right, generation on the left (so every row ends where decoding starts).
        """
        embed = self.llm.get_input_embeddings()
        dtype = embed.weight.dtype
        pieces = [r.pieces(self.preset.llm.prompt_template) for r in rows]
        flat = iter(self._token_ids([text for p in pieces for text, _ in p]))
        eos = self.tokenizer.eos_token_id
        texts = []  # per row: its token ids after the prefix, and their labels (a target piece + eos)
        for p in pieces:
            ids, lab = [], []
            for _, is_target in p:
                tok = next(flat) + ([eos] if is_target else [])
                ids += tok
                lab += tok if is_target else [IGNORE] * len(tok)
            texts.append((ids, lab))
        prefix = []
        router_rows = [i for i, r in enumerate(rows) if r.router]
        soft: dict[int, torch.Tensor] = {}
        if router_rows:
            rdtype = self.router.context[self.experts[0]].dtype
            pooled_t = torch.stack([embed(torch.tensor(ids, device=self.device)).mean(0) for ids in
                                    self._token_ids([rows[i].instruction for i in router_rows])]).to(rdtype)
            pooled_v = vlm_features[[rows[i].image for i in router_rows]].mean(1).to(rdtype)
            prompts_p = self.router(pooled_t, pooled_v, [rows[i].adapter for i in router_rows])  # (R', M, D)
            soft = dict(zip(router_rows, prompts_p.to(dtype)))
        seqs, labels = [], []
        for i, r in enumerate(rows):
            parts = [vlm_features[r.image].to(dtype)]
            if i in soft:
                parts.append(soft[i])
            ids, lab = texts[i]
            parts.append(embed(torch.tensor(ids, device=self.device)))
            seq = torch.cat(parts)
            seqs.append(seq)
            labels.append([IGNORE] * (len(seq) - len(ids)) + lab)
            prefix.append(len(seq))
        width = max(prefix)
        dim = seqs[0].shape[-1]
        out = seqs[0].new_zeros(len(rows), width, dim)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        lab = torch.full((len(rows), width), IGNORE, dtype=torch.long, device=self.device)
        for i, (seq, lb) in enumerate(zip(seqs, labels)):
            sl = slice(width - len(seq), width) if left_pad else slice(0, len(seq))
            out[i, sl] = seq
            mask[i, sl] = 1
            lab[i, sl] = torch.tensor(lb, device=self.device)
        return out, mask, lab

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False).input_ids

    # ------------------------------------------------------------------ generation

    @contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.training
        if was_training:
            self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            if was_training:
                self.train(True)

    def generate_rows(self, vlm_features: torch.Tensor, rows: list[Row], *,
                      max_new_tokens: int | Sequence[int] | None = None,
                      sequential: bool = False, min_new_tokens: int = 0) -> list[str]:
        """Greedy-decode every row. By default all rows, whatever their expert, go through ONE
        mixed-adapter `generate` call; `sequential=True` decodes expert after expert instead
        (on the separate copies when `use_separate_copies()` was called). `max_new_tokens` is one
        limit for every row or one per row (a row past its own limit stops; the others go on)."""
        limits = ([max_new_tokens or self.preset.max_new_tokens] * len(rows) if not isinstance(max_new_tokens, Sequence)
                  else list(max_new_tokens))
        if len(limits) != len(rows):
            raise ValueError(f"generate_rows: {len(limits)} token limits for {len(rows)} rows")
        with self._inference():
            embeds, mask, _ = self._assemble(vlm_features, rows, left_pad=True)
            kwargs = dict(min_new_tokens=min_new_tokens, do_sample=False, num_beams=1,
                          pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)

            def limited(idx: list[int]) -> dict:
                sub = [limits[i] for i in idx]
                if len(set(sub)) == 1:
                    return dict(max_new_tokens=sub[0], **kwargs)
                return dict(max_new_tokens=max(sub), stopping_criteria=StoppingCriteriaList([_RowLimits(sub)]),
                            **kwargs)

            names = [r.adapter for r in rows]
            if not sequential:
                with stacked_adapters(self.llm, names):
                    ids = self.llm.generate(inputs_embeds=embeds, attention_mask=mask,
                                            **limited(list(range(len(rows)))))
                tokens = [ids[i].tolist() for i in range(len(rows))]
            else:
                tokens = [[] for _ in rows]
                for name in dict.fromkeys(names):
                    idx = [i for i, n in enumerate(names) if n == name]
                    if self.separate is not None and name in self.separate:
                        out = self.separate[name].generate(inputs_embeds=embeds[idx], attention_mask=mask[idx],
                                                           **limited(idx))
                    else:
                        out = self.llm.generate(inputs_embeds=embeds[idx], attention_mask=mask[idx],
                                                adapter_names=[name] * len(idx), **limited(idx))
                    for j, i in enumerate(idx):
                        tokens[i] = out[j].tolist()
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]

    def caption(self, images: Sequence[np.ndarray | Image.Image] | torch.Tensor | None = None, *,
                image_tokens: torch.Tensor | None = None, vlm_features: torch.Tensor | None = None,
                instruction: str = DEFAULT_INSTRUCTION, stage1: bool = False, sequential: bool = False,
                max_new_tokens: int | None = None) -> list[Caption]:
        """Caption images (RGB arrays / PIL, or pixel_values, or precomputed image tokens or F_VLM).

        Every expert writes its segment (theme, objects, relations ...) in one batched call and
        the caption is the segments joined in expert order. `stage1=True` uses the single
        Stage I LLM instead (no router, one segment named `stage1`).
        `max_new_tokens` is per caption aspect (default: the preset's): an expert's segment may
        take that times the aspects it writes, Stage I's caption that times all four
        (`Preset.token_budget`)."""
        with self._inference():
            if vlm_features is not None:  # e.g. from the exported ONNX encoder (`instruction` must match)
                feats = vlm_features.to(self.device)
            else:
                if image_tokens is None:
                    pixels = images if isinstance(images, torch.Tensor) else self.pixel_values(images)
                    image_tokens = self.image_tokens(pixels)
                feats = self.vlm_features(image_tokens, [instruction] * image_tokens.shape[0])
            n = feats.shape[0]
        experts = (STAGE1,) if stage1 else self.experts
        rows = [Row(b, e, instruction if stage1 else EXPERT_INSTRUCTIONS[e], instruction, router=not stage1)
                for b in range(n) for e in experts]
        limits = [self.preset.token_budget(r.adapter, max_new_tokens) for r in rows]
        texts = self.generate_rows(feats, rows, max_new_tokens=limits, sequential=sequential)
        out = []
        for b in range(n):
            segs = {r.adapter: t for r, t in zip(rows, texts) if r.image == b}
            out.append(Caption(" ".join(s for s in segs.values() if s), segs))
        return out

    def answer(self, questions: Sequence[str], experts: Sequence[str], *, image_tokens: torch.Tensor,
               max_new_tokens: int = 16) -> list[str]:
        """Zero-shot VQA (paper IV-E): question q about image q goes to expert `experts[q]` (the
        expert of its question type), with the question as the instruction of the Q-Former,
        the router and the LLM. `image_tokens` holds one row per question. All questions are
        decoded in one batched mixed-expert call."""
        if not (len(questions) == len(experts) == image_tokens.shape[0]):
            raise ValueError("answer: questions, experts and image_tokens must have one entry per question")
        unknown = sorted(set(experts) - set(self.experts))
        if unknown:
            raise ValueError(f"answer: unknown experts {unknown}; this model has {list(self.experts)}")
        with self._inference():
            feats = self.vlm_features(image_tokens, list(questions))
        rows = [Row(i, e, q, q, router=True) for i, (q, e) in enumerate(zip(questions, experts))]
        return self.generate_rows(feats, rows, max_new_tokens=max_new_tokens)

    def propagate_stage1(self) -> None:
        """Weight propagation (paper III-E): every expert adapter becomes a copy of the Stage I
        LLM adapter, so at the start of Stage II each expert is the Stage I model."""
        state = get_peft_model_state_dict(self.llm, adapter_name=STAGE1)
        for name in self.experts:
            result = set_peft_model_state_dict(self.llm, state, adapter_name=name)
            if any("lora_" in k for k in result.unexpected_keys):
                raise RuntimeError(f"propagating {STAGE1} into {name}: {result.unexpected_keys[:3]}")

    def use_separate_copies(self) -> None:
        """Hold N full copies of the base LLM, one per expert (equivalence tests and benchmark)."""
        self.separate = separate_copies(self.llm, self.experts)

    # ------------------------------------------------------------------ folders

    def save_pretrained(self, folder: str | Path) -> Path:
        from rsmoe.model.checkpoint import save_model
        return save_model(self, Path(folder))

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, cache: Path | str | None = None, **paths: str) -> "RSMoE":
        """Load a folder written by save_pretrained (safetensors and JSON only, no remote code).
        `paths` overrides local paths of paper presets, e.g. llm="/models/Llama-3.2-1B"."""
        from rsmoe.model.checkpoint import load_model
        return load_model(cls, Path(folder), cache=cache, **paths)


class _RowLimits(StoppingCriteria):
    """Stops row i of a batched `generate` once it has `limits[i]` new tokens (transformers pads
    a stopped row and decodes the others on), so experts with different budgets share one call."""

    def __init__(self, limits: Sequence[int]):
        self.limits = torch.tensor(list(limits))
        self.start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.start is None:  # first call: one token generated (input_ids may hold a prompt)
            self.start = input_ids.shape[1] - 1
        return (input_ids.shape[1] - self.start) >= self.limits.to(input_ids.device)


def _dialogue_row(image: int, adapter: str, turns: Sequence[tuple[str, str, str]], instruction: str, *,
                  router: bool) -> Row:
    """A multi-turn QA row of (question, answer, expert) turns, decoded by `adapter`; its prompt
    is the first question (what `answer` would ask alone)."""
    return Row(image, adapter, turns[0][0], instruction, router=router, qa=True,
               turns=tuple((q, a) for q, a, _ in turns))


def _adapter_of(param_name: str) -> str | None:
    """'...q_proj.lora_A.objects.weight' -> 'objects'; None for base weights."""
    parts = param_name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p.startswith("lora_"):
            return parts[i + 1]
    return None


def _per_image(instructions: Sequence[str] | None, n: int) -> list[str]:
    if instructions is None:
        return [DEFAULT_INSTRUCTION] * n
    if len(instructions) != n:
        raise ValueError(f"{len(instructions)} instructions for {n} images")
    return list(instructions)
