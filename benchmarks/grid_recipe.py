"""One trial of a recipe choice, scored on the validation split (never the test split).

    .venv/bin/python benchmarks/grid_recipe.py RUN_DIR NAME STAGE ITEM [key=value ...] [--a2a DIR]

RUN_DIR is a checkout where the data stages ran on GRID (`dvc repro speakers` with the corpus set,
e.g. speaker s1). The trial trains one stage item (`train_v2a melspec_scratch`, `pretrain_a2a
melspec`, `train_lts lts_full`, `train_av2a melspec_baseline`) in RUN_DIR/trials/NAME with RUN_DIR's
params, the active recipe applied, and the given values changed; `--a2a DIR` takes the A2A models of
an earlier trial. An AV2A trial reads RUN_DIR's trained V2A models and their synthesis (its base's).
A V2A, LTS or AV2A trial then speaks the val split and scores it against ground truth: STOI, ESTOI
and, when RUN_DIR has trained the CTC ASR, its WER. One JSON line per trial goes to docs/grid_recipe_trials.jsonl, which docs/RESULTS.md lists.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from pystoi import stoi

REPO = Path(__file__).resolve().parents[1]
TRIALS = REPO / "docs" / "grid_recipe_trials.jsonl"
SHARED_DATA = ("data/roi", "data/manifest.parquet", "data/features/units", "data/features/speakers",
               "data/features/prosody")
KINDS = {"pretrain_a2a": "a2a", "train_v2a": "v2a", "train_lts": "lts", "train_av2a": "av2a"}  # stages whose models speak
# (an A2A speaks the val audio it hears: the ceiling of every V2A that starts from its decoder)
READS_V2A = ("models/v2a", "data/synth")  # what an AV2A trial takes from RUN_DIR: its base and the base's speech


def trial_dir(run: Path, name: str, overrides: list[str], a2a: Path | None, stage: str) -> Path:
    """RUN_DIR's data and this checkout's code under RUN_DIR/trials/NAME, with the trial's params."""
    from pipeline.config import RECIPE, apply_recipe, load_params

    d = run / "trials" / name
    (d / "data" / "features").mkdir(parents=True, exist_ok=True)
    (d / "models").mkdir(exist_ok=True)
    for p in ("stages", "pipeline", "dvc.yaml"):
        if not (d / p).exists():
            os.symlink(REPO / p, d / p)
    for p in SHARED_DATA + (READS_V2A if stage == "train_av2a" else ()):
        if not (d / p).exists():
            os.symlink(run.resolve() / p, d / p)
    if a2a is not None and not (d / "models" / "a2a").exists():
        os.symlink(a2a.resolve() / "models" / "a2a", d / "models" / "a2a")
    # RUN_DIR's values over this checkout's params.yaml: keys added since RUN_DIR ran take their defaults
    raw = _merged(load_params(REPO / "params.yaml"), load_params(run / "params.yaml"))
    tree = {**apply_recipe(raw), RECIPE: None}  # the recipe's values laid in, then the trial's
    for item in overrides:
        key, value = item.split("=", 1)
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise SystemExit(f"grid_recipe: no key {key} in {run / 'params.yaml'}")
        node[leaf] = yaml.safe_load(value)
    (d / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return d


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def score_val(d: Path, kind: str, variant: str, run: Path) -> dict[str, float]:
    """STOI/ESTOI (and CTC WER) of the trained model on every val utterance."""
    from pipeline.evaluation.asr_ctc import CTCASR
    from pipeline.evaluation.metrics import error_counts, rate
    from pipeline.inference.synthesis import ShardJob, synthesize_shard
    from pipeline.inference.vocoder import vocoder_dir
    from pipeline.layout import Layout
    from pipeline.shards import ShardReader, list_shards, unpack

    layout = Layout(d)
    asr = CTCASR(Layout(run).asr) if (Layout(run).asr / "model.pt").is_file() else None
    vocoder_name = yaml.safe_load((d / "params.yaml").read_text())["synthesize"]["vocoder"]
    vdir = vocoder_dir(vocoder_name, Layout(run))
    scores: list[dict[str, float]] = []
    for shard in list_shards(layout.roi / "shards" / "val"):
        rel = shard.relative_to(layout.roi / "shards").as_posix()
        out = d / "val_synth" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        synthesize_shard(ShardJob(str(layout.model(kind, variant)), str(vdir) if vdir else None, str(d), rel,
                                  str(out), 8, "cpu"))
        truth = {r["utt_id"]: (np.array(unpack(r, "audio")), r["transcript"])
                 for r in ShardReader(shard).iter_rows(["utt_id", "audio", "transcript"])}
        for r in ShardReader(out).iter_rows(["utt_id", "audio"]):
            wav = np.array(unpack(r, "audio"))
            ref, text = truth[r["utt_id"]]
            n = min(len(ref), len(wav))
            row = {"stoi": stoi(ref[:n], wav[:n], 16000), "estoi": stoi(ref[:n], wav[:n], 16000, extended=True)}
            if asr is not None:
                counts = error_counts(text, asr.transcribe(wav, 16000))
                row.update(errors=counts["word_errors"], words=counts["ref_words"])
            scores.append(row)
    out_scores = {k: round(float(np.mean([s[k] for s in scores])), 4) for k in ("stoi", "estoi")}
    if asr is not None:
        out_scores["wer_ctc"] = round(rate([s["errors"] for s in scores], [s["words"] for s in scores]), 2)
    return {**out_scores, "n": len(scores)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("stage", choices=list(KINDS))
    parser.add_argument("item")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--a2a", type=Path, help="a trial directory whose models/a2a this one uses")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")) or None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    d = trial_dir(args.run, args.name, args.overrides, args.a2a, args.stage)
    env = dict(os.environ, PYTHONPATH=str(REPO), **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    start = time.perf_counter()
    with open(d / "train.log", "w", encoding="utf-8") as log:
        rc = subprocess.call([sys.executable, "-m", f"stages.{args.stage}", args.item], cwd=d, stdout=log,
                             stderr=subprocess.STDOUT, env=env)
    seconds = round(time.perf_counter() - start)
    if rc:
        print(f"grid_recipe: {args.name}: {args.stage} failed (exit {rc}); see {d / 'train.log'}", file=sys.stderr)
        return rc
    record = {"name": args.name, "stage": args.stage, "variant": args.item, "overrides": args.overrides,
              "train_s": seconds, "threads": args.threads}
    if args.stage in KINDS:
        record.update(score_val(d, KINDS[args.stage], args.item, args.run))
    print(json.dumps(record))
    with open(TRIALS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
