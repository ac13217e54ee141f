"""Speed and WER of the grammar ASR (pocketsphinx) at several search beams, on one run's test split.

    .venv/bin/python benchmarks/sphinx_beams.py RUN_DIR [SYSTEM] [--n N]

Scores the first N test utterances of RUN_DIR's ground truth and, when given, of SYSTEM's
synthesis (data/synth/SYSTEM/), with each beam setting in turn on the same clips, and prints
WER and seconds per clip of each, and each setting's time as a ratio of the first's.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pipeline.evaluation.asr_sphinx import GridSphinxASR, SphinxConfig
from pipeline.evaluation.metrics import error_counts, rate
from pipeline.shards import ShardReader, list_shards, unpack

SETTINGS = {  # name: (beam, wbeam, pbeam)
    "params (1e-80, 1e-60, 1e-80)": (1e-80, 1e-60, 1e-80),
    "middle (1e-64, 1e-44, 1e-64)": (1e-64, 1e-44, 1e-64),
    "pocketsphinx defaults (1e-48, 7e-29, 1e-48)": (1e-48, 7e-29, 1e-48),
}


def clips(root: Path, n: int) -> list[tuple[str, np.ndarray, str | None]]:
    out = []
    for shard in list_shards(root / "test"):
        for r in ShardReader(shard).iter_rows(["utt_id", "audio", *(["transcript"] if "roi" in root.parts else [])]):
            out.append((r["utt_id"], np.asarray(unpack(r, "audio"), np.float32), r.get("transcript")))
            if len(out) == n:
                return out
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("system", nargs="?")
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    truth = clips(args.run / "data" / "roi" / "shards", args.n)
    texts = {u: t for u, _, t in truth}
    sets = {"ground truth": truth}
    if args.system:
        sets[args.system] = clips(args.run / "data" / "synth" / args.system, args.n)
    asrs = {name: GridSphinxASR(SphinxConfig(True, *beams)) for name, beams in SETTINGS.items()}
    for label, items in sets.items():
        seconds = {name: 0.0 for name in asrs}
        counts: dict[str, list[dict[str, int]]] = {name: [] for name in asrs}
        for utt, audio, _ in items:
            for name, asr in asrs.items():  # interleaved: machine load falls on every setting alike
                start = time.perf_counter()
                hyp = asr.transcribe(audio, 16000)
                seconds[name] += time.perf_counter() - start
                counts[name].append(error_counts(texts[utt], hyp))
        first = next(iter(seconds.values()))
        for name in asrs:
            wer = rate([c["word_errors"] for c in counts[name]], [c["ref_words"] for c in counts[name]])
            print(f"{label}: {name}: WER {wer:.1f}% over {len(items)} clips, {seconds[name] / len(items):.2f} s/clip, "
                  f"time x{seconds[name] / first:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
