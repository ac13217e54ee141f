"""Shared plumbing: atomic writes, the executor's failure handling, probing, mel framing, CLI."""
from __future__ import annotations

import copy
import dataclasses
import importlib
import shutil

import numpy as np
import paths
import pytest
import yaml

from pipeline.atomic import atomic_dir, atomic_path
from pipeline.audio.io import fit_length, read_media_audio, resample
from pipeline.audio.mel import MelConfig, log_mel
from pipeline.cli import main as cli_main
from pipeline.config import ConfigError, Params, declared_params, load_params
from pipeline.executor import Executor, ExecutorConfig, Failure
from pipeline.video.probe import ProbeError, probe

GRID = paths.GRID


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_replaces_whole_directory(tmp_path):
    target = tmp_path / "d"
    (target).mkdir()
    (target / "stale").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new"]


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_executor_keeps_order_and_records_failures(workers):
    out = list(Executor(workers=workers).imap(_square_or_fail, range(6)))
    assert out[:3] == [0, 1, 4] and out[4:] == [16, 25]
    assert isinstance(out[3], Failure) and out[3].message == "ValueError: three is bad"


def test_probe_reads_grid_clip_and_rejects_garbage(tmp_path):
    if not GRID.is_dir():
        paths.missing_grid()
    info = probe(GRID / "bbaf2n.mpg")
    assert (info.width, info.height, info.fps, info.audio_sr) == (360, 288, 25.0, 44100)
    assert 2.9 < info.duration < 3.1
    junk = tmp_path / "junk.mpg"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(ProbeError, match="cannot read"):
        probe(junk)


def test_media_audio_and_length_fitting():
    if not GRID.is_dir():
        paths.missing_grid()
    audio = read_media_audio(GRID / "bbaf2n.mpg", 16000)
    assert audio.dtype == np.float32 and abs(len(audio) - 3 * 16000) < 800 and audio.std() > 0.01
    fitted, diff = fit_length(audio, 75 * 640)
    assert len(fitted) == 48000 and diff == 48000 - len(audio)


def test_resample_preserves_a_tone():
    t = np.arange(44100) / 44100
    y = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), 44100, 16000)
    spectrum = np.abs(np.fft.rfft(y))
    assert len(y) == 16000 and abs(np.argmax(spectrum) - 440) <= 1


def test_mel_frames_tile_the_signal():
    cfg = MelConfig()
    assert cfg.frames_per_video_frame(25) == 4
    assert log_mel(np.zeros(75 * 640, dtype=np.float32), cfg).shape == (80, 300)
    with pytest.raises(ValueError, match="does not divide"):
        MelConfig(hop_length=150).frames_per_video_frame(25)


def test_cli_lists_commands(capsys):
    with pytest.raises(SystemExit):
        cli_main([])
    out = capsys.readouterr().out
    assert all(name in out for name in ("crop", "embed", "speak", "score"))


# --- configuration of the data stages ----------------------------------------------------------

REPO = paths.REPO


def _with_key_renamed(tree: dict, dotted: str, new: str) -> dict:
    tree = copy.deepcopy(tree)
    *parents, last = dotted.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[new] = node.pop(last)
    return tree


@pytest.mark.parametrize(
    "stage, key, typo",
    [
        ("roi", "roi.size", "sise"),
        ("roi", "audio.fps", "fsp"),
        ("roi", "executor.workers", "worker"),
        ("units", "units.clusters", "clusterz"),
        ("units", "units.kmeans.n_init", "n_inti"),
        ("speakers", "speakers.references", "referenses"),
        ("prosody", "prosody.fmax", "fmaxx"),
        ("prosody", "audio.n_mels", "n_mel"),
        ("prepare", "protocols.demo.hold_out", "holdout"),
        ("prepare", "corpus.grid.protocol", "protocl"),
        ("download", "corpus.demo.video.qscale", "qscal"),
        ("download", "corpus.demo.seed", "sede"),
    ],
)
def test_a_typo_in_a_data_section_stops_its_stage_naming_the_key(stage, key, typo):
    tree = _with_key_renamed(load_params(REPO / "params.yaml"), key, typo)
    module = importlib.import_module(f"stages.{stage}")
    with pytest.raises(ConfigError) as error:
        module.configure(Params(tree, declared_params(stage, None, tree, REPO / "dvc.yaml")))
    section, intended = key.rsplit(".", 1)
    message = str(error.value)
    if message.startswith("missing key"):  # a key read on its own (roi's audio.fps; download's corpus keys)
        assert message.startswith(f"missing key {key} ") and f"'{typo}'" in message
    else:
        assert message.startswith(f"unknown key {section}.{typo} ") and f"'{intended}'" in message


def test_stage_entry_refuses_bad_params_before_any_work(tmp_path, monkeypatch, capsys):
    from stages.roi import main

    tree = _with_key_renamed(load_params(REPO / "params.yaml"), "roi.mouth_width", "mouth_wdth")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roi: unknown key roi.mouth_wdth ") and "'mouth_width'" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml", "params.yaml"]  # nothing read, nothing written


def test_shipped_params_configure_every_data_stage():
    tree = load_params(REPO / "params.yaml")
    for stage in ("download", "prepare", "roi", "units", "speakers", "prosody"):
        cfg = importlib.import_module(f"stages.{stage}").configure(Params(tree, declared_params(stage, None, tree, REPO / "dvc.yaml")))
        assert dataclasses.is_dataclass(cfg) and cfg.executor == ExecutorConfig(workers=0, address=None)
