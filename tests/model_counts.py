"""Trainable-parameter counts of an RS-MoE computed from sizes alone (LoRA adds r * (in + out)
per adapted Linear), to check the model code against."""


def _lora(r: int, shapes: list[tuple[int, int]]) -> int:
    return sum(r * (i + o) for i, o in shapes)


def expected_trainable(model) -> dict[str, int]:
    preset, cfg, img = model.preset, model.llm.config, model.image_encoder.out_dim
    q = preset.qformer
    h, f = q.hidden_size, q.intermediate_size
    per_layer = [(h, h), (h, h)]  # self-attention q, v (not k, not o)
    per_layer += [(h, f), (h, f), (f, h), (f, h)]  # feed-forward of the instruction and query paths
    cross = [(h, h), (img, h), (img, h), (h, h)]  # cross-attention q, k, v, o
    n_cross = len(range(0, q.layers, q.cross_attention_frequency))
    qformer_lora = q.layers * _lora(preset.qformer_lora.r, per_layer) + n_cross * _lora(preset.qformer_lora.r, cross)
    d, inter = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    llm_layer = [(d, d), (d, kv), (d, inter), (d, inter), (inter, d)]  # q, v, gate, up, down
    llm_lora = cfg.num_hidden_layers * _lora(preset.llm_lora.r, llm_layer)
    m, hid = preset.router_context, preset.router_hidden
    # per expert: M context vectors; meta-net LayerNorm(2D) -> Linear(2D, hid) -> ReLU -> Linear(hid, D)
    router = preset.experts * (m * d + 2 * (2 * d) + (2 * d * hid + hid) + (hid * d + d))
    global_tokens = q.global_tokens * d * (2 * img + 1)  # Linear(2 * D_img, G * D) from F_I's mean and std
    return {"qformer_lora": qformer_lora, "queries": q.num_query_tokens * h, "projection": h * d + d + global_tokens,
            "llm_lora": llm_lora, "router": router}
