"""The Instruction Router: prompt learning (CoOp / CoCoOp) that turns the instruction and the
visual features into one soft prompt per expert.

For expert i: P_i = C_i + g_i([mean(E(T)); mean(F_VLM)]), with C_i (M, D) learnable context
vectors and g_i a small meta-network whose output (D) shifts every context vector. g_i's last
layer starts at zero, so at initialisation P_i = C_i, independent of the input.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class InstructionRouter(nn.Module):
    def __init__(self, experts: Sequence[str], dim: int, context: int, hidden: int):
        super().__init__()
        self.experts = tuple(experts)
        self.context = nn.ParameterDict(
            {e: nn.Parameter(torch.randn(context, dim) * 0.02) for e in self.experts})
        self.meta = nn.ModuleDict({e: _meta_net(dim, hidden) for e in self.experts})

    def forward(self, instruction: torch.Tensor, visual: torch.Tensor, experts: Sequence[str]) -> torch.Tensor:
        """Pooled instruction (R, D), pooled F_VLM (R, D), one expert name per row -> P (R, M, D)."""
        cond = torch.cat([instruction, visual], dim=-1)  # (R, 2D)
        rows = []
        for r, name in enumerate(experts):
            if name not in self.context:
                raise KeyError(f"the router has no expert {name!r}; it has {', '.join(self.experts)}")
            rows.append(self.context[name] + self.meta[name](cond[r]).unsqueeze(0))  # (M, D)
        return torch.stack(rows)


def _meta_net(dim: int, hidden: int) -> nn.Sequential:
    net = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net
