"""docs/RESULTS.md: every number comes from the run's own evaluation files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import yaml
from eval_world import eval_world_fixture  # noqa: F401 - session fixture

from pipeline.evaluation.summary import summarize
from pipeline.report.build import ReportInputs, load_systems
from pipeline.report.results import write_results


def _run(eval_world, root: Path) -> Path:
    world = eval_world["layout"]
    for rel in ("data/eval", "reports/metrics", "models/asr"):
        shutil.copytree(world.root / rel, root / rel)
    (root / "params.yaml").write_text(yaml.safe_dump(eval_world["params"]), encoding="utf-8")
    times = {"command": ["dvc", "exp", "run"], "exit_code": 0, "total_s": 90.0, "stages": {"roi": 60.0, "report": 30.0}}
    (root / "reports" / "stage_times.json").write_text(json.dumps(times), encoding="utf-8")
    return root


def test_results_list_every_system_with_its_own_numbers(eval_world, tmp_path):
    run = _run(eval_world, tmp_path / "run")
    text = write_results([run], "Title", tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    systems = load_systems(ReportInputs(eval_world["layout"], ()), eval_world["params"]["report"]["systems"])
    split = eval_world["params"]["report"]["answer_split"]
    rows = {line.split(" | ")[0].strip("| *"): line for line in text.splitlines() if line.startswith("| ")}
    for name, s in systems.items():
        stoi = summarize(s.scores, [split])[split]["stoi"]
        assert f"{stoi:.3f} [" in rows[name], name
    assert "| roi | 1.0 min |" in text and "| **total** | **1.5 min** |" in text
    assert "make venv" in text and "v2s timed -- dvc exp run" in text
    assert all(rows[name].endswith(" |  |") for name in systems)  # no synthesis from other videos: no claim


def test_results_say_when_a_system_ignores_the_video(eval_world, tmp_path):
    run = _run(eval_world, tmp_path / "run")
    scores = pd.read_parquet(run / "data/eval/gl_clean.parquet")
    scores.assign(estoi_deranged=scores["estoi"], stoi_deranged=scores["stoi"]).to_parquet(run / "data/eval/gl_clean.parquet")
    text = write_results([run], "Title", tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| gl_clean |"))
    assert row.endswith("| +0.000 [+0.000, +0.000] no: ignores the video |"), row
