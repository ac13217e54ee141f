"""`v2s evaluate --hyp-dir DIR --name NAME`: another system's audio scored like one of the pipeline's.

DIR holds one WAV per utterance, named by its id (`<utt_id>.wav`: another paper's released
samples, or ours). They are scored against this checkout's ground truth (`data/roi/`) with the
scorer, input checks and ASRs of the `evaluate` stages and the settings of its `params.yaml`, and
written where a pipeline system's evaluation goes (`data/eval/NAME.parquet`,
`reports/metrics/NAME.json` and its details file, `reports/plots/NAME/`): listed in
`report.systems`, NAME is a row of the report like any other.

Nothing is dropped silently: an utterance without a file is scored as `missing`, a file at
another rate or length is refused by the input checks like any synthesis, and files that match
no utterance of the splits or cannot be read are listed per file, in the details file and on
the terminal.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import soundfile as sf
import yaml

from pipeline.audio.io import to_mono
from pipeline.config import PARAMS_FILE, ConfigError, Params, load_params
from pipeline.evaluation.config import EvaluationConfig, evaluation_config
from pipeline.evaluation.evaluate import REFERENCES, roi_shards
from pipeline.layout import Layout
from pipeline.shards import ShardReader, pack, write_shard

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SUFFIX = ".wav"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hyp-dir", type=Path, required=True, help="folder of <utt_id>.wav files to score")
    parser.add_argument("--name", required=True,
                        help="the system's name in data/eval/, reports/metrics/ and the report (report.systems)")
    parser.add_argument("--split", action="append", dest="splits",
                        help="a split to score (repeat for more; default: evaluate.splits)")


def pipeline_systems(params: Params, dvc_yaml: Path) -> set[str]:
    """The systems whose evaluation the pipeline's own stages write: the reference rows and every key of the
    `foreach` of a stage running `stages.evaluate*` (a name `v2s evaluate` must not overwrite)."""
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {}) if dvc_yaml.is_file() else {}
    names = set(REFERENCES)
    for stage in stages.values():
        foreach = str(stage.get("foreach", "")) if isinstance(stage, dict) else ""
        cmd = str(stage.get("do", {}).get("cmd", "")) if foreach else ""
        if "stages.evaluate" in cmd and foreach.startswith("${") and foreach.endswith("}"):
            names |= set(params.raw(foreach[2:-1], {}) or {})
    return names


def import_wavs(hyp_dir: Path, layout: Layout, shards: dict[str, list[Path]], out_dir: Path) -> dict[str, Any]:
    """Write the readable WAVs of `hyp_dir` as synthesis shards under `out_dir` (the paths and rows of the roi
    `shards` of each split, audio as read, at its own rate); returns what was matched, missing, unreadable and
    unknown."""
    files = {p.name[: -len(SUFFIX)]: p for p in sorted(hyp_dir.iterdir()) if p.name.lower().endswith(SUFFIX)}
    known: set[str] = set()
    missing: list[str] = []
    unreadable: dict[str, str] = {}
    shards_root = layout.roi / "shards"
    for paths in shards.values():
        for shard in paths:
            rows = []
            for utt in ShardReader(shard).utt_ids:
                known.add(utt)
                path = files.get(utt)
                if path is None:
                    missing.append(utt)
                    continue
                try:
                    audio, sr = sf.read(os.fspath(path), dtype="float32", always_2d=False)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    unreadable[path.name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    continue
                rows.append({"utt_id": utt, **pack("audio", to_mono(audio)), "sample_rate": int(sr)})
            write_shard(out_dir / shard.relative_to(shards_root), rows)
    return {"path": os.fspath(hyp_dir.resolve()), "files": len(files),
            "scored_files": len(files) - len(unreadable) - len(set(files) - known),
            "missing": missing, "unreadable": unreadable, "unknown": sorted(f"{u}{SUFFIX}" for u in set(files) - known)}


def evaluate_hyp_dir(name: str, hyp_dir: Path, cfg: EvaluationConfig, layout: Layout) -> dict[str, Any]:
    """Score the WAVs of `hyp_dir` as system `name` on `cfg.evaluate.splits`; returns its details file's content."""
    from pipeline.evaluation.stage import evaluate_shards

    shards = roi_shards(layout.roi, cfg.evaluate.splits)
    if not shards:
        raise FileNotFoundError(f"no ground truth for splits {list(cfg.evaluate.splits)} under {layout.roi / 'shards'}: "
                                "run the pipeline's roi stage here first")
    layout.eval(name).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=layout.eval(name).parent) as tmp:
        found = import_wavs(hyp_dir, layout, shards, Path(tmp))
        return evaluate_shards(name, Path(tmp), cfg, layout, kind="external", family=None, hyp_dir=found)


def run(args: argparse.Namespace) -> int:
    """Check every argument, then score; one line and exit 1 for what cannot be done."""
    try:
        if not NAME.fullmatch(args.name):
            raise ValueError(f"--name {args.name!r}: letters, digits, '_', '.' and '-' only")
        if not args.hyp_dir.is_dir():
            raise FileNotFoundError(f"--hyp-dir {args.hyp_dir}: no such directory")
        if not any(p.name.lower().endswith(SUFFIX) for p in args.hyp_dir.iterdir()):
            raise FileNotFoundError(f"--hyp-dir {args.hyp_dir}: no *{SUFFIX} files (name them <utt_id>{SUFFIX})")
        if not PARAMS_FILE.is_file():
            raise FileNotFoundError(f"no {PARAMS_FILE} here: run v2s evaluate in the checkout whose ground truth "
                                    "(data/roi/) the files are scored against")
        params = Params(load_params(PARAMS_FILE))
        if args.name in pipeline_systems(params, Path("dvc.yaml")):
            raise ValueError(f"--name {args.name}: a system of the pipeline's own evaluation; choose another name")
        cfg = evaluation_config(params, references=False)
        if args.splits:
            unknown = sorted(set(args.splits) - set(cfg.evaluate.splits))
            if unknown:
                raise ValueError(f"--split {', '.join(unknown)}: not one of evaluate.splits {list(cfg.evaluate.splits)}")
            cfg = replace(cfg, evaluate=replace(cfg.evaluate, splits=tuple(args.splits)))
        details = evaluate_hyp_dir(args.name, args.hyp_dir, cfg, Layout())
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"v2s evaluate: {exc}", file=sys.stderr)
        return 1
    found = details["hyp_dir"]
    for label, items in (("without a file (scored as missing)", found["missing"]),
                         ("matching no utterance of the splits (not scored)", found["unknown"]),
                         ("unreadable (scored as missing)", [f"{k}: {v}" for k, v in found["unreadable"].items()])):
        if items:
            print(f"v2s evaluate: {len(items)} {label}: {', '.join(items[:5])}" + (" ..." if len(items) > 5 else ""),
                  file=sys.stderr)
    print(f"v2s evaluate: {args.name}: {found['scored_files']} of {found['files']} files matched; "
          f"outputs in data/eval/{args.name}.parquet and reports/metrics/{args.name}.json", file=sys.stderr)
    return 0
