"""The training stages' work, for any model family: stage config + layout -> an exported model directory.

A stage entry (`stages/<name>.py`) parses its params into one of the frozen configs below and
calls the matching function. Every run uses the same loop, the same seed (`seed:`), the same
`train:` settings and, for V2A, the same steps per family, so the scratch and pre-trained arms
differ only in how the decoder starts. Each exported directory holds `model.pt` and a model
card (pipeline.inference.card) recording the crop, audio, training configuration, input
hashes and the last validation.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio.mel import AudioConfig
from pipeline.config import ConfigError, Params, fingerprint, parse, to_plain
from pipeline.families import Family, family_of_kind, get_family
from pipeline.features.prosody import train_statistics
from pipeline.features.units import units_info
from pipeline.inference.card import ModelCard
from pipeline.inference.model_dir import inputs_digest, save_model_dir
from pipeline.layout import Layout
from pipeline.models.config import HiFiGANConfig, hifigan_config
from pipeline.streams import AudioDirSource, Catalog, ConcatSource, Stream, StreamSource
from pipeline.training.config import TrainConfig, train_config
from pipeline.training.loop import Trainer, WindowFeed
from pipeline.training.procedures import AV2AVariant
from pipeline.training.task import Context, Task
from pipeline.training.vocoder import VocoderLoss, VocoderTask
from pipeline.training.windows import WindowDataset
from pipeline.video.roi import RoiConfig, roi_config

CONDITIONING = "speakers stage `conditioning`: GE2E mean of other utterances of the speaker, never the target's own audio"
OWN_CORPUS = "own"  # pretrain.corpora entry: the corpus's own TRAIN audio


# -- configuration (called by the stage entries' `configure`) -------------------------------------
def _typed(params: Params, dotted: str, tp: type) -> Any:
    value = params.raw(dotted)
    if not isinstance(value, tp) or isinstance(value, bool) and tp is not bool:
        raise ConfigError(f"{dotted}: expected {tp.__name__}, got {value!r}")
    return value


def audio_config(params: Params) -> AudioConfig:
    return params.parse("audio", AudioConfig)


def family_model(params: Params, family: Family, audio: AudioConfig, **data: Any) -> Any:
    """`model.profile`'s preset of `family` with `model.overrides.<family>` applied (and `data`, fields no override sets)."""
    overrides = params.raw(f"model.overrides.{family.name}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"model.overrides.{family.name}: expected a mapping, got {overrides!r}")
    return family.model_config(_typed(params, "model.profile", str), audio, overrides, **data)


@dataclass(frozen=True)
class PretrainFamily:
    """One `pretrain.families` entry."""

    steps: int
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # overrides of `train:`


@dataclass(frozen=True)
class PretrainConfig:
    """Stage `pretrain_a2a@<family>`."""

    family: str
    audio: AudioConfig
    model: Any  # the family's config class
    loss: Any  # the family's loss class
    train: TrainConfig
    corpora: tuple[str, ...]  # `own` and/or local audio directories
    references: int  # local directories: other files averaged into each file's conditioning


def pretrain_config(params: Params, family_name: str) -> PretrainConfig:
    entry = params.parse(f"pretrain.families.{family_name}", PretrainFamily)
    family = get_family(family_name)
    family.check_kind("a2a")
    audio = audio_config(params)
    corpora = params.raw("pretrain.corpora")
    if not isinstance(corpora, list) or not corpora or not all(isinstance(c, str) for c in corpora):
        raise ConfigError(f"pretrain.corpora: expected a list of `own` or directories, got {corpora!r}")
    return PretrainConfig(family_name, audio, family_model(params, family, audio),
                          params.parse(f"loss.{family_name}", family.loss_class),
                          train_config(params, entry.steps, f"pretrain.families.{family_name}.train"),
                          tuple(corpora), _typed(params, "pretrain.references", int))


@dataclass(frozen=True)
class V2AConfig:
    """Stage `train_v2a@<variant>`, or `train_lts@<variant>`: a model trained from scratch on video."""

    name: str
    variant: Any  # the family's variant class; `variant.family` names the family
    audio: AudioConfig
    roi: RoiConfig
    model: Any
    loss: Any
    train: TrainConfig


def v2a_config(params: Params, name: str) -> V2AConfig:
    spec = params.raw(f"v2a.variants.{name}")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("family"), str):
        raise ConfigError(f"v2a.variants.{name}: expected a mapping with a `family`, got {spec!r}")
    family = get_family(spec["family"])
    family.check_kind("v2a")
    variant = parse(family.variant_class, spec, f"v2a.variants.{name}")
    audio = audio_config(params)
    return V2AConfig(name, variant, audio, roi_config(params), family_model(params, family, audio),
                     params.parse(f"loss.{family.name}", family.loss_class),
                     train_config(params, _typed(params, f"v2a.steps.{family.name}", int), "v2a.train"))


LTS = "lts"  # the kind of the unit-based lip-to-speech models (Kim et al., arXiv 2308.15256)


def lts_config(params: Params, name: str) -> V2AConfig:
    """`lts.variants.<name>`: which parts its model has (from `model.profile` and `model.overrides.<family>`)."""
    family = family_of_kind(LTS)
    variant = params.parse(f"lts.variants.{name}", family.variant_class)
    audio = audio_config(params)
    model = family_model(params, family, audio, prosody=variant.prosody, postnet=variant.postnet)
    return V2AConfig(name, variant, audio, roi_config(params), model, params.parse(f"loss.{family.name}", family.loss_class),
                     train_config(params, _typed(params, "lts.steps", int), "lts.train"))


@dataclass(frozen=True)
class AV2AConfig:
    """Stage `train_av2a@<variant>`; the model's sizes are its base V2A's (read from the base's card at training)."""

    name: str
    family: str
    variant: AV2AVariant
    audio: AudioConfig
    roi: RoiConfig
    loss: Any
    train: TrainConfig


def av2a_config(params: Params, name: str) -> AV2AConfig:
    variant = params.parse(f"av2a.variants.{name}", AV2AVariant)
    spec = params.raw(f"v2a.variants.{variant.base}", None)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("family"), str):
        raise ConfigError(f"av2a.variants.{name}.base: {variant.base!r} is not a v2a.variants entry")
    if spec["family"] != variant.family:
        raise ConfigError(f"av2a.variants.{name}.family: {variant.family!r}, but its base {variant.base!r} "
                          f"is a {spec['family']} V2A")
    family = get_family(variant.family)
    family.check_kind("av2a")
    parse(family.variant_class, spec, f"v2a.variants.{variant.base}")  # the base entry, strictly (a typo there stops us too)
    return AV2AConfig(name, family.name, variant, audio_config(params), roi_config(params),
                      params.parse(f"loss.{family.name}", family.loss_class),
                      train_config(params, _typed(params, f"av2a.steps.{family.name}", int), "av2a.train"))


@dataclass(frozen=True)
class VocoderConfig:
    """Stage `vocoder`."""

    audio: AudioConfig
    model: HiFiGANConfig
    loss: VocoderLoss
    train: TrainConfig


@dataclass(frozen=True)
class VocoderSection:
    """params.yaml `vocoder`."""

    steps: int
    train: Mapping[str, Any]  # overrides of `train:`


def vocoder_config(params: Params) -> VocoderConfig:
    audio = audio_config(params)
    section = params.parse("vocoder", VocoderSection)
    overrides = params.raw("model.overrides.hifigan")
    return VocoderConfig(audio, hifigan_config(_typed(params, "model.profile", str), audio.mel, overrides),
                         params.parse("loss.vocoder", VocoderLoss), train_config(params, section.steps, "vocoder.train"))


# -- data --------------------------------------------------------------------------------------
def data_files(layout: Layout, streams: Sequence[Stream], splits: Sequence[str]) -> list[Path]:
    """The shards of `splits` that `streams` read."""
    roi = layout.roi / "shards"
    rels = [p.relative_to(roi) for s in splits for p in (roi / s).rglob("*.parquet")]
    roots = [roi] + sorted({s.root for s in streams} - {roi})
    return [root / rel for root in roots for rel in rels]


def _source(layout: Layout, streams: Sequence[Stream], splits: list[str], min_frames: int = 1,
            cache_mb: int = 0) -> StreamSource:
    source = StreamSource(layout.roi / "shards", streams, splits, min_frames, cache_mb << 20)
    if any(source.skipped.values()):
        left = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in source.skipped.items() if n)
        print(f"{'+'.join(splits)}: {len(source)} utterances used, left out: {left}", flush=True)
    return source


def _frame(source: StreamSource, layout: Layout) -> dict[str, int]:
    if not len(source):
        raise ValueError(f"no training utterances under {layout.roi / 'shards' / 'train'}")
    _, h, w, c = source.read(0, ["video"])["video"].shape
    return {"height": int(h), "width": int(w), "channels": int(c)}


def _mean_embedding(source: Any) -> list[float]:
    mean = source.conditioning.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32).tolist()


def _feed(train: TrainConfig, train_data: WindowDataset, val_data: WindowDataset) -> WindowFeed:
    return WindowFeed(train_data, val_data, train.batch_size, train.num_workers, train.val_utterances, train.seed)


# -- training ----------------------------------------------------------------------------------
def _fit_and_export(stage: str, name: str, train: TrainConfig, factory: Callable[[Context], Task], feed: WindowFeed,
                    fp: str, layout: Layout, out_dir: Path, card: Callable[[dict[str, Any], dict[str, Any]], ModelCard]) -> Path:
    """Train (resuming a run of the same fingerprint) and write the model directory with its card."""
    trainer = Trainer(factory, train.loop(), feed, layout.checkpoints(stage, name), layout.train_reports(stage, name),
                      fp, name=f"{stage} {name}")
    task = trainer.fit()
    if trainer.dist.is_main:
        state, extra = task.export()
        validation = trainer.last_validation.metrics if trainer.last_validation else {}
        save_model_dir(out_dir, state, card({**extra, "stage": stage, "fingerprint": fp}, validation))
        print(f"{stage} {name}: wrote {out_dir}", flush=True)
    return out_dir


def pretrain_a2a(cfg: PretrainConfig, layout: Layout) -> Path:
    """Audio-only A2A pre-training of `cfg.family` on `cfg.corpora` (own TRAIN audio, local dirs)."""
    family = get_family(cfg.family)
    catalog = Catalog(layout, cfg.audio)
    streams = family.train_streams("a2a", catalog)
    keys = [s.key for s in streams]
    window = cfg.train.window_frames
    sources: list[Any] = []
    described: list[dict[str, Any]] = []
    for corpus in cfg.corpora:
        if corpus == OWN_CORPUS:
            sources.append(_source(layout, streams, ["train"], window, cfg.train.cache_mb))
            described.append({corpus: inputs_digest(data_files(layout, streams, ["train"]))})
        else:
            src = AudioDirSource(corpus, cfg.audio.sample_rate, catalog.samples_per_frame, window,
                                 layout.checkpoints("pretrain_a2a", "speaker-cache"), cfg.references, cfg.train.seed)
            sources.append(src)
            described.append({corpus: [len(src), sum(src.frames)]})  # hashing every file would be slow
    train = WindowDataset(ConcatSource(sources), window, keys)
    val = WindowDataset(_source(layout, streams, ["val"]), None, keys)
    data = {"corpora": described, "val": inputs_digest(data_files(layout, streams, ["val"]))}
    fp = fingerprint(stage="pretrain_a2a", family=cfg.family, train=cfg.train, model=cfg.model, loss=cfg.loss, data=data)

    def card(extra: dict[str, Any], validation: dict[str, Any]) -> ModelCard:
        return ModelCard("a2a", family.name, family.name, family.inputs["a2a"], {"audio": to_plain(cfg.audio)},
                         to_plain(cfg.train), data, validation,
                         {**extra, "corpora": list(cfg.corpora), "conditioning": CONDITIONING,
                          "mean_speaker_embedding": _mean_embedding(train.source)}, to_plain(cfg.model))

    return _fit_and_export("pretrain_a2a", family.name, cfg.train,
                           lambda ctx: family.task("a2a", ctx, cfg.train, cfg.model, cfg.loss),
                           _feed(cfg.train, train, val), fp, layout, layout.model("a2a", family.name), card)


def train_v2a(cfg: V2AConfig, layout: Layout) -> Path:
    """One V2A variant: its family's model and objective, its decoder's start, its statistics sets."""
    return _train_on_video("v2a", cfg, get_family(cfg.variant.family), layout,
                           lambda frame: dataclasses.replace(cfg.model, in_channels=frame["channels"]))


def train_av2a(cfg: AV2AConfig, layout: Layout) -> Path:
    """One AV2A variant: its base V2A plus the family's A2A audio encoder, trained on video and the base's synthesis."""
    family = get_family(cfg.family)
    return _train_on_video("av2a", cfg, family, layout,
                           lambda _frame: family.trained_model_config("av2a", cfg.variant, layout))


def train_lts(cfg: V2AConfig, layout: Layout) -> Path:
    """One LTS variant: sizes from params, the crops' channels, the units' source and count, and the train
    split's prosody statistics (which its predictors are normalised by) from the feature stages."""
    units = units_info(layout.features("units"))

    def model_for(frame: dict[str, Any]) -> Any:
        return dataclasses.replace(cfg.model, in_channels=frame["channels"], units_source=units["source"],
                                   n_units=units["clusters"], **train_statistics(layout.features("prosody")))

    return _train_on_video(LTS, cfg, family_of_kind(LTS), layout, model_for)


def _train_on_video(kind: str, cfg: V2AConfig | AV2AConfig, family: Any, layout: Layout,
                    model_for: Callable[[dict[str, Any]], Any]) -> Path:
    """The shared run of a video-input model `kind`: streams, windows, start, fingerprint, card, export."""
    stage = f"train_{kind}"
    streams = family.train_streams(kind, Catalog(layout, cfg.audio), cfg.variant)
    keys = [s.key for s in streams]
    source = _source(layout, streams, ["train"], cfg.train.window_frames, cfg.train.cache_mb)
    frame = _frame(source, layout)
    model = model_for(frame)
    train = WindowDataset(source, cfg.train.window_frames, keys)
    val = WindowDataset(_source(layout, streams, ["val"]), None, keys)
    init = family.initial_state(kind, cfg.variant, layout)
    data = {"train+val": inputs_digest(data_files(layout, streams, ["train", "val"])),
            "init": init.identity if init else None}
    fp = fingerprint(stage=stage, variant=cfg.variant, train=cfg.train, model=model, loss=cfg.loss, data=data)

    def card(extra: dict[str, Any], validation: dict[str, Any]) -> ModelCard:
        crop = {"roi": to_plain(cfg.roi), "audio": to_plain(cfg.audio), "frame": frame}
        return ModelCard(kind, family.name, cfg.name, family.inputs[kind], crop, to_plain(cfg.train), data,
                         validation, {**extra, "variant": to_plain(cfg.variant), "conditioning": CONDITIONING,
                                      "mean_speaker_embedding": _mean_embedding(source)}, to_plain(model))

    return _fit_and_export(stage, cfg.name, cfg.train,
                           lambda ctx: family.task(kind, ctx, cfg.train, model, cfg.loss, cfg.variant, init),
                           _feed(cfg.train, train, val), fp, layout, layout.model(kind, cfg.name), card)


def train_vocoder(cfg: VocoderConfig, layout: Layout) -> Path:
    """HiFi-GAN on the corpus's TRAIN audio (ground-truth log-mels)."""
    catalog = Catalog(layout, cfg.audio)
    # the conditioning is not used, but an utterance the speakers stage failed on stays out, as for every model
    streams = catalog.get("audio", "spk")
    train = WindowDataset(_source(layout, streams, ["train"], cfg.train.window_frames, cfg.train.cache_mb),
                          cfg.train.window_frames, ["audio"])
    val = WindowDataset(_source(layout, streams, ["val"]), None, ["audio"])
    data = {"train+val": inputs_digest(data_files(layout, streams, ["train", "val"]))}
    fp = fingerprint(stage="vocoder", train=cfg.train, model=cfg.model, audio=cfg.audio, loss=cfg.loss, data=data)

    def card(extra: dict[str, Any], validation: dict[str, Any]) -> ModelCard:
        return ModelCard("vocoder", None, "hifigan", ("mel",), {"audio": to_plain(cfg.audio)}, to_plain(cfg.train),
                         data, validation, extra, to_plain(cfg.model))

    return _fit_and_export("vocoder", "hifigan", cfg.train,
                           lambda ctx: VocoderTask(ctx, cfg.train, cfg.model, cfg.audio.mel, cfg.loss),
                           _feed(cfg.train, train, val), fp, layout, layout.vocoder, card)
