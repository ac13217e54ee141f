"""The evaluation stages end to end on a small real world (see eval_world.py)."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from eval_world import BROKEN, REPO, VARIANTS, eval_world_fixture, merged, with_workers, world_params  # noqa: F401

from pipeline.config import ConfigError, Params
from pipeline.evaluation import stage
from pipeline.evaluation.metrics import PESQ_WB_MAX
from pipeline.layout import Layout
from stages import evaluate as evaluate_stage


def test_reference_rows_bracket_what_a_model_can_score(eval_world):
    m = eval_world["metrics"]["references"]
    gt, ceiling, baseline = (m[k]["test"] for k in ("ground_truth", "vocoder_ceiling", "mean_mel_baseline"))
    assert gt["pesq_wb"] == pytest.approx(PESQ_WB_MAX, abs=1e-3) and gt["stoi"] == 1.0 and gt["mcd"] == 0.0
    assert gt["n"] == gt["n_scored"] == 4 and sum(gt["unscored"].values()) == 0
    assert baseline["stoi"] < ceiling["stoi"] < 1.0 and baseline["pesq_wb"] < ceiling["pesq_wb"] < gt["pesq_wb"]
    assert baseline["wer_sphinx"] > gt["wer_sphinx"]  # a system that ignores the video is not understood
    # Both held-out speakers' utterances are scored; the unseen speaker uses the all-speaker mean.
    assert m["mean_mel_baseline"]["unseen"]["n_scored"] == 2


def test_variants_are_scored_against_the_same_ground_truth(eval_world):
    clean, noisy = (eval_world["metrics"][v]["test"] for v in ("gl_clean", "gl_noisy"))
    assert noisy["pesq_wb"] < clean["pesq_wb"] and noisy["mcd"] > clean["mcd"]
    assert clean["n"] == noisy["n"] == 4


def test_broken_outputs_are_counted_with_messages_never_scored_as_zero(eval_world):
    layout = eval_world["layout"]
    m = eval_world["metrics"]["broken"]["test"]
    assert (m["n"], m["n_scored"]) == (4, 1)
    assert m["unscored"]["silent"] == m["unscored"]["wrong_rate"] == m["unscored"]["missing"] == 1
    assert m["flagged"]["clipped"] == 1
    df = pd.read_parquet(layout.eval("broken")).set_index("utt_id")
    fate = eval_world["fate"]
    for utt, kind in fate.items():
        row = df.loc[utt]
        assert (kind in row["issues"]) or (kind == "silent" and "every sample is zero" in row["issues"]), row["issues"]
        assert bool(row["scored"]) == (kind == "clipped")
        if kind != "clipped":
            assert pd.isna(row["pesq_wb"]) and pd.isna(row["wer_sphinx"])
    clipped = df.loc[[u for u, k in fate.items() if k == "clipped"][0]]
    assert m["pesq_wb"] == pytest.approx(clipped["pesq_wb"], abs=1e-4)  # the mean is the one scored utterance
    assert set(BROKEN) == set(fate.values())


def test_details_files_record_versions_and_asrs(eval_world):
    layout = eval_world["layout"]
    for name in ("ground_truth", "vocoder_ceiling", "mean_mel_baseline", "gl_clean", "gl_noisy", "broken"):
        m = json.loads(layout.metrics_details(name).read_text())
        v = m["versions"]
        assert v["packages"]["ffmpeg"].startswith("ffmpeg version") and v["packages"]["pesq"] == "0.0.4"
        assert {"pystoi", "pocketsphinx", "torch"} <= set(v["packages"])
        assert (v["sample_rate"], v["corpus"], v["protocol"]) == (16000, "demo", "demo")
        assert len(v["asr"]["sphinx"]["grammar_sha256"]) == 64 and len(v["asr"]["ctc"]["model_sha256"]) == 64
        assert v["asr"]["sphinx"]["references_in_grammar"] == 1.0
        assert set(m) >= {"test", "unseen", "system", "kind"}
        assert layout.plots(name).joinpath("test_pesq_wb.csv").is_file()
    assert json.loads(layout.metrics_details("vocoder_ceiling").read_text())["vocoder"]["name"] == "griffin_lim"
    samples = list(layout.eval_samples("x").parent.glob("*.parquet"))
    assert len(samples) == 6  # every system keeps the same sample utterances for the report


def test_a_systems_kind_and_family_come_from_its_model_card(eval_world):
    for system, (kind, family, extra) in VARIANTS.items():
        m = json.loads(eval_world["layout"].metrics_details(system).read_text())
        # the card's scalar settings, without its vectors
        assert (m["system"], m["kind"], m["family"], m["model"]["extra"]) == (system, kind, family, extra)
    assert json.loads(eval_world["layout"].metrics_details("ground_truth").read_text())["kind"] == "reference"


def test_metrics_files_hold_the_headline_numbers_only(eval_world):
    """What `dvc exp show` lists: at most 12 numbers per system and split, each the details file's own."""
    layout = eval_world["layout"]
    for name in ("ground_truth", "vocoder_ceiling", "mean_mel_baseline", "gl_clean", "gl_noisy", "broken"):
        metrics = json.loads(layout.metrics(name).read_text())
        details = json.loads(layout.metrics_details(name).read_text())
        assert "test" in metrics and set(metrics) <= {"test", "unseen"}
        for split, numbers in metrics.items():
            assert set(numbers) == {"pesq_wb", "pesq_nb8k", "pesq_nb16k", "stoi", "estoi", "wer_sphinx", "wer_ctc",
                                    "offset_ms"}
            assert numbers == {k: details[split][k] for k in numbers}


def _linked_world(eval_world, root) -> Layout:
    """A layout under `root` sharing the world's inputs (ground truth, synthesis, ASR), with fresh outputs."""
    world = eval_world["layout"]
    for path in (world.roi, world.synth("x").parent, world.asr):
        link = root / path.relative_to(world.root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path, target_is_directory=True)
    return Layout(root)


def test_process_pool_gives_the_same_scores_as_inline(eval_world, tmp_path):
    pooled = _linked_world(eval_world, tmp_path)
    cfg = evaluate_stage.configure(Params(with_workers(eval_world["params"], 2)), "gl_noisy")
    stage.evaluate_system("gl_noisy", cfg, pooled)
    a = pd.read_parquet(eval_world["layout"].eval("gl_noisy"))
    b = pd.read_parquet(pooled.eval("gl_noisy"))
    pd.testing.assert_frame_equal(a, b)


def test_a_system_without_a_model_card_is_refused(eval_world, tmp_path):
    layout = _linked_world(eval_world, tmp_path)
    layout.synth("x").parent.unlink()  # the linked synthesis, replaced by one whose card is missing
    shutil.copytree(eval_world["layout"].synth("gl_clean"), layout.synth("gl_clean"))
    layout.synth("gl_clean").joinpath("card.json").unlink()
    with pytest.raises(FileNotFoundError, match="card.json"):
        stage.evaluate_system("gl_clean", evaluate_stage.configure(Params(eval_world["params"]), "gl_clean"), layout)


def test_a_typo_in_the_checks_stops_the_stage_naming_the_key(tmp_path, monkeypatch, capsys):
    params = merged(world_params(), {"evaluate": {"checks": {"min_second": 2}}})
    with pytest.raises(ConfigError, match=r"evaluate\.checks\.min_second.*'min_seconds'"):
        evaluate_stage.configure(Params(params), "gl_clean")
    # The stage itself: exit status 2 and the message, before any work (there is no data here).
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    text = (REPO / "params.yaml").read_text()
    assert "    min_seconds: 0.5 " in text
    (tmp_path / "params.yaml").write_text(text.replace("    min_seconds: 0.5 ", "    min_second: 2 "))
    monkeypatch.chdir(tmp_path)
    for argv in (["melspec_scratch"], ["--references"]):
        assert evaluate_stage.main(argv) == 2
        err = capsys.readouterr().err
        assert "unknown key evaluate.checks.min_second (did you mean 'min_seconds'?)" in err, err
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()
