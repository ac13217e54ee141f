"""The LTS family (Kim, Kim & Chung, arXiv 2308.15256): k-means units, pitch and energy from the lips, a conformer
mel decoder and a flow post-net; speech through the vocoder.

One kind, `lts` (models/lts/<variant>), trained from scratch on video with the units, prosody and
audio streams as targets; at inference it reads the video and the speaker conditioning only.
Variants (`lts.variants`) drop the pitch and energy predictors or the post-net.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.audio.griffin_lim import griffin_lim
from pipeline.audio.mel import AudioConfig, LogMel
from pipeline.config import ConfigError, parse
from pipeline.families import register
from pipeline.families.base import Family, Init
from pipeline.families.speech import video_input
from pipeline.inference.card import ModelCard
from pipeline.inference.vocoder import Vocoder, vocode
from pipeline.models.config import DEMO_FRONT_END
from pipeline.models.flow import gaussian_nll
from pipeline.models.lts import LTSConfig, LTSModel, LTSOutput, Variance, denormalise, postnet_condition, targets_of
from pipeline.streams import Catalog, Stream, frame_rates
from pipeline.training.config import TrainConfig
from pipeline.training.task import Context, Task, Validation, adamw, schedule

PROSODY = ("f0", "voiced", "energy")


@dataclass(frozen=True)
class LTSLoss:
    """params.yaml `loss.lts`."""

    mel_l1: float  # coarse log-mel vs target
    unit_ce: float  # k-means unit cross-entropy ...
    label_smoothing: float  # ... with this label smoothing
    pitch_l1: float  # standardised ln(F0), voiced frames
    voicing_bce: float  # voiced/unvoiced logit
    energy_l1: float  # standardised energy
    flow_nll: float  # post-net negative log-likelihood (nats per dimension)


@dataclass(frozen=True)
class LTSVariant:
    """An `lts.variants` entry: which parts the model has, and the post-net's sampling temperature."""

    prosody: bool  # pitch and energy predictors (and their embeddings)
    postnet: bool  # flow post-net; without it the coarse mel is the output
    temperature: float  # the post-net's prior is sampled at this standard deviation (0: its mean)

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature {self.temperature} must be finite and not negative")


def variance_losses(out: LTSOutput, truth: Variance, label_smoothing: float) -> dict[str, Tensor]:
    """Cross-entropy of the units, and (with prosody) L1 of ln(F0) on voiced frames, voicing BCE and energy L1."""
    terms = {"unit_ce": F.cross_entropy(out.unit_logits.float().transpose(1, 2), truth.units,
                                        label_smoothing=label_smoothing)}
    if out.log_f0 is not None:
        voiced = truth.voiced
        terms["pitch_l1"] = ((out.log_f0.float() - truth.log_f0).abs() * voiced).sum() / voiced.sum().clamp(min=1.0)
        terms["voicing_bce"] = F.binary_cross_entropy_with_logits(out.voiced_logit.float(), voiced)
        terms["energy_l1"] = F.l1_loss(out.energy.float(), truth.energy)
    return terms


def infer(model: LTSModel, video: Tensor, spk: Tensor, temperature: float, seed: int) -> tuple[Tensor, LTSOutput]:
    """The output log-mel (B, n_mels, 4T) and the predictions, from video and speaker alone."""
    out = model.coarse(video, spk)
    generator = torch.Generator(device=video.device).manual_seed(seed)
    return model.refine(out.mel.float(), spk, temperature, generator), out


def predictions(cfg: LTSConfig, out: LTSOutput) -> list[dict[str, np.ndarray]]:
    """Per utterance, the predicted streams as the feature stages store them: units, F0 in Hz (0 unvoiced),
    voicing and energy."""
    used = out.used
    items: dict[str, Tensor] = {"units": used.units.to(torch.int16)}
    if used.log_f0 is not None:
        f0, energy = denormalise(cfg, used.log_f0.float(), used.voiced.float(), used.energy.float())
        items.update(f0=f0, voiced=used.voiced.bool(), energy=energy)
    arrays = {k: v.cpu().numpy() for k, v in items.items()}
    return [{k: v[i] for k, v in arrays.items()} for i in range(len(used.units))]


class LTSTask(Task):
    """The coarse model (all losses but the flow's) and the post-net (its likelihood), each with its own optimiser."""

    def __init__(self, ctx: Context, train: TrainConfig, cfg: LTSConfig, loss: LTSLoss, variant: LTSVariant):
        self.ctx, self.cfg, self.loss, self.variant, self.seed = ctx, cfg, loss, variant, train.seed
        self.model = LTSModel(cfg).to(ctx.device)
        self.nets: dict[str, nn.Module] = {"g": self.model.coarse}
        if self.model.postnet is not None:
            self.nets["postnet"] = self.model.postnet
        self.optimizers = {k: adamw(m.parameters(), train.lr, train.betas, train.weight_decay) for k, m in self.nets.items()}
        self.schedulers = {k: schedule(o, train) for k, o in self.optimizers.items()}
        self.logmel = LogMel(cfg.mel).to(ctx.device)

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        w = self.loss
        target, spk, truth = self.logmel(batch["audio"]), batch["spk"], targets_of(self.cfg, batch)
        with self.ctx.autocast():
            out = self.nets["g"](video_input(batch), spk, truth)
        terms = {"mel_l1": F.l1_loss(out.mel.float(), target), **variance_losses(out, truth, w.label_smoothing)}
        weights = {"mel_l1": w.mel_l1, "unit_ce": w.unit_ce, "pitch_l1": w.pitch_l1, "voicing_bce": w.voicing_bce,
                   "energy_l1": w.energy_l1}
        logs = {"g": self.optimize("g", sum(weights[k] * v for k, v in terms.items())),
                **{k: float(v.detach()) for k, v in terms.items()}}
        if "postnet" in self.nets:  # in float32: a flow's log-determinants are sums over every dimension
            coarse = out.mel.detach().float()
            nll = gaussian_nll(*self.nets["postnet"](target, postnet_condition(coarse, spk)), coarse)
            logs.update(postnet=self.optimize("postnet", w.flow_nll * nll), flow_nll=float(nll.detach()))
        return logs

    def validate(self, batches: Iterator[dict[str, Tensor]]) -> Validation:
        values: dict[str, list[float]] = {}
        example = None
        for b in batches:  # one whole utterance each
            target = self.logmel(b["audio"])
            mel, out = infer(self.model, video_input(b), b["spk"], self.variant.temperature, self.seed)
            scores = {"mel_l1": float(F.l1_loss(mel, target)), "coarse_mel_l1": float(F.l1_loss(out.mel, target))}
            if self.model.postnet is not None:
                coarse = out.mel.float()
                scores["flow_nll"] = float(gaussian_nll(*self.model.postnet(target, postnet_condition(coarse, b["spk"])),
                                                        coarse))
            truth = {k: b[k][0].cpu().numpy() for k in ("units", *PROSODY) if k in b}
            # imported here: the metrics module loads pystoi and scipy.signal (1.4 s), which every
            # process discovering the families (each training and synthesis stage) would pay
            from pipeline.evaluation.metrics import feature_metrics

            scores.update(feature_metrics(predictions(self.cfg, out)[0], truth))
            for k, v in scores.items():
                values.setdefault(k, []).append(v)
            if example is None:
                pred = mel[0].cpu().numpy()
                example = (pred, target[0].cpu().numpy(), griffin_lim(pred, self.cfg.mel), b["audio"][0].cpu().numpy())
        metrics = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in values.items()}
        return Validation(metrics, *example, sample_rate=self.cfg.mel.sample_rate) if example else Validation(metrics)

    def export(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return self.model.state_dict(), {"units_source": self.cfg.units_source, "temperature": self.variant.temperature}


class LTS(Family):
    name = "lts"
    config_class = LTSConfig
    loss_class = LTSLoss
    variant_class = LTSVariant
    kinds = ("lts",)
    reads = {"lts": ("video", "audio", "spk", "units", *PROSODY)}
    inputs = {"lts": ("video", "spk")}  # never the units or prosody: those are what it predicts
    vocoded = True
    presets = {
        "paper": {},
        "demo": {
            **DEMO_FRONT_END,
            "dim": 64, "heads": 2, "ff": 128, "kernel": 15, "video_layers": 2, "decoder_layers": 1,
            "predictor_filters": 64, "unit_embed_dim": 32,
            "flow_blocks": 4, "flow_hidden": 32, "flow_layers": 2, "flow_kernel": 3,
        },
    }

    def derived(self, audio: AudioConfig) -> dict[str, Any]:
        rates = frame_rates(audio)
        if "units" not in rates:
            raise ConfigError(f"audio.fps {audio.fps}: the 50 Hz units do not tile video frames, which LTS needs")
        return {**super().derived(audio), "units_per_frame": rates["units"]}

    def train_streams(self, kind: str, catalog: Catalog, variant: Any = None) -> tuple[Stream, ...]:
        self.check_kind(kind)
        keys = self.reads[kind] if variant is None or variant.prosody else self.reads[kind][: -len(PROSODY)]
        return catalog.get(*keys)

    def build(self, kind: str, cfg: LTSConfig) -> nn.Module:
        self.check_kind(kind)
        return LTSModel(cfg)

    def task(self, kind: str, ctx: Context, train: TrainConfig, cfg: LTSConfig, loss: LTSLoss, variant: Any = None,
             init: Init | None = None) -> Task:
        self.check_kind(kind)
        if init is not None:
            raise ValueError("an LTS model trains from scratch")
        if (cfg.prosody, cfg.postnet) != (variant.prosody, variant.postnet):
            raise ValueError(f"model sizes (prosody {cfg.prosody}, postnet {cfg.postnet}) do not fit the variant {variant}")
        return LTSTask(ctx, train, cfg, loss, variant)

    def load(self, card: ModelCard, state: Mapping[str, Tensor]) -> nn.Module:
        model = LTSModel(parse(LTSConfig, card.model, f"{card.name} card model"))
        model.load_state_dict(state)
        return model.eval()

    def speak(self, model: nn.Module, card: ModelCard, batch: Mapping[str, Tensor],
              vocoder: Vocoder | None) -> list[np.ndarray]:
        return self.speak_with_predictions(model, card, batch, vocoder)[0]

    def speak_with_predictions(self, model: nn.Module, card: ModelCard, batch: Mapping[str, Tensor],
                               vocoder: Vocoder | None) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
        device = next(model.parameters()).device
        with torch.no_grad():
            mel, out = infer(model, video_input(batch).to(device), batch["spk"].to(device), card.extra["temperature"],
                             card.train["seed"])
        return vocode(mel.cpu().numpy(), vocoder, model.cfg.mel), predictions(model.cfg, out)


register(LTS())
