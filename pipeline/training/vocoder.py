"""Training the HiFi-GAN vocoder on ground-truth log-mels (melspec synthesis turns mels into speech with it).

Losses are HiFi-GAN V1's (weights in params.yaml `loss.vocoder`): LS-GAN against multi-period
plus multi-scale discriminators, feature matching x2, mel L1 x45.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from pipeline.audio.mel import LogMel, MelConfig
from pipeline.config import to_plain
from pipeline.models.config import HiFiGANConfig
from pipeline.models.discriminator import CombinedDiscriminator, MultiPeriodDiscriminator, MultiScaleDiscriminator
from pipeline.models.hifigan import HiFiGAN
from pipeline.training.adversarial import Adversary
from pipeline.training.config import TrainConfig
from pipeline.training.task import Context, Task, Validation, adamw, schedule


@dataclass(frozen=True)
class VocoderLoss:
    """params.yaml `loss.vocoder`."""

    adversarial: float
    feature_matching: float
    mel_l1: float


class VocoderTask(Task):
    """HiFi-GAN on ground-truth log-mels: generator against multi-period + multi-scale discriminators."""

    def __init__(self, ctx: Context, train: TrainConfig, voc_cfg: HiFiGANConfig, mel_cfg: MelConfig, loss: VocoderLoss):
        self.ctx, self.voc_cfg, self.mel_cfg, self.loss = ctx, voc_cfg, mel_cfg, loss
        self.nets = {"g": HiFiGAN(voc_cfg).to(ctx.device)}
        self.optimizers = {"g": adamw(self.nets["g"].parameters(), train.lr, train.betas, train.weight_decay)}
        # the multi-scale discriminator is initialised first: the trained vocoders were made in that order
        msd = MultiScaleDiscriminator(voc_cfg.msd_scales, voc_cfg.msd_channels, voc_cfg.msd_max_channels, voc_cfg.msd_layers)
        mpd = MultiPeriodDiscriminator(voc_cfg.mpd_periods, voc_cfg.mpd_channels)
        self.adversary = Adversary(self, CombinedDiscriminator(mpd, msd), train)
        self.schedulers = {k: schedule(o, train) for k, o in self.optimizers.items()}
        self.logmel = LogMel(mel_cfg).to(ctx.device)

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        audio = batch["audio"]
        mel = self.logmel(audio)
        with self.ctx.autocast():
            wav = self.nets["g"](mel)
        wav = wav.float()
        d = self.adversary.step(audio, wav)
        adv, fm = self.adversary.generator_terms(audio, wav)
        mel_l1 = F.l1_loss(self.logmel(wav), mel)
        w = self.loss
        total = w.adversarial * adv + w.feature_matching * fm + w.mel_l1 * mel_l1
        return {"d": d, "g": self.optimize("g", total), "mel_l1": float(mel_l1.detach()), "adversarial": float(adv.detach()),
                "feature_matching": float(fm.detach())}

    def validate(self, batches: Iterator[dict[str, Tensor]]) -> Validation:
        errors, example = [], None
        for b in batches:
            mel = self.logmel(b["audio"])
            wav = self.net("g")(mel).float()
            pred = self.logmel(wav)
            errors.append(float(F.l1_loss(pred, mel)))
            if example is None:
                example = (pred[0].cpu().numpy(), mel[0].cpu().numpy(), wav[0].cpu().numpy(), b["audio"][0].cpu().numpy())
        if example is None:
            return Validation({})
        return Validation({"mel_l1": float(np.mean(errors))}, *example, sample_rate=self.mel_cfg.sample_rate)

    def export(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return self.net("g").state_dict(), {"architecture": "hifigan", "mel": to_plain(self.mel_cfg)}
