"""`v2s timed -- dvc exp run ...`: run a DVC command, pass its output through, and record the wall
time of every stage it runs (from DVC's "Running stage 'NAME':" lines) to a JSON file, so that a
recorded run's stage times come from the run itself (docs/RESULTS.md prints them)."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from pipeline.atomic import write_text

STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("reports/stage_times.json"),
                        help="where the stage times go (default: reports/stage_times.json)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")


def stage_times(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds from each "Running stage" line to the next one (the last: to `end`), by stage name."""
    starts = [(t, m.group(1)) for t, line in lines if (m := STAGE_LINE.search(line))]
    return {name: round(nxt - t, 1) for (t, name), (nxt, _) in zip(starts, [*starts[1:], (end, "")])}


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("v2s timed: name the command to run after --", file=sys.stderr)
        return 2
    start = time.time()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append((time.time(), line))
    end = time.time()
    record = {"command": command, "exit_code": proc.returncode, "total_s": round(end - start, 1),
              "stages": stage_times(lines, end)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"v2s timed: {len(record['stages'])} stages in {record['total_s']:.0f} s -> {args.out}", file=sys.stderr)
    return proc.returncode
