"""Low-rank adaptation of the student head: what a parent's voice pack carries instead of a head.

Why low rank: a whole head is 8.7 MB in fp16 and a pack travels over MQTT; a rank-16
update of every matrix plus the head's small vectors is about 0.8 MB, and a few minutes of
a parent's speech cannot fit millions of free numbers anyway (fewer free numbers also
overfit less). Each adapted weight W becomes W + B @ A (A [r, in] random, B [out, r] zero,
so training starts exactly at the shipped head); biases, gains and norms train whole.
The speaker merges the same way in numpy (`hearmylove.engine.adapted.merge`).
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..student import StudentHead

RANK = 16
LOW_RANK = (nn.Linear, nn.Conv1d)
"""Modules whose weight gets a low-rank update (depthwise convolutions train whole: 5 taps a channel)."""


class LowRank(nn.Module):
    """The parametrization W -> W + B @ A, reshaped to W's shape (a conv's taps flattened into `in`)."""

    def __init__(self, weight: torch.Tensor, rank: int) -> None:
        super().__init__()
        fan_in = weight[0].numel()
        self.a = nn.Parameter(torch.randn(rank, fan_in) / math.sqrt(fan_in))
        self.b = nn.Parameter(torch.zeros(weight.shape[0], rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.b @ self.a).reshape(weight.shape)


def _low_rank(module: nn.Module) -> bool:
    return isinstance(module, LOW_RANK) and not (isinstance(module, nn.Conv1d) and module.groups > 1)


TIMBRE = ("style", "out", "norm")
"""The head's parts that carry the voice rather than the words: each block's timbre-conditioned
scale and shift (`blocks.N.style`), the final norm and the projection to the spectrum."""


def _chosen(name: str, parts: str) -> bool:
    return parts == "all" or name.rsplit(".", 1)[-1] in TIMBRE or any(f".{p}." in f".{name}." for p in TIMBRE)


def attach(head: StudentHead, rank: int = RANK, seed: int = 0, parts: str = "all") -> list[nn.Parameter]:
    """Freeze the head, give each matrix a low-rank update, free its vectors; return what trains.
    `parts`: "all", or "timbre" (only `TIMBRE`: the words' path stays the shipped one)."""
    torch.manual_seed(seed)
    head.requires_grad_(False)
    trainable: list[nn.Parameter] = []
    for name, module in head.named_modules():
        if _low_rank(module) and _chosen(name, parts):
            low = LowRank(module.weight.detach(), rank)
            parametrize.register_parametrization(module, "weight", low)
            trainable += [low.a, low.b]
    for name, param in head.named_parameters():
        vector = param.ndim == 1 or ".dwconv." in name  # biases, gains, norms, depthwise taps
        if vector and "parametrizations" not in name and _chosen(name.rsplit(".", 1)[0], parts):
            param.requires_grad_(True)
            trainable.append(param)
    return trainable


def delta(head: StudentHead) -> dict[str, np.ndarray]:
    """The pack's tensors: `NAME.lora_a`/`NAME.lora_b` per low-rank weight, `NAME` for what trained whole."""
    out: dict[str, np.ndarray] = {}
    for name, module in head.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            low = cast(LowRank, module.parametrizations.weight[0])  # type: ignore[union-attr,index]
            out[f"{name}.weight.lora_a"] = low.a.detach().numpy().copy()
            out[f"{name}.weight.lora_b"] = low.b.detach().numpy().copy()
    for name, param in head.named_parameters():
        if param.requires_grad and "parametrizations" not in name:
            out[name] = param.detach().numpy().copy()
    return out


def trainable_state(head: StudentHead) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps: the low-rank factors and the freed vectors (not the frozen head)."""
    return {name: p.detach().clone() for name, p in head.named_parameters() if p.requires_grad}
