"""Experts are named PEFT LoRA adapters on ONE frozen base LLM.

A batch mixes experts row by row: every LoRA layer adds, to each row, the update of that row's
adapter (PEFT's mixed-batch forward). PEFT offers this through `adapter_names=` only outside
training mode; switching adapters with `set_adapter` between the experts' forwards of one
training step is no substitute, because it turns `requires_grad` off on the adapters not
selected and their gradients are then lost (checked: 2 of 3 experts got no gradient). So
`mixed_adapters` installs PEFT's own per-row hook for one forward, in training as in inference.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from functools import partial
from typing import Iterator, Sequence

from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.tuners.lora.model import _adapter_names_pre_forward_hook
import torch
from torch import nn


@contextmanager
def mixed_adapters(model: PeftModel, names: Sequence[str]) -> Iterator[None]:
    """Within the block, row r of every forward of `model` uses adapter `names[r]`."""
    known = set(model.peft_config)
    unknown = sorted(set(names) - known - {"__base__"})
    if unknown:
        raise KeyError(f"no adapter named {', '.join(unknown)}; the model has {', '.join(sorted(known))}")
    hook = partial(_adapter_names_pre_forward_hook, adapter_names=list(names))
    handles = [m.register_forward_pre_hook(hook, with_kwargs=True)
               for m in model.modules() if isinstance(m, LoraLayer)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def stacked_adapters(model: PeftModel, names: Sequence[str]) -> Iterator[None]:
    """Inference-only twin of `mixed_adapters`, for decoding: the same per-row adapters, computed
    as two batched matmuls per LoRA layer, delta = (x @ A_rows) @ (s * B_rows) with A_rows (R, in, r)
    and B_rows (R, r, out) gathered once per call, instead of PEFT's per-adapter gather and
    scatter on every layer of every step (58 % of a batched decode step of the small preset).
    The base layers run with PEFT's adapters disabled; tests compare it with sequential decoding.
    """
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and m.lora_A]
    handles = []
    for layer in layers:
        # rows share tensors: the stack gathers one (in, r) / (r, out) view per row
        a = {n: layer.lora_A[n].weight.t() for n in set(names)}
        b = {n: layer.lora_B[n].weight.t() * layer.scaling[n] for n in set(names)}
        stack_a = torch.stack([a[n] for n in names])  # (R, in, r)
        stack_b = torch.stack([b[n] for n in names])  # (R, r, out)

        def add_delta(module, args, output, stack_a=stack_a, stack_b=stack_b):
            x = args[0]  # (R, L, in)
            return output + torch.bmm(torch.bmm(x.to(stack_a.dtype), stack_a), stack_b).to(output.dtype)

        handles.append(layer.register_forward_hook(add_delta))
    try:
        with model.disable_adapter():
            yield
    finally:
        for h in handles:
            h.remove()


def separate_copies(model: PeftModel, experts: Sequence[str]) -> nn.ModuleDict:
    """N full copies of the base LLM, each holding only its expert's adapter (the `separate`
    mode: for equivalence tests and the memory / speed benchmark, never for training)."""
    copies = nn.ModuleDict()
    for name in experts:
        one = copy.deepcopy(model)
        one.set_adapter(name)
        for other in list(one.peft_config):
            if other != name:
                one.delete_adapter(other)
        one.eval()
        copies[name] = one
    return copies
