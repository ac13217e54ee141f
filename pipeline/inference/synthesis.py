"""Synthesis of every split: a trained model over the roi shards -> `data/synth/<system>/`.

Output shards mirror the roi shards' relative paths and row order (`utt_id`, packed float32
`audio` of exactly n_frames * samples_per_frame samples, `sample_rate`, and `pred_<stream>` for
each stream the model predicted on the way, e.g. LTS's units and prosody); in the shards of the
evaluated splits also `deranged_audio`, the same model given another utterance's video
(`deranged_from`: a seeded derangement within the shard, i.e. the same speaker and split, every other
input the utterance's own), which tells evaluation whether the model uses the video at all; `info.json` records
the model's and vocoder's sha256 and `card.json` is the model's card. The model's input
streams (its card's `inputs`) are read joined by shard path. One shard is one executor task,
so the same code runs in a local process pool or on a Dask cluster.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.atomic import atomic_dir
from pipeline.config import Params, parse
from pipeline.executor import Executor, ExecutorConfig, Failure
from pipeline.inference.card import ModelCard, save_card
from pipeline.inference.load import LoadedModel, load_model
from pipeline.inference.vocoder import Vocoder, VocoderName, load_vocoder, resolve_device, vocoder_dir
from pipeline.layout import Layout
from pipeline.shards import ShardReader, list_shards, pack, unpack, write_shard
from pipeline.streams import Catalog, Stream, read_vectors

SPLITS = ("train", "val", "test", "unseen")
# A per-utterance stream a row may lack (the speakers stage failed on it), and the card's stand-in.
FALLBACK = {"spk": "mean_speaker_embedding"}
# Column prefix of what a model predicted on the way to speech (`pred_units`, ...), named by the stream it predicts.
PREDICTED = "pred_"


@dataclass(frozen=True)
class ShardJob:
    """One roi shard (`rel` under the layout at `root`) to synthesise into `out_shard`."""

    model_dir: str
    vocoder_dir: str | None
    root: str
    rel: str
    out_shard: str
    batch_size: int
    device: str
    inputs: tuple[str, ...] | None = None  # speak with only these of the card's inputs (modality robustness)
    derange: bool = False  # also speak every utterance from another one's video (`deranged_audio`)


def derangement(n: int, key: str) -> list[int] | None:
    """A permutation of range(n) without fixed points, the same for every system: seeded by `key` (the
    shard's path) alone. One random cycle, so no utterance keeps its own video. None when n < 2."""
    if n < 2:
        return None
    order = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")).permutation(n)
    out = [0] * n
    for k in range(n):
        out[int(order[k])] = int(order[(k + 1) % n])
    return out


def ablated(card: ModelCard, inputs: Sequence[str] | None) -> ModelCard:
    """`card` as a model given only `inputs` of its input streams (None: all); what synthesis reads and records."""
    if inputs is None:
        return card
    if not inputs or set(inputs) - set(card.inputs):
        raise ValueError(f"inputs {list(inputs)} are not a subset of {card.name}'s inputs {list(card.inputs)}")
    return dataclasses.replace(card, inputs=tuple(inputs))


@lru_cache(maxsize=2)
def _models(model_dir: str, vocoder_dir: str | None, device: str) -> tuple[LoadedModel, Vocoder | None]:
    # Once per worker process: every shard job of a run uses the same model.
    loaded = load_model(model_dir, device)
    vocoder = load_vocoder(vocoder_dir, loaded.audio.mel, loaded.device) if loaded.family.vocoded else None
    return loaded, vocoder


def _batch(streams: Sequence[Stream], items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    batch = {}
    for s in streams:
        stacked = torch.from_numpy(np.stack([it[s.key] for it in items]))
        # a channels-first view of the stored frames, as synthesis has always handed them to the model
        batch[s.key] = stacked.permute(0, 1, 4, 2, 3) if s.image else stacked
    return batch


def synthesize_shard(job: ShardJob) -> tuple[int, list[str]]:
    """Synthesise every utterance of one roi shard into its output shard.

    Returns the row count and the utterances whose speaker conditioning is missing (the speakers
    stage failed on them): those are spoken with the model's mean training-speaker embedding,
    so every roi row has audio.
    """
    loaded, vocoder = _models(job.model_dir, job.vocoder_dir, job.device)
    card = ablated(loaded.card, job.inputs)
    streams = loaded.family.input_streams(card, Catalog(Layout(Path(job.root)), loaded.audio))
    sr = loaded.audio.sample_rate
    roi_root = Layout(Path(job.root)).roi / "shards"
    reader = ShardReader(roi_root / job.rel)
    per_utt = [s for s in streams if s.per_frame is None]
    timed: dict[Path, list[Stream]] = {roi_root: []}
    for s in streams:
        if s.per_frame is not None:
            timed.setdefault(s.root, []).append(s)
    vectors = {s.key: read_vectors(s, job.rel, reader.utt_ids) for s in per_utt}
    fallback = sorted({u for s in per_utt for u, v in zip(reader.utt_ids, vectors[s.key]) if v is None})
    # the roi shard first: it has every utterance's length
    sources = [reader.iter_rows(columns=["utt_id", "n_frames", *(s.column for s in timed[roi_root])])]
    sources += [ShardReader(root / job.rel).iter_rows(columns=["utt_id", *(s.column for s in group)])
                for root, group in timed.items() if root != roi_root]
    items: list[tuple[str, int, dict[str, np.ndarray]]] = []
    for index, parts in enumerate(zip(*sources)):
        utt, frames = parts[0]["utt_id"], int(parts[0]["n_frames"])
        item: dict[str, np.ndarray] = {}
        for (root, group), row in zip(timed.items(), parts):
            if row["utt_id"] != utt:
                raise ValueError(f"{root / job.rel} row {index} is {row['utt_id']}, expected {utt}")
            item.update({s.key: unpack(row, s.column) for s in group})
        for s in per_utt:
            v = vectors[s.key][index]
            item[s.key] = v if v is not None else np.asarray(loaded.card.extra[FALLBACK[s.key]], dtype=np.float32)
        items.append((utt, frames, item))
    rows = [{"utt_id": utt, **pack("audio", wav), "sample_rate": sr,
             **{k: v for key, a in sorted(pred.items()) for k, v in pack(PREDICTED + key, a).items()}}
            for (utt, _, _), (wav, pred) in zip(items, _speak(loaded, card, streams, vocoder, items, job.batch_size))]
    video = [s.key for s in streams if s.image]
    order = derangement(len(items), job.rel) if job.derange and video else None
    if order is not None:
        # utterance i with utterance order[i]'s video, cut or padded (last frame held) to its own length
        swapped = [(utt, frames, {**item, **{k: _frames(items[j][2][k], frames) for k in video}})
                   for (utt, frames, item), j in zip(items, order)]
        for row, j, (wav, _) in zip(rows, order, _speak(loaded, card, streams, vocoder, swapped, job.batch_size)):
            row.update(pack("deranged_audio", wav), deranged_from=items[j][0])
    write_shard(job.out_shard, rows)
    return len(rows), fallback


def _frames(x: np.ndarray, n: int) -> np.ndarray:
    """The first `n` frames of `x`, its last frame repeated where it is shorter."""
    return x[np.minimum(np.arange(n), len(x) - 1)]


def _speak(loaded: LoadedModel, card: ModelCard, streams: Sequence[Stream], vocoder: Vocoder | None,
           items: list[tuple[str, int, dict[str, np.ndarray]]], batch_size: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(audio, predicted streams) of each (utt_id, n_frames, inputs) item, in batches of consecutive equal-length
    items (GRID clips are all 75 frames)."""
    spf = loaded.samples_per_frame
    out: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    start = 0
    while start < len(items):
        end = start + 1
        while end < len(items) and end - start < batch_size and items[end][1] == items[start][1]:
            end += 1
        pending = items[start:end]
        wavs, predicted = loaded.family.speak_with_predictions(loaded.model, card, _batch(streams, [it for _, _, it in pending]),
                                                               vocoder)
        for (utt, frames, _), wav, pred in zip(pending, wavs, predicted, strict=True):
            if len(wav) != frames * spf:
                raise ValueError(f"{utt}: synthesised {len(wav)} samples for {frames} frames")
            out.append((wav, pred))
        start = end
    return out


def run_synthesis(model_dir: str | os.PathLike[str], vocoder_dir: str | os.PathLike[str] | None, layout: Layout,
                  out_dir: str | os.PathLike[str], executor: Executor, batch_size: int, device: str = "auto",
                  splits: Sequence[str] = SPLITS, inputs: Sequence[str] | None = None,
                  deranged: Sequence[str] = ()) -> dict[str, Any]:
    """Synthesise every roi shard of `splits` into `out_dir` (replaced whole, atomically); returns info.json.

    `inputs`: give the model only these of its input streams (e.g. an AV2A's video alone); the
    copied card lists them, so evaluation and the report see what the system was given.
    `deranged`: the splits whose shards also get `deranged_audio` (the evaluated ones)."""
    shards_root = layout.roi / "shards"
    rels = [p.relative_to(shards_root).as_posix() for s in splits for p in list_shards(shards_root / s)]
    if not rels:
        raise FileNotFoundError(f"no roi shards under {shards_root} for splits {list(splits)}")
    loaded, vocoder = _models(str(model_dir), str(vocoder_dir) if vocoder_dir else None, device)
    card = ablated(loaded.card, None if inputs is None else tuple(inputs))
    with atomic_dir(out_dir) as tmp:
        jobs = [ShardJob(str(model_dir), str(vocoder_dir) if vocoder_dir else None, str(layout.root), r,
                         str(Path(tmp) / r), batch_size, device, None if inputs is None else card.inputs,
                         r.split("/")[0] in deranged) for r in rels]
        counts: dict[str, int] = {s: 0 for s in splits}
        fallback: list[str] = []
        for rel, result in zip(rels, executor.imap(synthesize_shard, jobs, desc="synthesize")):
            if isinstance(result, Failure):
                raise RuntimeError(f"synthesis of {rel} failed: {result.message}\n{result.traceback}")
            counts[rel.split("/")[0]] += result[0]
            fallback += result[1]
        info = {
            "model": str(model_dir), "model_sha256": loaded.sha256, "kind": loaded.card.kind,
            "family": loaded.card.family, "variant": loaded.card.name, "checkpoint_step": loaded.card.train.get("steps"),
            "vocoder": vocoder.name if vocoder else None, "vocoder_sha256": vocoder.sha256 if vocoder else None,
            "sample_rate": loaded.audio.sample_rate, "utterances": counts, "shards": len(rels),
            "inputs": list(card.inputs), "deranged_splits": [s for s in splits if s in deranged],
            "mean_embedding_for": fallback,  # no conditioning from the speakers stage: spoken with the mean voice
        }  # no wall time: the same model and inputs give the same bytes, run after run
        (Path(tmp) / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_card(card, tmp)
    return info


@dataclass(frozen=True)
class SynthesizeSettings:
    """params.yaml `synthesize` (its `device` and `workers` change the speed only and are not tracked)."""

    vocoder: VocoderName  # log-mel families: the trained HiFi-GAN (models/vocoder) or Griffin-Lim
    batch_size: int  # equal-length utterances per forward pass
    device: str  # auto (CUDA when present) | cpu | cuda
    workers: int | None  # 1: one process; N: a pool; null: executor.workers


@dataclass(frozen=True)
class SynthesizeConfig:
    """Stage `synthesize@<system>`: which model speaks, and how the work runs."""

    kind: str
    system: str  # the output: data/synth/<system>/
    settings: SynthesizeSettings
    executor: ExecutorConfig
    model: str  # the model: models/<kind>/<model>/ (the system's own name, except for an input ablation)
    inputs: tuple[str, ...] | None  # only these of the model's inputs (None: all of them)
    splits: tuple[str, ...] = SPLITS
    deranged: tuple[str, ...] = ()  # splits also spoken from other utterances' video (`evaluate.splits`)


def synthesize_config(params: Params, kind: str, system: str, model: str | None = None,
                      inputs: Sequence[str] | None = None, splits: Sequence[str] = SPLITS) -> SynthesizeConfig:
    # read key by key: the stage tracks only some keys of `synthesize` (device and workers change the speed only)
    params.check_keys("synthesize", SynthesizeSettings)
    section = {f.name: params.raw(f"synthesize.{f.name}") for f in fields(SynthesizeSettings)}
    return SynthesizeConfig(kind, system, parse(SynthesizeSettings, section, "synthesize"),
                            params.parse("executor", ExecutorConfig), model or system,
                            None if inputs is None else tuple(inputs), tuple(splits),
                            tuple(params.raw("evaluate.splits")))


def synthesize_system(cfg: SynthesizeConfig, layout: Layout) -> dict[str, Any]:
    """`cfg.splits` through `models/<kind>/<model>` (given `inputs`) into `data/synth/<system>/`."""
    s = cfg.settings
    # On a GPU one process batches best; a pool would put one CUDA context per worker on it.
    on_gpu = resolve_device(s.device).type == "cuda"
    workers = 1 if on_gpu else s.workers or cfg.executor.workers or None
    executor = Executor(workers=workers, address=cfg.executor.address)
    return run_synthesis(layout.model(cfg.kind, cfg.model), vocoder_dir(s.vocoder, layout), layout, layout.synth(cfg.system),
                         executor, s.batch_size, s.device, cfg.splits, cfg.inputs, cfg.deranged)
