"""`v2s results RUN [RUN ...]`: docs/RESULTS.md written from finished runs, nothing typed by hand.

A RUN is a checkout where the pipeline ran (`v2s timed -- dvc exp run ...`): its `params.yaml`
(the effective one, recipe applied), `reports/stage_times.json`, `.venv/.install_seconds`,
`data/eval/*.parquet` and `reports/metrics/*.json`. Per run: the commands, the wall time of every
stage, and every system of `report.systems` beside ground truth, the vocoder ceiling and the
video-blind baseline on the answer split (means with 95% bootstrap intervals), whether each system
beats that baseline (paired intervals), the report's questions, and the ASRs' floors.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.atomic import write_text
from pipeline.config import apply_recipe, load_params
from pipeline.evaluation.summary import bootstrap_ci, paired_difference, summarize, video_use
from pipeline.inference.card import load_card
from pipeline.layout import Layout
from pipeline.report.build import (
    BEATS_BASELINE_ON,
    HIGHER_IS_BETTER,
    LABELS,
    ReportInputs,
    System,
    beats_baseline,
    load_systems,
    not_a_finding,
    vocoder_cap,
)
from pipeline.report.config import Question

KEYS = ("pesq_wb", "stoi", "estoi", "wer_sphinx", "wer_ctc")
DIGITS = {"pesq_wb": 2, "stoi": 3, "estoi": 3, "wer_sphinx": 1, "wer_ctc": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="checkouts where the pipeline ran")
    parser.add_argument("--title", default="Real GRID, speaker s1, 2-core CPU")
    parser.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"))


def _cell(part: Any, key: str, value: float | None, seed: int) -> str:
    if value is None:
        return ""
    lo, hi = bootstrap_ci(part, key, seed)
    d = DIGITS[key]
    return f"{value:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _command(record: dict[str, Any]) -> str:
    return shlex.join(record["command"])


def timing_section(run: Path) -> list[str]:
    """The commands and every stage's wall time, from the run's own records."""
    times = json.loads((run / "reports" / "stage_times.json").read_text(encoding="utf-8"))
    install = run / ".venv" / ".install_seconds"
    lines = ["Commands, in a fresh clone:", "", "```", "make venv", f".venv/bin/v2s timed -- {_command(times)}", "```", ""]
    rows = [("install (`make venv`)", float(install.read_text()))] if install.is_file() else []
    rows += list(times["stages"].items())
    lines += ["| stage | wall time |", "|---|---|"]
    lines += [f"| {name} | {_minutes(s)} |" for name, s in rows]
    total = sum(s for _, s in rows)
    lines += [f"| **total** | **{_minutes(total)}** |", ""]
    if times["exit_code"]:
        lines += [f"**The run failed (exit code {times['exit_code']}).**", ""]
    return lines


def results_table(systems: dict[str, System], split: str, seed: int, capped: Sequence[str]) -> list[str]:
    """One row per system on `split`: means with 95% bootstrap intervals, and whether it beats the baseline."""
    head = ["system", "n", *[LABELS[k] for k in KEYS], "beats video-blind baseline (STOI and ESTOI, paired)",
            "ESTOI own video - other video (paired)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in systems.items():
        part = s.scores[s.scores["split"] == split]
        if part.empty:
            continue
        summary = summarize(s.scores, [split])[split]
        beats = "" if s.reference else ("yes" if beats_baseline(systems, name, split, seed) else "no")
        label = f"{name} (capped by its vocoder)" if name in capped else name
        cells = [f"*{label}*" if s.reference else label, str(summary["n_scored"]),
                 *[_cell(part, k, summary.get(k), seed) for k in KEYS], beats, _video_use(part, seed)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _video_use(part: pd.DataFrame, seed: int) -> str:
    """The video-use difference of one system (empty without that synthesis), `no` when not above zero."""
    use = video_use(part, "estoi", seed)
    if use is None:
        return ""
    diff, lo, hi, _ = use
    return f"{diff:+.3f} [{lo:+.3f}, {hi:+.3f}]" + ("" if lo > 0 else " no: ignores the video")


def questions_table(systems: dict[str, System], questions: Sequence[Question], split: str, seed: int) -> list[str]:
    """Each question's `b - a` with a paired 95% interval; a difference between two systems at the
    video-blind baseline is marked as no finding."""
    lines = ["| question | b - a | " + " | ".join(LABELS[k] for k in BEATS_BASELINE_ON + ("wer_ctc",)) + " | |",
             "|---|---|---|---|---|---|"]
    for q in questions:
        if q.a not in systems or q.b not in systems:
            continue
        cells = []
        for k in (*BEATS_BASELINE_ON, "wer_ctc"):
            a, b = systems[q.a].scores, systems[q.b].scores
            diff, lo, hi, _ = paired_difference(a[a["split"] == split], b[b["split"] == split], k, seed)
            d = DIGITS[k]
            sig = (lo > 0 or hi < 0) and ((lo > 0) == HIGHER_IS_BETTER[k])
            cells.append(f"{diff:+.{d}f} [{lo:+.{d}f}, {hi:+.{d}f}]" + (" better" if sig else ""))
        moot = "not a finding: neither beats the baseline" if not_a_finding(systems, q, split, seed) else ""
        lines.append(f"| {q.question} | {q.b} - {q.a} | " + " | ".join(cells) + f" | {moot} |")
    return lines + [""]


def run_section(run: Path) -> list[str]:
    """Everything about one run."""
    raw = load_params(run / "params.yaml")
    params = apply_recipe(raw)
    seed, split = int(params["seed"]), params["report"]["answer_split"]
    corpus = params["corpus"]["name"]
    grid = params["corpus"].get(corpus, {})
    systems = load_systems(ReportInputs(Layout(run), ()), params["report"]["systems"])
    cap = vocoder_cap(systems, split, float(params["report"]["vocoder_ceiling_min_estoi"]))
    questions = [Question(**q) for q in params["report"]["questions"]]
    asr_summary = load_card(Layout(run).asr).extra["summary"]
    lines = [f"## seed {seed}, recipe `{raw.get('recipe')}`", "",
             f"Corpus `{corpus}`, talkers {grid.get('speakers')}, protocol `{grid.get('protocol')}`; "
             f"scored on the `{split}` split.", ""]
    lines += timing_section(run)
    lines += [f"### Every system on `{split}`", "",
              "Means over utterances with 95% bootstrap intervals. PESQ: wide-band (ITU-T P.862.2), "
              "STOI/ESTOI: pystoi at 16 kHz (10 kHz internally). WER sphinx: pocketsphinx with a GRID grammar; "
              "WER ctc: the in-domain CTC ASR trained on this run's ground-truth train audio. Rows in italics are "
              "references: ground truth (the ASRs' floor), the vocoder ceiling (ground-truth mels through the "
              "vocoder) and the video-blind baseline (the training set's mean log-mel, vocoded).", ""]
    capped = cap.systems if cap is not None else ()
    lines += results_table(systems, split, seed, capped)
    if cap is not None:
        lines += [f"Warning: {cap.summary}.", ""]
    lines += [f"CTC ASR: best epoch {asr_summary['best_epoch']} of {asr_summary.get('epochs_run', '?')} run, "
              f"val WER {asr_summary['val_wer']:.1f}% (always answering the most frequent training sentence: "
              f"{asr_summary['val_chance_wer']:.1f}%).", ""]
    lines += [f"### The papers' questions on `{split}`", ""]
    lines += questions_table(systems, questions, split, seed)
    return lines


def write_results(runs: Sequence[Path], title: str, out: str | os.PathLike[str], tried: Path | None = None) -> Path:
    """RESULTS.md from `runs` (and the recipe measurements of `tried`, when the file exists)."""
    lines = [f"# {title}", "", "Written by `v2s results` from the runs' own outputs; do not edit by hand.", ""]
    for run in runs:
        lines += run_section(run)
    if tried is not None and tried.is_file():
        lines += tried_section(tried)
    write_text(out, "\n".join(lines).rstrip() + "\n")
    return Path(out)


def tried_section(path: Path) -> list[str]:
    """The recipe measurements on the validation split (benchmarks/grid_recipe.py's records)."""
    rows = [r for r in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            if "stoi" in r]  # V2A trials (an A2A trial only provides another one's decoder)
    lines = ["## How the recipe was chosen (validation split)", "",
             "Each row trains one V2A variant (`benchmarks/grid_recipe.py`) with the values listed over the "
             "run's parameters, and scores the validation split with Griffin-Lim (train time: on the threads "
             f"listed, other work running beside it). Records: `{path.as_posix()}`.", "",
             "| trial | variant | values | threads | train time | STOI | ESTOI | WER ctc % |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wer = f"{r['wer_ctc']:.1f}" if "wer_ctc" in r else ""
        lines.append(f"| {r['name']} | {r['variant']} | {' '.join(f'`{o}`' for o in r['overrides'])} | "
                     f"{r.get('threads') or 'all'} | {_minutes(r['train_s'])} | {r['stoi']:.3f} | {r['estoi']:.3f} | {wer} |")
    return lines + [""]


def run(args: argparse.Namespace) -> int:
    missing = [r for r in args.runs if not (r / "reports" / "stage_times.json").is_file()]
    if missing:
        print(f"v2s results: {missing[0]} has no reports/stage_times.json (run the pipeline with `v2s timed`)",
              file=sys.stderr)
        return 2
    out = write_results(args.runs, args.title, args.out, Path("docs") / "grid_recipe_trials.jsonl")
    print(f"v2s results: {len(args.runs)} run(s) -> {out}")
    return 0
