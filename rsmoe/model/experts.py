"""Experts are named PEFT LoRA adapters on ONE frozen base LLM.

A batch mixes experts row by row: every LoRA layer adds, to each row, the update of that row's
adapter. PEFT offers this through `adapter_names=` only outside training mode; switching adapters
with `set_adapter` between the experts' forwards of one training step is no substitute, because
it turns `requires_grad` off on the adapters not selected and their gradients are then lost
(checked: 2 of 3 experts got no gradient). So `mixed_adapters` adds the per-row updates itself,
for one forward, in training as in inference.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator, Sequence

from peft import PeftModel
from peft.tuners.lora import LoraLayer
import torch
from torch import nn


def _row_groups(names: Sequence[str]) -> list[tuple[str, slice | torch.Tensor]]:
    """adapter -> its rows: a slice when they are one contiguous run (a view, no copy), else indices."""
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(n, []).append(i)
    return [(n, slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows) else torch.tensor(rows))
            for n, rows in groups.items()]


@contextmanager
def mixed_adapters(model: PeftModel, names: Sequence[str]) -> Iterator[None]:
    """Within the block, row r of every forward of `model` uses adapter `names[r]` ("__base__":
    no adapter), in training as in inference.

    PEFT's own mixed-batch forward gathers and scatters the rows of every adapter on every LoRA
    layer (`x[idx]`, `result[idx] += ...`): 16 % of a Stage I step of the small preset, where all
    rows use one adapter. Here each LoRA layer runs its base layer alone (its active adapters are
    emptied for the block; `requires_grad` is untouched, unlike PEFT's `disable_adapter`) and a
    hook adds each adapter's update to its rows: a slice per adapter when the rows of an adapter
    are contiguous (callers order rows by expert), index_add otherwise. Dropout and scaling are
    the adapter's own, so the result equals PEFT's forward (tests compare them).
    """
    known = set(model.peft_config)
    unknown = sorted(set(names) - known - {"__base__"})
    if unknown:
        raise KeyError(f"no adapter named {', '.join(unknown)}; the model has {', '.join(sorted(known))}")
    groups = _row_groups(names)
    contiguous = all(isinstance(rows, slice) for _, rows in groups)
    if not contiguous:
        groups = [(n, torch.arange(len(names))[rows] if isinstance(rows, slice) else rows) for n, rows in groups]

    def add_updates(layer, args, output):
        x = args[0]
        deltas = []
        for name, rows in groups:
            if name == "__base__":
                deltas.append(None)
                continue
            a, b = layer.lora_A[name], layer.lora_B[name]
            deltas.append(b(a(layer.lora_dropout[name](x[rows].to(a.weight.dtype)))) * layer.scaling[name])
        if contiguous:
            parts = [output[rows] if d is None else output[rows] + d.to(output.dtype)
                     for (_, rows), d in zip(groups, deltas)]
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        for (_, rows), d in zip(groups, deltas):
            if d is not None:
                output = output.index_add(0, rows.to(output.device), d.to(output.dtype))
        return output

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and m.lora_A]
    saved = [layer._active_adapter for layer in layers]
    handles = []
    try:
        for layer in layers:
            layer._active_adapter = []  # the base layer only; our hook adds the per-row updates
            handles.append(layer.register_forward_hook(add_updates))
        yield
    finally:
        for h in handles:
            h.remove()
        for layer, active in zip(layers, saved):
            layer._active_adapter = active


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
