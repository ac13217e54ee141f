"""Batch norm with one set of running statistics per named input source (Kefalas et al., Alg. 1).

A decoder pre-trained on audio-encoder features (A2A) is reused on video-encoder features
(V2A); the two feature distributions differ, so each keeps its own running mean and variance
while the learned weights stay shared. AV2A (arXiv 2307.16584) uses one set per modality
combination, hence N named sets.

Choice: the affine scale and shift are shared by default, so the statistics are the only
per-source state (the paper describes separate statistics, not separate weights).
`affine_per_set=True` gives each set its own affine too, for experiments.

The caller selects the set (`set_norm_stats(model, "video")`) before a step. `freeze` fixes a
module's parameters and (unless asked to keep adapting statistics) makes its multi-stat norms
normalise with running statistics even in training mode, so a frozen decoder stays the same
function and `model.train()` cannot undo it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class RunningStats(nn.Module):
    """Running mean/variance of one input source, plus its own affine when requested."""

    def __init__(self, num_features: int, affine: bool):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.weight = self.bias = None


class MultiStatBatchNorm(nn.Module):
    """Batch norm over the channels of (B, C, ...) with running statistics per named set."""

    def __init__(self, num_features: int, sets: Sequence[str] = ("audio", "video"),
                 affine_per_set: bool = False, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        sets = tuple(sets)
        if not sets or len(set(sets)) != len(sets):
            raise ValueError(f"sets {sets} must be distinct names")
        self.sets = sets
        self.affine_per_set = affine_per_set
        self.momentum = momentum
        self.eps = eps
        self.active = sets[0]
        self.frozen = False
        self.stats = nn.ModuleDict({name: RunningStats(num_features, affine_per_set) for name in sets})
        if affine_per_set:
            self.weight = self.bias = None
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def select(self, name: str) -> None:
        """Normalise with (and, in training, update) the statistics of set `name`."""
        if name not in self.stats:
            raise KeyError(f"no statistics set {name!r}; sets are {self.sets}")
        self.active = name

    def copy_stats(self, src: str, dst: str) -> None:
        """Overwrite set `dst` (statistics, and affine when per set) with set `src`."""
        self.stats[dst].load_state_dict(self.stats[src].state_dict())

    def forward(self, x: Tensor) -> Tensor:
        stats = self.stats[self.active]
        weight, bias = (stats.weight, stats.bias) if self.affine_per_set else (self.weight, self.bias)
        use_batch = self.training and not self.frozen
        if use_batch:
            stats.num_batches_tracked.add_(1)
        return F.batch_norm(x, stats.running_mean, stats.running_var, weight, bias,
                            use_batch, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.stats[self.sets[0]].running_mean.numel()}, sets={self.sets}, active={self.active!r}"


def multi_stat_norms(module: nn.Module) -> list[MultiStatBatchNorm]:
    """Every multi-statistics norm inside `module` (itself included)."""
    return [m for m in module.modules() if isinstance(m, MultiStatBatchNorm)]


def set_norm_stats(model: nn.Module, name: str) -> None:
    """Select statistics set `name` in every multi-stat norm of `model` (e.g. before an A2A or V2A step)."""
    for norm in multi_stat_norms(model):
        norm.select(name)


def copy_norm_stats(model: nn.Module, src: str, dst: str) -> None:
    """Initialise statistics set `dst` from set `src` in every multi-stat norm of `model`."""
    for norm in multi_stat_norms(model):
        norm.copy_stats(src, dst)


def freeze(module: nn.Module, update_stats: bool = False) -> None:
    """Stop training `module`'s parameters; by default its norms also keep their statistics fixed.

    Fixed statistics make a frozen decoder exactly the pre-trained function. With
    `update_stats=True` the selected set still tracks the incoming features in training mode
    (weights fixed, statistics adapted), the variant in which separate per-source statistics
    matter for a frozen decoder. Multi-stat norms stay frozen through `module.train()`; plain
    batch-norm layers are put in eval mode, which a later `train()` call reverts.
    """
    module.requires_grad_(False)
    if update_stats:
        return
    for m in module.modules():
        if isinstance(m, MultiStatBatchNorm):
            m.frozen = True
        elif isinstance(m, _BatchNorm):
            m.eval()


def unfreeze(module: nn.Module) -> None:
    """Undo `freeze`: parameters train again and norms use batch statistics in training mode."""
    module.requires_grad_(True)
    for m in module.modules():
        if isinstance(m, MultiStatBatchNorm):
            m.frozen = False
        elif isinstance(m, _BatchNorm):
            m.train(module.training)
