"""The task interface: what a trainable model gives the training loop.

A `Task` owns its networks, optimisers and schedulers, and defines one training step, one
validation and its export; the loop (`pipeline.training.loop`) owns everything around it.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.training.config import TrainConfig


class NonFiniteLoss(RuntimeError):
    """A loss (or gradient norm) that is NaN or infinite."""

    def __init__(self, name: str, value: float):
        self.name, self.value = name, value
        super().__init__(f"non-finite {name} ({value})")


class TrainingDiverged(RuntimeError):
    """Raised by the loop when a step produced a non-finite loss; the run stopped there."""


@dataclass
class Validation:
    """Validation metrics plus one example utterance to log (any field may be None)."""

    metrics: dict[str, float]
    mel_pred: np.ndarray | None = None
    mel_target: np.ndarray | None = None
    wav_pred: np.ndarray | None = None
    wav_target: np.ndarray | None = None
    sample_rate: int = 16000
    stop: bool = False  # the task is done (early stopping): the loop saves a checkpoint and ends


@dataclass
class Context:
    """What the loop hands a task: device, precision, clipping and the step being run."""

    device: torch.device = torch.device("cpu")
    amp_dtype: torch.dtype | None = None
    clip_norm: float | None = None
    step: int = 0
    distributed: bool = False

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA (no loss scaling needed for bf16); a no-op elsewhere."""
        if self.amp_dtype is None or self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)


def adamw(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable ones of `params` (a frozen part has none to offer)."""
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, betas=betas, weight_decay=weight_decay)


def schedule(optimizer: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """`train`'s warm-up and cosine decay, stepped once per optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, train.lr_lambda())


class Task:
    """Base of every trainable model: subclasses fill `nets`, `optimizers`, `schedulers` and define
    `train_step`, `validate` and `export`."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    ctx: Context
    #: After building the networks the loop reseeds every process with seed + rank, so that the
    #: processes draw different dropout noise. A task whose noise has always continued the
    #: initialisation's random stream (the CTC ASR) sets this False and keeps its numbers.
    reseed_after_build: bool = True

    def net(self, name: str) -> nn.Module:
        """The bare module (DDP unwrapped): for validation, export and state."""
        m = self.nets[name]
        return m.module if isinstance(m, DistributedDataParallel) else m

    def train(self, mode: bool = True) -> None:
        for m in self.nets.values():
            m.train(mode)

    def optimize(self, name: str, loss: torch.Tensor) -> float:
        """Backward `loss`, clip and step optimiser `name`; raises `NonFiniteLoss` before any update."""
        value = float(loss.detach())
        finite = math.isfinite(value)
        if self.ctx.distributed:
            # every process must stop together, or the others would wait forever in the all-reduce
            flag = torch.tensor([float(finite)], device=self.ctx.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            if finite and not flag.item():
                raise NonFiniteLoss(f"{name} loss (on another process)", float("nan"))
        if not finite:
            raise NonFiniteLoss(f"{name} loss", value)
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        max_norm = self.ctx.clip_norm if self.ctx.clip_norm else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not math.isfinite(norm):
            raise NonFiniteLoss(f"{name} gradient norm", norm)
        opt.step()
        self.schedulers[name].step()
        return value

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: self.net(k).state_dict() for k in self.nets},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, sd in state["nets"].items():
            self.net(k).load_state_dict(sd)
        for k, sd in state["optimizers"].items():
            self.optimizers[k].load_state_dict(sd)
        for k, sd in state["schedulers"].items():
            self.schedulers[k].load_state_dict(sd)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def validate(self, batches: Iterator[dict[str, Any]]) -> Validation:
        raise NotImplementedError

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """`(state_dict, extra)`: the weights inference loads and what the model card's `extra` records."""
        raise NotImplementedError
