"""What each model trains on and how: A2A (both families), V2A (both families, every decoder
initialisation) and the HiFi-GAN vocoder, as `Task`s for the one `Trainer`.

Losses (weights in params.yaml `loss:`):
- WaveGAN family (A2A and V2A): LS-GAN adversarial and feature-matching losses against the
  MelGAN multi-scale discriminator, plus reconstruction: L1 between log-mels and a
  multi-resolution STFT loss. Adversarial terms start at `adversarial_start` steps.
- MelSpec family: L1 between predicted and target log-mels (plus spectral convergence).
- Vocoder: HiFi-GAN's losses (LS-GAN, feature matching x2, mel L1 x45).
Forward passes run under the trainer's autocast (bf16 on CUDA); losses in float32.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.audio.griffin_lim import griffin_lim
from pipeline.audio.mel import LogMel, MelConfig
from pipeline.models.a2a import build_a2a
from pipeline.models.config import HiFiGANConfig, ModelConfig
from pipeline.models.discriminator import build_discriminator
from pipeline.models.hifigan import HiFiGAN
from pipeline.models.losses import (
    MultiResolutionSTFTLoss, feature_matching_loss, lsgan_d_loss, lsgan_g_loss,
)
from pipeline.models.norm import multi_stat_norms
from pipeline.models.v2a import build_v2a, freeze, load_decoder, set_norm_stats
from pipeline.training.trainer import Context, Task, TrainConfig, Validation

DECODER_INITS = ("scratch", "pretrained_frozen", "pretrained_finetuned")


def _adamw(params: Any, lr: float, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def _split(outs: list[tuple[Tensor, list[Tensor]]], n: int) -> tuple[list[Any], list[Any]]:
    """Discriminator outputs on cat([real, fake]) -> (real outputs, fake outputs), in float32."""
    real = [(lg[:n].float(), [f[:n].float() for f in fs]) for lg, fs in outs]
    fake = [(lg[n:].float(), [f[n:].float() for f in fs]) for lg, fs in outs]
    return real, fake


def spectral_convergence(pred_log_mel: Tensor, target_log_mel: Tensor) -> Tensor:
    """||M - M^||_F / ||M||_F on linear-magnitude mels."""
    target = target_log_mel.exp()
    return torch.linalg.norm(target - pred_log_mel.exp()) / torch.linalg.norm(target)


class SpeechTask(Task):
    """A generator (A2A or V2A) of either family, with a multi-scale discriminator for WaveGAN."""

    kind = "speech"

    def __init__(self, ctx: Context, cfg: TrainConfig, model_cfg: ModelConfig, generator: nn.Module,
                 loss: dict[str, float], norm_set: str, info: dict[str, Any]):
        self.ctx, self.cfg, self.model_cfg = ctx, cfg, model_cfg
        self.loss = {k: float(v) for k, v in loss.items()}
        self.norm_set, self.info = norm_set, info
        set_norm_stats(generator, norm_set)
        self.nets = {"g": generator.to(ctx.device)}
        self.optimizers = {"g": _adamw(generator.parameters(), cfg.lr, cfg)}
        if model_cfg.family == "wavegan":
            self.nets["d"] = build_discriminator(model_cfg).to(ctx.device)
            self.optimizers["d"] = _adamw(self.nets["d"].parameters(), cfg.lr_d, cfg)
            self.stft = MultiResolutionSTFTLoss().to(ctx.device)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, cfg.lr_lambda()) for k, o in self.optimizers.items()}
        self.logmel = LogMel(model_cfg.mel).to(ctx.device)

    def inputs(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        audio, spk = batch["audio"], batch["spk"]
        target = self.logmel(audio)
        with self.ctx.autocast():
            out = self.nets["g"](self.inputs(batch), spk)
        out = out.float()
        if self.model_cfg.family == "melspec":
            mel = F.l1_loss(out, target)
            sc = spectral_convergence(out, target)
            g = self.optimize("g", self.loss["mel_l1"] * mel + self.loss["spectral_convergence"] * sc)
            return {"g": g, "mel_l1": float(mel.detach()), "spectral_convergence": float(sc.detach())}
        return self._wavegan_step(audio, out, target)

    def _wavegan_step(self, audio: Tensor, wav: Tensor, target: Tensor) -> dict[str, float]:
        logs: dict[str, float] = {}
        adversarial = self.ctx.step > self.loss["adversarial_start"]
        n = len(audio)
        if adversarial:
            with self.ctx.autocast():
                outs = self.nets["d"](torch.cat([audio, wav.detach()]))
            logs["d"] = self.optimize("d", lsgan_d_loss(*_split(outs, n)))
        mel = F.l1_loss(self.logmel(wav), target)
        stft = self.stft(wav, audio)
        total = self.loss["mel_l1"] * mel + self.loss["stft"] * stft
        if adversarial:
            with self.ctx.autocast():
                outs = self.nets["d"](torch.cat([audio, wav]))
            real, fake = _split(outs, n)
            adv, fm = lsgan_g_loss(fake), feature_matching_loss(real, fake)
            total = total + self.loss["adversarial"] * adv + self.loss["feature_matching"] * fm
            logs.update(adversarial=float(adv.detach()), feature_matching=float(fm.detach()))
        logs.update(g=self.optimize("g", total), mel_l1=float(mel.detach()), stft=float(stft.detach()))
        return logs

    def validate(self, batches: Iterator[dict[str, Tensor]]) -> Validation:
        g = self.net("g")
        mel_l1, stft, example = [], [], None
        for b in batches:
            out = g(self.inputs(b), b["spk"]).float()
            target = self.logmel(b["audio"])
            pred = out if self.model_cfg.family == "melspec" else self.logmel(out)
            mel_l1.append(float(F.l1_loss(pred, target)))
            if self.model_cfg.family == "wavegan":
                stft.append(float(self.stft(out, b["audio"])))
            if example is None:
                wav = (griffin_lim(pred[0].cpu().numpy(), self.model_cfg.mel) if self.model_cfg.family == "melspec"
                       else out[0].cpu().numpy())
                example = (pred[0].cpu().numpy(), target[0].cpu().numpy(), wav, b["audio"][0].cpu().numpy())
        metrics = {"mel_l1": float(np.mean(mel_l1))}
        if stft:
            metrics["stft"] = float(np.mean(stft))
        return Validation(metrics, *example, sample_rate=self.model_cfg.mel.sample_rate) if example else Validation(metrics)

    def export(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        config = {"kind": self.kind, "family": self.model_cfg.family, "profile": self.model_cfg.profile,
                  "model": self.model_cfg.to_dict(), "norm_stats": self.norm_set, "mel": asdict(self.model_cfg.mel),
                  "sample_rate": self.model_cfg.mel.sample_rate, "samples_per_frame": self.model_cfg.samples_per_frame,
                  **self.info}
        return self.net("g").state_dict(), config


class A2ATask(SpeechTask):
    """Audio-only autoencoder: waveform -> audio encoder -> decoder, with the "audio" batch-norm statistics."""

    kind = "a2a"

    def __init__(self, ctx: Context, cfg: TrainConfig, model_cfg: ModelConfig, loss: dict[str, float],
                 info: dict[str, Any] | None = None):
        super().__init__(ctx, cfg, model_cfg, build_a2a(model_cfg), loss, "audio", info or {})

    def inputs(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["audio"]


class V2ATask(SpeechTask):
    """Video-to-audio: mouth crops -> video encoder -> decoder (scratch, or a pre-trained A2A decoder,
    frozen or fine-tuned), with "video" batch-norm statistics when `separate_bn`, else shared "audio" ones.

    A frozen decoder keeps its weights; with separate statistics its video set is re-estimated
    from video features, with shared ones it normalises with the A2A's fixed audio statistics.
    """

    kind = "v2a"

    def __init__(self, ctx: Context, cfg: TrainConfig, model_cfg: ModelConfig, loss: dict[str, float],
                 decoder: str = "scratch", separate_bn: bool = True, a2a_state: dict[str, Tensor] | None = None,
                 info: dict[str, Any] | None = None):
        if decoder not in DECODER_INITS:
            raise ValueError(f"decoder must be one of {DECODER_INITS}, not {decoder!r}")
        if (decoder != "scratch") != (a2a_state is not None):
            raise ValueError(f"decoder={decoder!r} needs {'an' if decoder != 'scratch' else 'no'} A2A state dict")
        model = build_v2a(model_cfg)
        if a2a_state is not None:
            load_decoder(model, a2a_state)  # the video statistics start as a copy of the audio ones
        if decoder == "pretrained_frozen":
            freeze(model.decoder)
            if separate_bn:
                # Frozen weights, but the video statistics adapt to video features: this is where
                # separate statistics differ from shared ones (which stay the A2A's audio statistics).
                # Fine-tuned decoders update whichever set is active, so there the two coincide.
                for norm in multi_stat_norms(model.decoder):
                    norm.frozen = False
        info = {"decoder": decoder, "separate_bn": separate_bn, **(info or {})}
        super().__init__(ctx, cfg, model_cfg, model, loss, "video" if separate_bn else "audio", info)

    def inputs(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["video"].float() / 255.0


class VocoderTask(Task):
    """HiFi-GAN on ground-truth log-mels: generator against multi-period + multi-scale discriminators."""

    def __init__(self, ctx: Context, cfg: TrainConfig, voc_cfg: HiFiGANConfig, mel_cfg: MelConfig,
                 loss: dict[str, float], info: dict[str, Any] | None = None):
        self.ctx, self.cfg, self.voc_cfg, self.mel_cfg = ctx, cfg, voc_cfg, mel_cfg
        self.loss = {k: float(v) for k, v in loss.items()}
        self.info = info or {}
        self.nets = {"g": HiFiGAN(voc_cfg).to(ctx.device), "d": build_discriminator(voc_cfg).to(ctx.device)}
        self.optimizers = {"g": _adamw(self.nets["g"].parameters(), cfg.lr, cfg),
                           "d": _adamw(self.nets["d"].parameters(), cfg.lr_d, cfg)}
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, cfg.lr_lambda()) for k, o in self.optimizers.items()}
        self.logmel = LogMel(mel_cfg).to(ctx.device)

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        audio = batch["audio"]
        mel = self.logmel(audio)
        n = len(audio)
        with self.ctx.autocast():
            wav = self.nets["g"](mel)
        wav = wav.float()
        with self.ctx.autocast():
            outs = self.nets["d"](torch.cat([audio, wav.detach()]))
        d = self.optimize("d", lsgan_d_loss(*_split(outs, n)))
        with self.ctx.autocast():
            outs = self.nets["d"](torch.cat([audio, wav]))
        real, fake = _split(outs, n)
        mel_l1 = F.l1_loss(self.logmel(wav), mel)
        adv, fm = lsgan_g_loss(fake), feature_matching_loss(real, fake)
        total = self.loss["adversarial"] * adv + self.loss["feature_matching"] * fm + self.loss["mel_l1"] * mel_l1
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
        config = {"kind": "vocoder", "architecture": "hifigan", "profile": self.voc_cfg.profile,
                  "model": self.voc_cfg.to_dict(), "mel": asdict(self.mel_cfg), "sample_rate": self.mel_cfg.sample_rate,
                  **self.info}
        return self.net("g").state_dict(), config
