"""The evaluation stages end to end on a small real world (see eval_world.py)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from eval_world import BROKEN, eval_world, with_workers  # noqa: F401 - session fixture
from pipeline.evaluation import stage
from pipeline.evaluation.metrics import PESQ_WB_MAX


def test_reference_rows_bracket_what_a_model_can_score(eval_world):
    m = eval_world["metrics"]["references"]
    gt, ceiling, baseline = (m[k]["test"] for k in ("ground_truth", "vocoder_ceiling", "mean_mel_baseline"))
    assert gt["pesq"] == pytest.approx(PESQ_WB_MAX, abs=1e-3) and gt["stoi"] == 1.0 and gt["mcd"] == 0.0
    assert gt["n"] == gt["n_scored"] == 4 and sum(gt["unscored"].values()) == 0
    assert baseline["stoi"] < ceiling["stoi"] < 1.0 and baseline["pesq"] < ceiling["pesq"] < gt["pesq"]
    assert baseline["wer_sphinx"] > gt["wer_sphinx"]  # a system that ignores the video is not understood
    # Both held-out speakers' utterances are scored; the unseen speaker uses the all-speaker mean.
    assert m["mean_mel_baseline"]["unseen"]["n_scored"] == 2


def test_variants_are_scored_against_the_same_ground_truth(eval_world):
    clean, noisy = (eval_world["metrics"][v]["test"] for v in ("gl_clean", "gl_noisy"))
    assert noisy["pesq"] < clean["pesq"] and noisy["mcd"] > clean["mcd"]
    assert clean["n"] == noisy["n"] == 4


def test_broken_outputs_are_counted_with_messages_never_scored_as_zero(eval_world):
    paths = eval_world["paths"]
    m = eval_world["metrics"]["broken"]["test"]
    assert (m["n"], m["n_scored"]) == (4, 1)
    assert m["unscored"]["silent"] == m["unscored"]["wrong_rate"] == m["unscored"]["missing"] == 1
    assert m["flagged"]["clipped"] == 1
    df = pd.read_parquet(paths.eval / "broken.parquet").set_index("utt_id")
    fate = eval_world["fate"]
    for utt, kind in fate.items():
        row = df.loc[utt]
        assert (kind in row["issues"]) or (kind == "silent" and "every sample is zero" in row["issues"]), row["issues"]
        assert bool(row["scored"]) == (kind == "clipped")
        if kind != "clipped":
            assert pd.isna(row["pesq"]) and pd.isna(row["wer_sphinx"])
    clipped = df.loc[[u for u, k in fate.items() if k == "clipped"][0]]
    assert m["pesq"] == pytest.approx(clipped["pesq"], abs=1e-4)  # the mean is the one scored utterance
    assert set(BROKEN) == set(fate.values())


def test_metrics_files_record_versions_and_asrs(eval_world):
    paths = eval_world["paths"]
    for name in ("ground_truth", "vocoder_ceiling", "mean_mel_baseline", "gl_clean", "gl_noisy", "broken"):
        m = json.loads((paths.metrics / f"{name}.json").read_text())
        v = m["versions"]
        assert v["packages"]["ffmpeg"].startswith("ffmpeg version") and v["packages"]["pesq"] == "0.0.4"
        assert {"pystoi", "pocketsphinx", "torch"} <= set(v["packages"])
        assert (v["sample_rate"], v["corpus"], v["protocol"]) == (16000, "demo", "demo")
        assert len(v["asr"]["sphinx"]["grammar_sha256"]) == 64 and len(v["asr"]["ctc"]["model_sha256"]) == 64
        assert v["asr"]["sphinx"]["references_in_grammar"] == 1.0
        assert set(m) >= {"test", "unseen", "system", "kind"}
        assert (paths.plots / name / "test_pesq.csv").is_file()
    assert json.loads((paths.metrics / "vocoder_ceiling.json").read_text())["vocoder"]["name"] == "griffin_lim"
    samples = list((paths.eval / "samples").glob("*.parquet"))
    assert len(samples) == 6  # every system keeps the same sample utterances for the report


def test_process_pool_gives_the_same_scores_as_inline(eval_world, tmp_path):
    root = eval_world["root"]
    paths = stage.Paths.under(root)
    pooled = stage.Paths(**{**paths.__dict__, "eval": tmp_path / "eval", "metrics": tmp_path / "metrics",
                            "plots": tmp_path / "plots"})
    stage.evaluate_variant(with_workers(eval_world["params"], 2), "gl_noisy", pooled)
    a = pd.read_parquet(paths.eval / "gl_noisy.parquet")
    b = pd.read_parquet(pooled.eval / "gl_noisy.parquet")
    pd.testing.assert_frame_equal(a, b)
