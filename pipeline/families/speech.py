"""What the A2A/V2A families of Kefalas et al. (arXiv 2306.15464) share; each family fills in its parts.

A family of this kind makes two models from the same temporal module and decoder: an A2A
audio autoencoder (its own audio encoder) pre-trained on audio alone, and a V2A model (the
lip-reading video encoder) whose decoder starts from scratch or from the A2A decoder, frozen or
fine-tuned, with per-source batch-norm statistics. A family supplies its audio encoder,
temporal module, decoder and `Objective` (losses, validation terms, waveform of its output).
"""
from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.audio.mel import LogMel
from pipeline.config import parse
from pipeline.families.base import Family, Init
from pipeline.inference.card import ModelCard
from pipeline.inference.model_dir import WEIGHTS, load_model_dir, sha256_file
from pipeline.inference.vocoder import Vocoder
from pipeline.layout import Layout
from pipeline.models.a2a import A2A
from pipeline.models.av2a import AV2A, Fusion, Modality, av2a_config, load_base
from pipeline.models.config import SpeechConfig
from pipeline.models.norm import freeze, multi_stat_norms, set_norm_stats
from pipeline.models.v2a import V2A, load_decoder
from pipeline.streams import Catalog, Stream
from pipeline.training.config import TrainConfig
from pipeline.training.procedures import AV2AVariant, audio_for_step, draw_modality
from pipeline.training.task import Context, Task, Validation, adamw, schedule

BASE_KIND = "v2a"  # an AV2A starts from a trained model of this kind (its base)

DecoderInit = Literal["scratch", "pretrained_frozen", "pretrained_finetuned"]


@dataclass(frozen=True)
class SpeechVariant:
    """A `v2a.variants` entry: the decoder's start (from `models/a2a/<family>`) and its statistics sets."""

    family: str
    decoder: DecoderInit
    # false: the decoder keeps normalising with the A2A's audio statistics (see params.yaml)
    separate_bn: bool


@dataclass(frozen=True)
class AV2AModelConfig:
    """An AV2A's sizes: its base V2A's (with a statistics set per modality combination) and the fusion."""

    base: Any  # the family's config class, as the base V2A's card records it
    fusion: Fusion


def video_input(batch: Mapping[str, Tensor]) -> Tensor:
    """Mouth crops as the video encoder takes them: uint8 (B, T, C, H, W) -> float in [0, 1]."""
    return batch["video"].float() / 255.0


def audio_input(batch: Mapping[str, Tensor]) -> Tensor:
    return batch["audio"].float()


class Objective:
    """A family's training objective for one generator: the step's losses and its validation terms."""

    @abstractmethod
    def step(self, audio: Tensor, out: Tensor, target: Tensor) -> dict[str, float]:
        """Losses of the generator output `out` for `audio` (log-mel `target`), optimised; the logged values."""

    @abstractmethod
    def mel(self, out: Tensor) -> Tensor:
        """The output as a log-mel (B, n_mels, F)."""

    def extra_metrics(self, out: Tensor, audio: Tensor) -> dict[str, float]:
        """Validation metrics besides the log-mel L1."""
        return {}

    @abstractmethod
    def waveform(self, out: Tensor, mel: Tensor) -> np.ndarray:
        """One utterance's output (and its log-mel) as a waveform to listen to in the training log."""


class SpeechTask(Task):
    """An A2A or V2A generator trained with its family's objective."""

    def __init__(self, ctx: Context, train: TrainConfig, family: SpeechFamily, cfg: SpeechConfig, loss: Any,
                 generator: nn.Module, norm_set: str, prepare: Callable[[Mapping[str, Tensor]], Tensor],
                 extra: dict[str, Any]):
        self.ctx, self.cfg, self.norm_set, self.prepare, self.extra = ctx, cfg, norm_set, prepare, extra
        set_norm_stats(generator, norm_set)
        self.nets = {"g": generator.to(ctx.device)}
        self.optimizers = {"g": adamw(generator.parameters(), train.lr, train.betas, train.weight_decay)}
        self.objective = family.objective(self, cfg, loss, train)
        self.schedulers = {k: schedule(o, train) for k, o in self.optimizers.items()}
        self.logmel = LogMel(cfg.mel).to(ctx.device)

    def generate(self, g: nn.Module, batch: Mapping[str, Tensor], training: bool) -> Tensor:
        """The generator's output for `batch` (in a training step when `training`)."""
        return g(self.prepare(batch), batch["spk"])

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        audio = batch["audio"]
        target = self.logmel(audio)
        with self.ctx.autocast():
            out = self.generate(self.nets["g"], batch, True)
        return self.objective.step(audio, out.float(), target)

    def validate(self, batches: Iterator[dict[str, Tensor]]) -> Validation:
        g = self.net("g")
        values: dict[str, list[float]] = {}
        example = None
        for b in batches:
            out = self.generate(g, b, False).float()
            target = self.logmel(b["audio"])
            pred = self.objective.mel(out)
            for k, v in {"mel_l1": float(torch.nn.functional.l1_loss(pred, target)),
                         **self.objective.extra_metrics(out, b["audio"])}.items():
                values.setdefault(k, []).append(v)
            if example is None:
                example = (pred[0].cpu().numpy(), target[0].cpu().numpy(), self.objective.waveform(out[0], pred[0]),
                           b["audio"][0].cpu().numpy())
        metrics = {k: float(np.mean(v)) for k, v in values.items()}
        return Validation(metrics, *example, sample_rate=self.cfg.mel.sample_rate) if example else Validation(metrics)

    def export(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return self.net("g").state_dict(), {"norm_stats": self.norm_set, **self.extra}


def av2a_modality(inputs: Sequence[str]) -> Modality:
    """The modality combination an AV2A speaks with when given the input streams `inputs`."""
    has_video, has_audio = "video" in inputs, "synth" in inputs
    if not (has_video or has_audio):
        raise ValueError(f"an AV2A needs video, synthesised audio or both; inputs {list(inputs)}")
    return "audio_video" if has_video and has_audio else "video" if has_video else "audio"


def _base_synthesis(catalog: Catalog, base: Mapping[str, Any]) -> Stream:
    """The synthesis of base model `base` (name, sha256), checked to come from exactly those weights."""
    stream = catalog.synth(base["name"])
    info = stream.root / "info.json"
    if not info.is_file():
        raise FileNotFoundError(f"no synthesis of base {base['name']!r} at {stream.root} (run synthesize@{base['name']})")
    made_by = json.loads(info.read_text(encoding="utf-8")).get("model_sha256")
    if made_by != base["sha256"]:
        raise ValueError(f"{stream.root} was synthesised by other weights than base {base['name']!r} "
                         f"(sha256 {str(made_by)[:12]}, expected {base['sha256'][:12]}): rerun synthesize@{base['name']}")
    return stream


class AV2ATask(SpeechTask):
    """An AV2A trained by its procedure: each step's modality combination (and so its statistics set) and
    audio input come from `pipeline.training.procedures`; validation, like test time, uses video plus synthesis."""

    def __init__(self, ctx: Context, train: TrainConfig, family: SpeechFamily, cfg: AV2AModelConfig, loss: Any,
                 model: AV2A, variant: AV2AVariant, extra: dict[str, Any]):
        super().__init__(ctx, train, family, cfg.base, loss, model, "audio_video", video_input, extra)
        self.variant, self.seed = variant, train.seed

    def generate(self, g: nn.Module, batch: Mapping[str, Tensor], training: bool) -> Tensor:
        modality = draw_modality(self.variant, self.seed, self.ctx.step) if training else "audio_video"
        audio = audio_for_step(self.variant, modality, batch) if training else batch["synth"]
        return g(video_input(batch), audio.float(), batch["spk"], modality)


class SpeechFamily(Family):
    """A Kefalas et al. family: A2A pre-training and V2A variants over shared parts."""

    kinds = ("a2a", "v2a", "av2a")
    # an AV2A reads the base V2A's synthesis as `synth` (train_streams names the base's stream)
    reads = {"a2a": ("audio", "spk"), "v2a": ("video", "audio", "spk"), "av2a": ("video", "audio", "spk", "synth")}
    inputs = {"a2a": ("audio", "spk"), "v2a": ("video", "spk"), "av2a": ("video", "synth", "spk")}
    variant_class = SpeechVariant

    @abstractmethod
    def audio_encoder(self, cfg: Any) -> nn.Module:
        """The A2A's encoder: waveform (B, S) -> features (B, T, D) at the video frame rate."""

    @abstractmethod
    def temporal(self, cfg: Any, in_dim: int) -> nn.Module:
        """The temporal module over frame features of width `in_dim`."""

    @abstractmethod
    def decoder(self, cfg: Any, in_dim: int) -> nn.Module:
        """The decoder (multi-statistics batch norms) reading the temporal module's features."""

    @abstractmethod
    def objective(self, task: SpeechTask, cfg: Any, loss: Any, train: TrainConfig) -> Objective:
        """The family's objective for `task`'s generator (it may add a discriminator to the task)."""

    @abstractmethod
    def waveforms(self, out: np.ndarray, card: ModelCard, vocoder: Vocoder | None) -> list[np.ndarray]:
        """The model's outputs (B, ...) as waveforms."""

    def build(self, kind: str, cfg: Any) -> nn.Module:
        self.check_kind(kind)
        builders = {"a2a": self._build_a2a, "v2a": self._build_v2a, "av2a": self._build_av2a}
        return builders[kind](cfg)

    def _build_a2a(self, cfg: Any) -> nn.Module:
        return A2A(cfg, self.audio_encoder(cfg), partial(self.temporal, cfg), partial(self.decoder, cfg))

    def _build_v2a(self, cfg: Any) -> V2A:
        return V2A(cfg, partial(self.temporal, cfg), partial(self.decoder, cfg))

    def _build_av2a(self, cfg: Any) -> nn.Module:
        base = av2a_config(cfg.base)
        return AV2A(self._build_v2a(base), self.audio_encoder(base), cfg.fusion)

    def initial_state(self, kind: str, variant: Any, layout: Layout) -> Init | None:
        starts = {"a2a": lambda: None, "v2a": lambda: self._v2a_init(variant, layout),
                  "av2a": lambda: self._av2a_init(variant, layout)}
        return starts[kind]()

    def _v2a_init(self, variant: Any, layout: Layout) -> Init | None:
        return None if variant is None or variant.decoder == "scratch" else self._a2a_init(layout)

    def _a2a_init(self, layout: Layout) -> Init:
        a2a_dir = layout.model("a2a", self.name)
        state, card = load_model_dir(a2a_dir)
        return Init(state, {"path": str(a2a_dir), "sha256": sha256_file(a2a_dir / WEIGHTS), "step": card.train.get("steps")})

    def base_model(self, variant: AV2AVariant, layout: Layout) -> tuple[Mapping[str, Tensor], ModelCard, dict[str, Any]]:
        """The base V2A of an AV2A `variant`: weights, card and identity (a clear error if it is not this family's V2A)."""
        base_dir = layout.model(BASE_KIND, variant.base)
        if not (base_dir / WEIGHTS).is_file():
            raise FileNotFoundError(f"AV2A base {variant.base!r}: no trained V2A at {base_dir} (run train_v2a@{variant.base})")
        state, card = load_model_dir(base_dir)
        if (card.kind, card.family, card.name) != (BASE_KIND, self.name, variant.base):
            raise ValueError(f"AV2A base {base_dir} holds {card.kind} {card.family}/{card.name}, "
                             f"not the {self.name} V2A {variant.base!r}")
        return state, card, {"name": variant.base, "path": str(base_dir), "sha256": sha256_file(base_dir / WEIGHTS)}

    def trained_model_config(self, kind: str, variant: Any, layout: Layout) -> Any:
        configs = {"av2a": self._av2a_model_config}  # kinds whose sizes come from a trained base
        return configs[kind](variant, layout) if kind in configs else None

    def _av2a_model_config(self, variant: AV2AVariant, layout: Layout) -> AV2AModelConfig:
        _, card, _ = self.base_model(variant, layout)
        return AV2AModelConfig(parse(self.config_class, card.model, f"{card.name} card model"), variant.fusion)

    def _av2a_init(self, variant: AV2AVariant, layout: Layout) -> Init:
        """The base V2A's weights with the A2A audio encoder and a fusion that starts as the identity on video."""
        state, card, base = self.base_model(variant, layout)
        a2a = self._a2a_init(layout)
        model = self.build("av2a", AV2AModelConfig(parse(self.config_class, card.model, f"{card.name} card model"),
                                                   variant.fusion))
        load_base(model, state, card.extra["norm_stats"], a2a.state)
        return Init(model.state_dict(), {"base": base, "a2a": dict(a2a.identity)})

    def train_streams(self, kind: str, catalog: Catalog, variant: Any = None) -> tuple[Stream, ...]:
        own = {"av2a": self._av2a_streams}  # kinds reading more than the catalog's own streams
        return own[kind](catalog, variant) if kind in own else super().train_streams(kind, catalog, variant)

    def _av2a_streams(self, catalog: Catalog, variant: AV2AVariant) -> tuple[Stream, ...]:
        _, _, base = self.base_model(variant, catalog.layout)
        return (*catalog.get("video", "audio", "spk"), _base_synthesis(catalog, base))

    def input_streams(self, card: ModelCard, catalog: Catalog) -> tuple[Stream, ...]:
        # `synth` is the base V2A's synthesis of the same utterances (never ground truth)
        return tuple(_base_synthesis(catalog, card.extra["base"]) if k == "synth" else catalog[k] for k in card.inputs)

    def task(self, kind: str, ctx: Context, train: TrainConfig, cfg: Any, loss: Any, variant: Any = None,
             init: Init | None = None) -> Task:
        self.check_kind(kind)
        tasks = {"a2a": self._a2a_task, "v2a": self._v2a_task, "av2a": self._av2a_task}
        return tasks[kind](ctx, train, cfg, loss, variant, init)

    def _a2a_task(self, ctx: Context, train: TrainConfig, cfg: Any, loss: Any, variant: None, init: None) -> Task:
        """Audio-only autoencoder: waveform -> audio encoder -> decoder, with the "audio" batch-norm statistics."""
        return SpeechTask(ctx, train, self, cfg, loss, self.build("a2a", cfg), "audio", audio_input, {})

    def _av2a_task(self, ctx: Context, train: TrainConfig, cfg: AV2AModelConfig, loss: Any, variant: AV2AVariant,
                   init: Init | None) -> Task:
        """Video + audio -> fused features -> the base's temporal module and decoder, by `variant.procedure`."""
        if init is None:
            raise ValueError("an AV2A starts from its base V2A: pass the Init of initial_state('av2a', ...)")
        model = self.build("av2a", cfg)
        model.load_state_dict(init.state)
        extra = {"base": dict(init.identity["base"]), "a2a": dict(init.identity["a2a"]),
                 "procedure": variant.procedure}
        return AV2ATask(ctx, train, self, cfg, loss, model, variant, extra)

    def _v2a_task(self, ctx: Context, train: TrainConfig, cfg: Any, loss: Any, variant: SpeechVariant,
                  init: Init | None) -> Task:
        """Mouth crops -> video encoder -> decoder (scratch, or a pre-trained A2A decoder, frozen or
        fine-tuned), with "video" batch-norm statistics when `separate_bn`, else shared "audio" ones.

        A frozen decoder keeps its weights; with separate statistics its video set is re-estimated
        from video features, with shared ones it normalises with the A2A's fixed audio statistics.
        """
        if (variant.decoder != "scratch") != (init is not None):
            raise ValueError(f"decoder={variant.decoder!r} needs {'an' if variant.decoder != 'scratch' else 'no'} "
                             "A2A state dict")
        model = self.build("v2a", cfg)
        if init is not None:
            load_decoder(model, init.state)  # the video statistics start as a copy of the audio ones
        if variant.decoder == "pretrained_frozen":
            freeze(model.decoder)
            if variant.separate_bn:
                # Frozen weights, but the video statistics adapt to video features: this is where
                # separate statistics differ from shared ones (which stay the A2A's audio statistics).
                # Fine-tuned decoders update whichever set is active, so there the two coincide.
                for norm in multi_stat_norms(model.decoder):
                    norm.frozen = False
        extra = {"decoder": variant.decoder, "separate_bn": variant.separate_bn}
        return SpeechTask(ctx, train, self, cfg, loss, model, "video" if variant.separate_bn else "audio",
                          video_input, extra)

    def load(self, card: ModelCard, state: Mapping[str, Tensor]) -> nn.Module:
        where = f"{card.name} card model"
        configs = {"av2a": lambda: AV2AModelConfig(parse(self.config_class, card.model["base"], where),
                                                   card.model["fusion"])}  # kinds whose card nests the base's sizes
        cfg = configs[card.kind]() if card.kind in configs else parse(self.config_class, card.model, where)
        model = self.build(card.kind, cfg)
        model.load_state_dict(state)
        set_norm_stats(model, card.extra["norm_stats"])
        return model.eval()

    def speak(self, model: nn.Module, card: ModelCard, batch: Mapping[str, Tensor],
              vocoder: Vocoder | None) -> list[np.ndarray]:
        device = next(model.parameters()).device
        forwards = {"a2a": _one_input(audio_input), "v2a": _one_input(video_input), "av2a": _av2a_forward}
        with torch.no_grad():
            out = forwards[card.kind](model, card, batch, device)
        return self.waveforms(out.float().cpu().numpy(), card, vocoder)


def _one_input(prepare: Callable[[Mapping[str, Tensor]], Tensor]) -> Callable[..., Tensor]:
    def forward(model: nn.Module, card: ModelCard, batch: Mapping[str, Tensor], device: torch.device) -> Tensor:
        return model(prepare(batch).to(device), batch["spk"].to(device))
    return forward


def _av2a_forward(model: nn.Module, card: ModelCard, batch: Mapping[str, Tensor], device: torch.device) -> Tensor:
    """Video plus the base V2A's synthesis; a card listing one of them scores that alone."""
    video = video_input(batch).to(device) if "video" in card.inputs else None
    audio = batch["synth"].float().to(device) if "synth" in card.inputs else None
    return model(video, audio, batch["spk"].to(device), av2a_modality(card.inputs))
