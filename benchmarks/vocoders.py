"""Which vocoder to speak mel-spectrogram models with: ground-truth log-mels of a run's `val` split
through each candidate, scored against the ground-truth audio (STOI, ESTOI; higher is better).

A vocoder whose ceiling is far from ground truth caps every mel model it speaks, so the default
(`synthesize.vocoder`) is chosen by this measurement, never on the test split. Candidates: the
run's trained HiFi-GAN (models/vocoder, when present) and Griffin-Lim. Run in a checkout where the
pipeline ran: `.venv/bin/python benchmarks/vocoders.py [RUN_DIR]`.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from pystoi import stoi

from pipeline.audio.mel import MelConfig, log_mel
from pipeline.config import Params, apply_recipe, load_params
from pipeline.evaluation.config import mel_config
from pipeline.inference.vocoder import load_vocoder
from pipeline.layout import Layout
from pipeline.shards import ShardReader, list_shards, unpack


def val_audio(layout: Layout) -> list[tuple[np.ndarray, int]]:
    """Ground-truth audio of every `val` utterance."""
    return [(np.array(unpack(r, "audio")), int(r["sample_rate"]))
            for shard in list_shards(layout.roi / "shards" / "val")
            for r in ShardReader(shard).iter_rows(["audio", "sample_rate"])]


def main(root: Path) -> int:
    layout = Layout(root)
    mel: MelConfig = mel_config(Params(apply_recipe(load_params(root / "params.yaml"))))
    clips = val_audio(layout)
    if not clips:
        print(f"no val utterances under {layout.roi}", file=sys.stderr)
        return 2
    candidates = [load_vocoder(None, mel)]
    if (layout.vocoder / "model.pt").is_file():
        candidates.insert(0, load_vocoder(layout.vocoder, mel, "cpu"))
    print(f"ground-truth log-mels of {len(clips)} val utterances through each vocoder:")
    for vocoder in candidates:
        start, s, e = time.perf_counter(), [], []
        for audio, sr in clips:
            wav = vocoder(log_mel(audio, mel))
            n = min(len(wav), len(audio))
            s.append(stoi(audio[:n], wav[:n], sr))
            e.append(stoi(audio[:n], wav[:n], sr, extended=True))
        rtf = (time.perf_counter() - start) / sum(len(a) / sr for a, sr in clips)
        print(f"  {vocoder.name:40s} STOI {np.mean(s):.3f}  ESTOI {np.mean(e):.3f}  (RTF {rtf:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")))
