"""The prepare stage: probing, per-clip rejection reasons, splits, deterministic manifest bytes."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import paths
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import config
from pipeline.executor import Executor
from pipeline.manifest import MANIFEST_SCHEMA, build_manifest, inspect_clip
from pipeline.splits import Protocol, ProtocolConfig
from pipeline.video.probe import ffmpeg_exe
from stages import download as download_stage
from stages import prepare as prepare_stage

REPO = paths.REPO
GRID_SAMPLES = REPO.parent / "shared" / "grid_samples"
ALIGN = "0 12000 sil\n12000 14000 set\n14000 16000 green\n16000 18000 with\n18000 20000 z\n20000 22000 five\n22000 24000 please\n24000 25000 sil\n"
PROTOCOL = Protocol.from_config(
    "t", config.parse(ProtocolConfig, {"source": "test", "per_utterance": "all", "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}})
)


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, tuple[str, str | None]]:
    """One second clips made with ffmpeg, each broken (or not) in one way: name -> (video, align)."""
    d = tmp_path_factory.mktemp("media")
    video = ["-f", "lavfi", "-i", "testsrc=size=96x72:rate=25"]
    audio = ["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000"]
    codecs = ["-t", "1", "-c:v", "mpeg1video", "-c:a", "mp2"]
    for name in ("bbaf2n", "sgwz5p", "interview", "pbag1a"):
        _ffmpeg(*video, *audio, *codecs, str(d / f"{name}.mpg"))
    _ffmpeg(*video, "-t", "1", "-c:v", "mpeg1video", str(d / "lbax4n.mpg"))  # video without audio
    _ffmpeg(*audio, "-t", "1", "-c:a", "mp2", str(d / "lrwp9a.mpg"))  # audio without video
    (d / "brbk7n.mpg").write_text("this is not a video\n" * 50)
    (d / "sgwz5p.align").write_text(ALIGN)
    (d / "pbag1a.align").write_text("0 12000 sil\n12000 zero set\n")
    aligned = {"sgwz5p", "pbag1a"}
    clips = {name: (str(d / f"{name}.mpg"), str(d / f"{name}.align") if name in aligned else None) for name in
             ("bbaf2n", "sgwz5p", "interview", "pbag1a", "lbax4n", "lrwp9a", "brbk7n")}
    clips["missing"] = (str(d / "lbbc2a.mpg"), None)
    return clips


@pytest.fixture(scope="module")
def manifest(media) -> pd.DataFrame:
    sources = pd.DataFrame(
        [{"utt_id": f"a_{n}", "speaker": "a", "video_path": v, "align_path": a} for n, (v, a) in media.items()]
    )
    table = build_manifest(sources, "demo", PROTOCOL, seed=0, executor=Executor(workers=1))
    assert table.schema.equals(MANIFEST_SCHEMA)
    return table.to_pandas().set_index("utt_id")


@pytest.mark.parametrize(
    "clip, reason",
    [
        ("lbax4n", "no audio stream"),
        ("lrwp9a", "no video stream"),
        ("brbk7n", r"unreadable media: ffmpeg cannot read .*brbk7n\.mpg"),
        ("missing", r"unreadable media: no such file: .*lbbc2a\.mpg"),
        ("interview", r"no transcript: no alignment, and the file name is not a GRID sentence code"),
        ("pbag1a", r"no transcript: pbag1a\.align:2: times must be integers"),
    ],
)
def test_bad_clips_are_rejected_with_their_reason(manifest, clip, reason):
    row = manifest.loc[f"a_{clip}"]
    assert row.status == "rejected" and re.search(reason, row.reason) and pd.isna(row.split)


def test_good_clips_carry_probe_fields_transcripts_and_splits(manifest):
    ok = manifest[manifest.status == "ok"]
    assert sorted(ok.index) == ["a_bbaf2n", "a_sgwz5p"]
    assert (ok.n_frames == 25).all() and (ok.fps == 25.0).all() and (ok.audio_sr == 16000).all()
    assert (ok.width == 96).all() and (ok.height == 72).all() and ok.reason.isna().all()
    assert sorted(ok.split) == ["train", "val"]  # two clips, fractions 0.5/0.25/0.25
    assert ok.loc["a_bbaf2n"].transcript == "bin blue at f two now" and ok.loc["a_bbaf2n"].words is None
    aligned = ok.loc["a_sgwz5p"]
    assert aligned.transcript == "set green with z five please"
    assert list(aligned.words[0].values()) == ["set", 0.48, 0.56] and aligned.words[-1]["end"] == 0.96


def test_inspect_clip_never_raises(tmp_path):
    folder = tmp_path / "folder.mpg"
    folder.mkdir()
    assert inspect_clip((str(folder), None))["status"] == "rejected"


def _run_stages(tmp_path: Path, monkeypatch, source: Path, workers: int) -> int:
    """Exit code of prepare, after download succeeded."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["corpus"]["name"] = "grid"
    params["corpus"]["grid"]["source"] = str(source)
    params["executor"]["workers"] = workers
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "PARAMS_FILE", tmp_path / "params.yaml")
    assert download_stage.main([]) == 0
    return prepare_stage.main([])


def test_stages_prepare_the_grid_samples_deterministically(tmp_path, monkeypatch, capsys):
    if not GRID_SAMPLES.is_dir():
        paths.missing_grid()
    assert _run_stages(tmp_path, monkeypatch, GRID_SAMPLES, workers=2) == 0
    first = {p: (tmp_path / p).read_bytes() for p in ("data/raw/sources.parquet", "data/manifest.parquet")}
    assert _run_stages(tmp_path, monkeypatch, GRID_SAMPLES, workers=1) == 0
    assert {p: (tmp_path / p).read_bytes() for p in first} == first

    out = capsys.readouterr().out
    assert "5 ok (train 3, val 1, test 1, unseen 0), 0 rejected" in out
    manifest = pq.read_table(tmp_path / "data/manifest.parquet").to_pandas()
    expected = dict(re.findall(r"^\| (\w{6})\.mpg \| ([a-z ]+?) \|$", (GRID_SAMPLES / "SOURCE.md").read_text(), flags=re.M))
    assert dict(zip(manifest.utt_id.str.removeprefix("unknown_"), manifest.transcript)) == expected
    assert (manifest.n_frames == 75).all() and (manifest.audio_sr == 44100).all() and (manifest.corpus == "grid").all()
    assert json.loads((tmp_path / "downloads.lock.json").read_text()) == {}


def test_prepare_fails_loudly_without_a_usable_clip(tmp_path, monkeypatch, capsys):
    source = tmp_path / "copy"
    source.mkdir()
    (source / "bbaf2n.mpg").write_text("not a video")
    assert _run_stages(tmp_path, monkeypatch, source, workers=1) == 1
    assert "no usable training clip" in capsys.readouterr().err
    rejected = pq.read_table(tmp_path / "data/manifest.parquet").to_pylist()
    assert [r["status"] for r in rejected] == ["rejected"] and rejected[0]["reason"].startswith("unreadable media")
