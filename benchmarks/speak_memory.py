"""Peak memory and time of `v2s speak` against video length: a GRID sample looped to each length.

Each run is a fresh `v2s speak` process. Two peaks: its own (VmHWM, polled while it runs) and
`wait4`'s `ru_maxrss`, the largest of it and the children it waited for (ffmpeg's; a child forked
from a large process counts the pages it shares with it until it execs, so this one reads higher). The target: peak memory that does not
grow with the video's length, under 1 GiB at one and ten minutes.
Run: .venv/bin/python benchmarks/speak_memory.py MODEL_DIR [--minutes 1 10] [--vocoder DIR|griffin_lim]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.video.probe import ffmpeg_exe

GRID = Path(__file__).resolve().parents[2] / "shared" / "grid_samples"


def looped(clip: Path, minutes: float, out: Path) -> Path:
    """`clip` repeated to about `minutes`, re-encoded as one MPEG-1 stream (concatenated copies are not one)."""
    loops = max(1, round(minutes * 60 / 3.0)) - 1  # GRID clips are 3 s
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(clip), "-c:v", "mpeg1video",
                    "-q:v", "2", "-c:a", "mp2", "-b:a", "96k", str(out)], check=True)
    return out


def high_water_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--vocoder", help="passed to v2s speak")
    args = parser.parse_args()
    clip = GRID / "bbaf2n.mpg"
    if not clip.is_file():
        print(f"speak_memory: no GRID sample at {clip}", file=sys.stderr)
        return 1
    v2s = Path(sys.executable).with_name("v2s")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            video = looped(clip, minutes, Path(tmp) / f"loop{minutes:g}.mpg")
            command = [str(v2s), "speak", str(video), "--model", str(args.model), "-o", str(Path(tmp) / "out.wav")]
            if args.vocoder:
                command += ["--vocoder", args.vocoder]
            with open(Path(tmp) / "out.txt", "w+") as out, open(Path(tmp) / "err.txt", "w+") as err:
                start = time.perf_counter()
                proc = subprocess.Popen(command, stdout=out, stderr=err)
                own_kb = 0
                while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    own_kb = max(own_kb, high_water_kb(proc.pid))
                    time.sleep(0.1)
                _, status, usage = os.wait4(proc.pid, 0)
                seconds = time.perf_counter() - start
                out.seek(0), err.seek(0)
                stdout, stderr = out.read(), err.read()
            if os.waitstatus_to_exitcode(status):
                print(f"speak_memory: v2s speak failed on {minutes:g} min: {stderr.strip().splitlines()[-1]}", file=sys.stderr)
                return 1
            peak_kb = usage.ru_maxrss
            summary = json.loads(stdout.strip().splitlines()[-1])
            print(f"{minutes:g} min video ({summary['frames']} frames): peak {own_kb / 2**20:.2f} GiB "
                  f"({peak_kb / 2**20:.2f} GiB with children), "
                  f"{seconds:.0f} s wall, {summary['frames'] / seconds:.0f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
