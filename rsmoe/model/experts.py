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
