"""`v2s evaluate --hyp-dir`: another system's WAVs scored by the pipeline's own scorer, as a system of the report."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from eval_world import REPO, eval_world_fixture, merged  # noqa: F401

from pipeline.audio.io import resample
from pipeline.cli import main as cli_main
from pipeline.config import Params
from pipeline.evaluation.external import evaluate_hyp_dir
from pipeline.layout import Layout
from pipeline.report.build import ReportInputs, build
from pipeline.shards import ShardReader, unpack
from stages import evaluate as evaluate_stage
from stages import report as report_stage

SCORES = ["utt_id", "split", "scored", "pesq_wb", "pesq_nb8k", "stoi", "estoi", "offset_ms", "wer_sphinx", "wer_ctc"]


def _run_dir(eval_world, root: Path, copy_evaluations: bool = False) -> Layout:
    """A checkout under `root` with the world's ground truth and ASR (and, if asked, its evaluations)."""
    world = eval_world["layout"]
    for path in (world.roi, world.asr):
        link = root / path.relative_to(world.root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path, target_is_directory=True)
    if copy_evaluations:
        shutil.copytree(world.eval("x").parent, root / "data" / "eval")
        shutil.copytree(world.metrics_dir, root / "reports" / "metrics")
    return Layout(root)


def _wavs(eval_world, system: str, out: Path) -> dict[str, np.ndarray]:
    """The world's synthesis of `system` as float WAVs named by utterance id (the exact samples)."""
    out.mkdir(parents=True)
    audio = {}
    for shard in sorted(eval_world["layout"].synth(system).rglob("*.parquet")):
        for r in ShardReader(shard).iter_rows(["utt_id", "audio", "sample_rate"]):
            audio[r["utt_id"]] = np.array(unpack(r, "audio"))
            sf.write(out / f"{r['utt_id']}.wav", audio[r["utt_id"]], int(r["sample_rate"]), subtype="FLOAT")
    return audio


def _cfg(eval_world):
    return evaluate_stage.configure(Params(eval_world["params"]), "any")


def test_a_folder_of_wavs_gets_the_scores_the_pipeline_gives_the_same_audio(eval_world, tmp_path):
    layout = _run_dir(eval_world, tmp_path / "run", copy_evaluations=True)
    _wavs(eval_world, "gl_noisy", tmp_path / "theirs")
    details = evaluate_hyp_dir("theirs", tmp_path / "theirs", _cfg(eval_world), layout)
    ours = pd.read_parquet(eval_world["layout"].eval("gl_noisy"))[SCORES]
    theirs = pd.read_parquet(layout.eval("theirs"))[SCORES]
    pd.testing.assert_frame_equal(ours, theirs)
    assert details["kind"] == "external" and details["hyp_dir"]["files"] == details["hyp_dir"]["scored_files"] == len(ours)
    assert json.loads(layout.metrics("theirs").read_text())["test"]["estoi"] == details["test"]["estoi"]
    assert not list(layout.eval("x").parent.glob(".theirs.*"))  # the imported copy is gone
    # listed in report.systems, it is a row of the report like any system
    cfg = report_stage.configure(Params(merged(eval_world["params"], {"report": {"systems": ["gl_noisy", "gl_clean", "theirs"]}})))
    html = build(cfg, ReportInputs(layout, ()))
    results = html[html.index("id='results'"):html.index("id='sync'")]
    assert results.count("<td class='l'>theirs</td>") == 2  # test and unseen


def test_every_file_that_cannot_be_scored_is_named_never_dropped(eval_world, tmp_path, capsys, monkeypatch):
    root = tmp_path / "run"
    _run_dir(eval_world, root)
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, root / name)
    Path(root / "params.yaml").write_text(yaml.safe_dump(eval_world["params"]))
    hyp = tmp_path / "theirs"
    audio = _wavs(eval_world, "gl_clean", hyp)
    test_ids = sorted(u for u in audio if u.startswith(("d1_", "d2_")))
    missing, low_rate, short, corrupt = test_ids[:4]
    (hyp / f"{missing}.wav").unlink()
    sf.write(hyp / f"{low_rate}.wav", resample(audio[low_rate], 16000, 8000), 8000)
    sf.write(hyp / f"{short}.wav", audio[short][:-8000], 16000)  # half a second short
    (hyp / f"{corrupt}.wav").write_bytes(b"RIFF but not audio")
    sf.write(hyp / "nobody_bbaf2n.wav", audio[short], 16000)
    monkeypatch.chdir(root)
    assert cli_main(["evaluate", "--hyp-dir", str(hyp), "--name", "theirs"]) == 0
    err = capsys.readouterr().err
    assert f"1 without a file (scored as missing): {missing}" in err
    assert "1 matching no utterance of the splits (not scored): nobody_bbaf2n.wav" in err
    assert f"1 unreadable (scored as missing): {corrupt}.wav: " in err
    found = json.loads(Layout(root).metrics_details("theirs").read_text())["hyp_dir"]
    assert (found["missing"], found["unknown"], list(found["unreadable"])) == ([missing], ["nobody_bbaf2n.wav"],
                                                                             [f"{corrupt}.wav"])
    rows = pd.read_parquet(Layout(root).eval("theirs")).set_index("utt_id")
    kinds = {u: list(rows.loc[u, "issue_kinds"]) for u in (missing, low_rate, short, corrupt)}
    assert kinds == {missing: ["missing"], low_rate: ["wrong_rate"], short: ["length_mismatch"], corrupt: ["missing"]}
    assert rows["scored"].sum() == len(rows) - 4


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "a/b"], "--name 'a/b': letters, digits"),
    (["--name", "ground_truth"], "--name ground_truth: a system of the pipeline's own evaluation"),
    (["--name", "melspec_scratch"], "--name melspec_scratch: a system of the pipeline's own evaluation"),
    (["--name", "x", "--split", "val"], "--split val: not one of evaluate.splits"),
])
def test_arguments_are_refused_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "hyp").mkdir()
    (tmp_path / "hyp" / "u.wav").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["evaluate", "--hyp-dir", "hyp", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"v2s evaluate: {message}") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml", "hyp", "params.yaml"]  # nothing written


def test_a_folder_without_wavs_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["evaluate", "--hyp-dir", str(tmp_path / "empty"), "--name", "x"]) == 1
    assert capsys.readouterr().err.strip().endswith("no *.wav files (name them <utt_id>.wav)")
    assert cli_main(["evaluate", "--hyp-dir", str(tmp_path / "none"), "--name", "x"]) == 1
    assert "no such directory" in capsys.readouterr().err
