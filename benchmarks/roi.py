"""Mouth-ROI throughput on the GRID samples: decode alone, landmarks alone, crop alone, and the
whole stage (decode to written shard) with 1 and 2 workers.

"Per core" is frames per CPU-second of this process and its children (ffmpeg, pool workers),
so it holds on a busy machine; "wall" is frames per elapsed second.
Run: .venv/bin/python benchmarks/roi.py [--repeat N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from pipeline.config import Params, load_params
from pipeline.executor import Executor
from pipeline.manifest import MANIFEST_SCHEMA, write_manifest
from pipeline.video.crop import crop_mouth
from pipeline.video.decode import decode_clip
from pipeline.video.landmarks import get_detector
from pipeline.video.roi import roi_config, run

GRID = Path(__file__).resolve().parents[2] / "shared" / "grid_samples"


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(fn: Callable[[], int]) -> tuple[int, float, float]:
    """Frames done by `fn`, its CPU seconds (self and reaped children) and wall seconds."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    frames = fn()
    return frames, cpu_seconds() - cpu, time.perf_counter() - wall


def report(label: str, frames: int, cpu: float, wall: float) -> float:
    print(f"{label:<28} {frames / cpu:7.0f} frames/s per core {frames / wall:7.0f} frames/s wall")
    return frames / wall


def manifest_of(clips: list[Path], repeat: int, folder: Path) -> Path:
    rows = [
        {
            "utt_id": f"r{r}_{p.stem}", "corpus": "grid", "speaker": f"r{r}", "split": "train", "source": str(p),
            "transcript": p.stem, "words": None, "duration": 3.0, "fps": 25.0, "n_frames": 75, "width": 360,
            "height": 288, "audio_sr": 44100, "status": "ok", "reason": None,
        }
        for r in range(repeat) for p in clips
    ]
    path = folder / "manifest.parquet"
    write_manifest(pa.Table.from_pylist(sorted(rows, key=lambda x: x["utt_id"]), schema=MANIFEST_SCHEMA), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="passes over the GRID samples in the stage runs")
    args = parser.parse_args()
    clips = sorted(GRID.glob("*.mpg"))
    if not clips:
        sys.exit(f"benchmarks/roi.py: no GRID samples in {GRID}")
    cfg = roi_config(Params(load_params()))  # the shipped params.yaml's crop
    print(f"roi benchmark: {len(clips)} GRID clips (360x288, 25 fps), {cfg.backend}, {cfg.crop.size}px "
          f"{'gray' if cfg.crop.gray else 'rgb'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    detector = get_detector(cfg.backend)
    decoded = [decode_clip(p, cfg.fps, cfg.sample_rate, cfg.max_side, cfg.min_frames) for p in clips]
    detector.detect(decoded[0].frames[:5])  # model loading is not per-frame work

    points = []

    def decode() -> int:
        return sum(decode_clip(p, cfg.fps, cfg.sample_rate, cfg.max_side, cfg.min_frames).n_frames for p in clips)

    def landmarks() -> int:
        points[:] = [detector.detect(c.frames) for c in decoded]
        return sum(c.n_frames for c in decoded)

    def crop() -> int:
        return sum(len(crop_mouth(c.frames, p, cfg.crop).video) for c, p in zip(decoded, points))

    report("decode (video + audio)", *measure(decode))
    report("landmarks (face mesh)", *measure(landmarks))
    report("crop (fill, smooth, warp)", *measure(crop))

    _, start_cpu, start_wall = measure(lambda: sum(
        Executor(workers=2).imap(load_detector, [cfg.backend] * 2, desc="start-up")))
    print(f"{'pool start-up, 2 workers':<28} {start_cpu:7.1f} CPU-s {start_wall:21.1f} s wall (spawn, imports, model)")
    with tempfile.TemporaryDirectory() as scratch:
        manifest = manifest_of(clips, args.repeat, Path(scratch))
        walls, cpus = {}, {}
        for workers in (1, 2):
            def stage(workers: int = workers) -> int:
                return run(cfg, Executor(workers=workers), manifest, Path(scratch) / f"roi{workers}").frames

            frames, cpus[workers], walls[workers] = measure(stage)
            report(f"stage, {workers} worker{'s' * (workers > 1)}", frames, cpus[workers], walls[workers])
    print(f"scaling 1 -> 2 workers ({frames} frames per run): x{walls[1] / walls[2]:.2f} wall throughput; "
          f"2-worker CPU efficiency without start-up {frames / (cpus[2] - start_cpu):.0f} frames/s per core "
          f"(wall scaling needs an otherwise idle machine)")


def load_detector(backend: str) -> int:
    """What a pool worker does before its first clip: import everything and load the model."""
    get_detector(backend)
    return 0


if __name__ == "__main__":
    main()
