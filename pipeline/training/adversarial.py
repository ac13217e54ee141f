"""The one adversarial step of every GAN here (the WaveGAN family, the HiFi-GAN vocoder): LS-GAN.

`Adversary` adds a discriminator and its optimiser to a task. Each training step calls
`step(real, fake)` (the discriminator's update on the detached generator output) and then
`generator_terms(real, fake)`: the generator's adversarial and feature-matching losses, which
the task weights and adds to its reconstruction terms. Real and generated audio go through the
discriminator as one batch; its outputs are compared in float32.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pipeline.models.losses import feature_matching_loss, lsgan_d_loss, lsgan_g_loss
from pipeline.training.config import TrainConfig
from pipeline.training.task import Task, adamw


def split_outputs(outs: list[tuple[Tensor, list[Tensor]]], n: int) -> tuple[list[Any], list[Any]]:
    """Discriminator outputs on cat([real, fake]) -> (real outputs, fake outputs), in float32."""
    real = [(lg[:n].float(), [f[:n].float() for f in fs]) for lg, fs in outs]
    fake = [(lg[n:].float(), [f[n:].float() for f in fs]) for lg, fs in outs]
    return real, fake


class Adversary:
    """A discriminator trained against `task`'s generator (its net and optimiser are `name` in the task)."""

    def __init__(self, task: Task, discriminator: nn.Module, train: TrainConfig, name: str = "d"):
        self.task, self.name = task, name
        task.nets[name] = discriminator.to(task.ctx.device)
        task.optimizers[name] = adamw(task.nets[name].parameters(), train.lr_d, train.betas, train.weight_decay)

    def step(self, real: Tensor, fake: Tensor) -> float:
        """One discriminator update: real pulled to 1, the (detached) generated audio to 0."""
        with self.task.ctx.autocast():
            outs = self.task.nets[self.name](torch.cat([real, fake.detach()]))
        return self.task.optimize(self.name, lsgan_d_loss(*split_outputs(outs, len(real))))

    def generator_terms(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """The generator's LS-GAN adversarial loss and its feature-matching loss (unweighted)."""
        with self.task.ctx.autocast():
            outs = self.task.nets[self.name](torch.cat([real, fake]))
        real_outs, fake_outs = split_outputs(outs, len(real))
        return lsgan_g_loss(fake_outs), feature_matching_loss(real_outs, fake_outs)
