"""Real-time factors of the feature stages' per-utterance work, next to the cost of reading the audio.

RTF = seconds of compute per second of audio (lower is faster), measured in this one run on
the real GRID clips in ../shared/grid_samples (or seeded synthetic audio where they are absent).
HuBERT runs randomly initialised models of the real Base and Large sizes (built from
HubertConfig, nothing downloaded), so the compute is the real one; units add the
nearest-centroid search over 200 clusters. Run: `.venv/bin/python benchmarks/features.py`.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pipeline.audio.io import read_media_audio
from pipeline.audio.mel import AudioConfig
from pipeline.config import Params, load_params
from pipeline.features.hubert import HubertExtractor, HubertSpec
from pipeline.features.kmeans import assign, fit_kmeans
from pipeline.features.mfcc import mfcc_features
from pipeline.features.prosody import ProsodyConfig, prosody
from pipeline.features.speakers import embed, voice_encoder
from pipeline.features.stage import index_roi, iter_utterances
from pipeline.features.units import UnitsConfig
from pipeline.shards import pack, write_shard

GRID = Path(__file__).resolve().parents[2] / "shared" / "grid_samples"
SR, FPS = 16000, 25
SIZES = {
    "base": dict(),  # HubertConfig's defaults are HuBERT Base: 12 layers, 768 wide, group-norm front end
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


def _clips() -> tuple[list[np.ndarray], list[Path]]:
    files = sorted(GRID.glob("*.mpg"))
    if files:
        return [read_media_audio(f, SR) for f in files], files
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    return [(0.1 * np.sin(2 * np.pi * (100 + 20 * i) * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
            for i in range(5)], []


def _write_roi(root: Path, audios: list[np.ndarray]) -> None:
    spf = SR // FPS
    rows = []
    for i, a in enumerate(audios):
        n = len(a) // spf
        rows.append({"utt_id": f"u{i}", "speaker": "s", "split": "train", "n_frames": n, "fps": float(FPS),
                     **pack("video", np.zeros((n, 96, 96, 1), np.uint8)), **pack("audio", a[: n * spf]), "sample_rate": SR})
    write_shard(root / "train" / "s-000.parquet", rows)


def _timed(fn: Callable[[], object], repeat: int = 3) -> float:
    fn()  # warm-up: lazy imports, JIT caches, allocator
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    audios, files = _clips()
    seconds = sum(len(a) for a in audios) / SR
    results: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        roi = Path(tmp) / "roi"
        _write_roi(roi, audios)
        keys = index_roi(roi)
        results.append(("read audio from roi shard", _timed(lambda: list(iter_utterances(roi, keys)))))
        if files:
            results.append(("decode audio from .mpg (ffmpeg)", _timed(lambda: [read_media_audio(f, SR) for f in files])))
        mfcc = [mfcc_features(a) for a in audios]
        params = Params(load_params())
        kmeans = replace(params.parse("units", UnitsConfig).kmeans, n_init=3)  # 3 restarts: a speed figure, not a fit
        centroids = fit_kmeans(np.concatenate(mfcc), kmeans, 200, seed=0).centroids
        results.append(("MFCC units (39-d, 200 clusters)", _timed(lambda: [assign(mfcc_features(a), centroids) for a in audios])))
        for name, dims in SIZES.items():
            from transformers import HubertConfig, HubertModel

            ckpt = Path(tmp) / f"hubert-{name}"
            torch.manual_seed(0)
            HubertModel(HubertConfig(**dims)).save_pretrained(ckpt)
            ext = HubertExtractor(HubertSpec(checkpoint=str(ckpt), layer=12, device="cpu"))
            rng = np.random.default_rng(0)
            cents = rng.standard_normal((200, ext.hidden_size)).astype(np.float32)
            results.append((f"HuBERT {name} layer 12 units ({ext.num_layers} layers, {ext.hidden_size}-d)",
                            _timed(lambda ext=ext, cents=cents: [assign(f, cents) for f in ext(audios)], repeat=1)))
            del ext
        voice_encoder()
        results.append(("speaker embedding (resemblyzer GE2E)", _timed(lambda: [embed(a, SR) for a in audios])))
        utts = list(iter_utterances(roi, keys))
        mel, cfg = params.parse("audio", AudioConfig).mel, params.parse("prosody", ProsodyConfig)
        results.append(("prosody (pYIN F0 + mel energy)", _timed(lambda: [prosody(u, mel, cfg) for u in utts])))
    print(f"features benchmark: {len(audios)} utterances, {seconds:.1f} s of audio "
          f"({'real GRID clips' if files else 'synthetic'}), torch threads {torch.get_num_threads()}, device cpu")
    for name, t in results:
        print(f"  {name:<52} {t:8.3f} s   RTF {t / seconds:.4f}   ({seconds / t:7.1f}x real time)")


if __name__ == "__main__":
    main()
