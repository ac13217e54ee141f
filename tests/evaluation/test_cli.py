"""`v2s score`: one JSON line with every metric and the versions behind it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paths
import pytest
from eval_world import eval_world_fixture, speak  # noqa: F401 - session fixture

from pipeline.audio.io import write_wav
from pipeline.cli import main as cli_main
from pipeline.corpora import espeak

REPO = paths.REPO
TEXT = "bin blue at f two now"


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("score")
    ref = speak("bbaf2n", espeak.Voice("en+m3", 165, 40, 50))
    noisy = ref + 0.005 * np.random.default_rng(0).standard_normal(len(ref)).astype(np.float32)
    out = {"ref": write_wav(d / "ref.wav", ref, 16000), "noisy": write_wav(d / "noisy.wav", noisy, 16000),
           "silent": write_wav(d / "silent.wav", np.zeros_like(ref), 16000)}
    return out


def test_score_prints_one_json_line_with_all_metrics_and_versions(wavs, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "score", "--ref", str(wavs["ref"]),
                           "--hyp", str(wavs["noisy"]), "--text", TEXT],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-800:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["scored"] is True and out["issues"] == []
    assert 1.0 < out["pesq_wb"] < 4.64 and 0.5 < out["stoi"] < 1.0 and 0 < out["estoi"] < 1.0 and out["mcd"] > 0
    assert out["asr"]["sphinx"]["transcript"] and 0 <= out["asr"]["sphinx"]["wer"] <= 100
    v = out["versions"]
    assert v["packages"]["ffmpeg"].startswith("ffmpeg version") and v["sample_rate"] == 16000
    assert {"pesq", "pystoi", "pocketsphinx", "torch"} <= set(v["packages"]) and v["max_offset_ms"] == 200
    assert len(v["asr"]["sphinx"]["grammar_sha256"]) == 64


def test_unscorable_input_says_why_and_exits_nonzero(wavs, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    rc = cli_main(["score", "--ref", str(wavs["ref"]), "--hyp", str(wavs["silent"]), "--no-sphinx"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["scored"] is False
    assert out["issues"] == ["hypothesis silent: every sample is zero"] and "pesq_wb" not in out
    assert "packages" in out["versions"]


def test_score_uses_the_trained_ctc_asr_when_given(wavs, capsys, monkeypatch, tmp_path, eval_world):
    monkeypatch.chdir(tmp_path)
    rc = cli_main(["score", "--ref", str(wavs["ref"]), "--hyp", str(wavs["noisy"]), "--text", TEXT,
                   "--asr-model", str(eval_world["layout"].asr)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and set(out["asr"]) == {"sphinx", "ctc"} and "wer" in out["asr"]["ctc"]
    assert len(out["versions"]["asr"]["ctc"]["model_sha256"]) == 64


def test_score_uses_the_working_directorys_params_strictly(wavs, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    text = (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("    silence_dbfs: -60.0 ", "    silence_dbfs: -200.0 "))
    args = ["score", "--ref", str(wavs["ref"]), "--hyp", str(wavs["noisy"]), "--no-sphinx"]
    assert cli_main(args) == 0
    assert json.loads(capsys.readouterr().out)["versions"]["checks"]["silence_dbfs"] == -200.0
    (tmp_path / "params.yaml").write_text(text.replace("    silence_dbfs: -60.0 ", "    silence_db: -60.0 "))
    assert cli_main(args) == 2
    assert "unknown key evaluate.checks.silence_db (did you mean 'silence_dbfs'?)" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["empty.wav", "video"])
def test_score_refuses_a_non_audio_file_in_one_line(wavs, tmp_path, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    if bad == "video":
        if not (paths.GRID / "bbaf2n.mpg").is_file():
            paths.missing_grid()
        path = paths.GRID / "bbaf2n.mpg"
    else:
        path = tmp_path / bad
        path.write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        cli_main(["score", "--ref", str(wavs["ref"]), "--hyp", str(path), "--no-sphinx"])
    message = str(stop.value)
    assert message.startswith(f"v2s score: {path} is not an audio file") and "\n" not in message


def _score_80_ms_late(tmp_path, capsys, monkeypatch, *options: str) -> tuple[int, dict]:
    """`v2s score` of a real GRID clip against itself 80 ms late (same length): exit code and JSON line."""
    from pipeline.audio.io import read_media_audio

    clip = paths.GRID / "bbaf2n.mpg"
    if not clip.is_file():
        paths.missing_grid()
    monkeypatch.chdir(tmp_path)
    ref = read_media_audio(clip, 16000)
    late = np.concatenate([np.zeros(1280, np.float32), ref[:-1280]])
    rc = cli_main(["score", "--ref", str(write_wav(tmp_path / "ref.wav", ref, 16000)),
                   "--hyp", str(write_wav(tmp_path / "late.wav", late, 16000)), "--no-sphinx", *options])
    return rc, json.loads(capsys.readouterr().out)


def test_score_finds_an_80_ms_offset_on_a_real_grid_clip_and_scores_all_pesq_conventions(tmp_path, capsys, monkeypatch):
    rc, out = _score_80_ms_late(tmp_path, capsys, monkeypatch)
    assert rc == 0 and {"pesq_wb", "pesq_nb8k", "pesq_nb16k"} <= set(out)
    assert all(1.0 <= out[k] <= 4.65 for k in ("pesq_wb", "pesq_nb8k", "pesq_nb16k"))
    assert len({out[k] for k in ("pesq_wb", "pesq_nb8k", "pesq_nb16k")}) == 3  # three computations, not one copied
    assert abs(out["offset_ms"] - 80) <= 40  # within one video frame
    assert out["stoi_aligned"] > 0.99 and out["stoi"] < out["stoi_aligned"] and out["pesq_wb_aligned"] > out["pesq_wb"]


def test_score_searches_the_offset_only_within_the_range_asked(tmp_path, capsys, monkeypatch):
    _, out = _score_80_ms_late(tmp_path, capsys, monkeypatch, "--max-offset-ms", "40")
    assert abs(out["offset_ms"]) <= 40 and out["versions"]["max_offset_ms"] == 40


def test_offset_estimate_is_exact_both_ways_on_a_real_clip():
    from pipeline.audio.io import read_media_audio
    from pipeline.evaluation.metrics import estimate_offset

    clip = paths.GRID / "lbax4n.mpg"
    if not clip.is_file():
        paths.missing_grid()
    ref = read_media_audio(clip, 16000)
    for ms in (-120, -40, 0, 25, 160):
        k = ms * 16
        hyp = np.concatenate([np.zeros(k, np.float32), ref[:-k]]) if k > 0 else np.concatenate([ref[-k:], np.zeros(-k, np.float32)])
        assert estimate_offset(ref, hyp, 16000, 0.2) == pytest.approx(ms / 1000, abs=0.002)
