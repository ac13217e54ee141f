"""Bad and unusual inputs through the roi stage: each clip works or is rejected with its reason,
and the stage carries on. The media are made with the ffmpeg binary in a temporary folder."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import paths
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import Params, load_params
from pipeline.executor import Executor
from pipeline.manifest import MANIFEST_SCHEMA, write_manifest
from pipeline.shards import ShardReader, unpack
from pipeline.video.probe import ffmpeg_exe
from pipeline.video.roi import roi_config, run

REPO = paths.REPO
GRID = REPO.parent / "shared" / "grid_samples"
SINE = ["-f", "lavfi", "-i", "sine=f=300:r=16000:d=2"]


def ffmpeg(out: Path, *args: str) -> Path:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args, str(out)], check=True)
    return out


def make_media(folder: Path, grid: Path) -> dict[str, Path]:
    """Every kind of input the stage must survive, keyed by name."""
    g = ["-i", str(grid)]
    h264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-c:a", "aac"]
    truncated = folder / "truncated.mpg"
    truncated.write_bytes(grid.read_bytes()[: grid.stat().st_size // 2])
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    black = "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='between(n,{},{})'"
    return {
        "original": grid,
        "truncated": truncated,
        "corrupt": corrupt,
        "no_video": ffmpeg(folder / "no_video.m4a", *SINE, "-c:a", "aac"),
        "no_audio": ffmpeg(folder / "no_audio.mp4", *g, "-an", "-c:v", "libx264"),
        "noise": ffmpeg(
            folder / "noise.mp4", "-f", "lavfi", "-i", "nullsrc=s=320x240:r=25:d=2,geq=random(1)*255:128:128",
            *SINE, *h264, "-shortest",
        ),
        "flat": ffmpeg(
            folder / "flat.mp4", "-f", "lavfi", "-i", "color=c=0x808080:s=320x240:r=25:d=2", *SINE, *h264, "-shortest",
        ),
        "short": ffmpeg(folder / "short.mp4", *g, "-t", "0.2", *h264),
        "fps30": ffmpeg(folder / "fps30.mp4", *g, "-vf", "fps=30", *h264),
        "double_size": ffmpeg(folder / "double_size.mp4", *g, "-vf", "scale=720:576", *h264),
        "portrait": ffmpeg(folder / "portrait.mp4", *g, "-vf", "pad=360:520:0:116", *h264),
        # stored 1.42x wider with a 45:64 sample aspect ratio: the same picture on screen
        "anamorphic": ffmpeg(folder / "anamorphic.mp4", *g, "-vf", "scale=512:288,setsar=45/64", *h264),
        "face_gone_10": ffmpeg(folder / "face_gone_10.mp4", *g, "-vf", black.format(30, 39), *h264),
        "face_gone_30": ffmpeg(folder / "face_gone_30.mp4", *g, "-vf", black.format(20, 49), *h264),
    }


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    if not GRID.is_dir():
        paths.missing_grid()
    folder = tmp_path_factory.mktemp("bad_inputs")
    media = make_media(folder, GRID / "bbaf2n.mpg")
    rows = [
        {
            "utt_id": name, "corpus": "grid", "speaker": "s1", "split": "train", "source": str(path),
            "transcript": "bin blue at f two now", "words": None, "duration": 3.0, "fps": 25.0, "n_frames": 75,
            "width": 360, "height": 288, "audio_sr": 44100, "status": "ok", "reason": None,
        }
        for name, path in sorted(media.items())
    ]
    manifest = folder / "manifest.parquet"
    write_manifest(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)
    summary = run(roi_config(Params(load_params(REPO / "params.yaml"))), Executor(workers=1), manifest, folder / "roi")
    table = {r["utt_id"]: r for r in pq.read_table(folder / "roi" / "manifest.parquet").to_pylist()}
    return summary, table, folder / "roi" / "shards"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("truncated", r"^corrupt video: "),
        ("corrupt", r"^unreadable media: "),
        ("no_video", r"^no video stream$"),
        ("no_audio", r"^no audio stream$"),
        ("noise", r"^no face: none of 50 frames has a detected face$"),
        ("flat", r"^no face: none of 50 frames has a detected face$"),
        ("short", r"^too short: 5 frames at 25 fps, fewer than roi.min_frames=10$"),
        ("face_gone_30", r"^face missing: 30 of 75 frames without a face \(more than roi.max_missing=0.2\)$"),
    ],
)
def test_unusable_clip_is_rejected_with_its_reason(stage, name, reason):
    _, table, _ = stage
    row = table[name]
    assert row["status"] == "rejected" and row["shard"] is None
    assert re.search(reason, row["reason"]), row["reason"]


def crop_of(stage, name: str) -> tuple[np.ndarray, dict]:
    _, table, shards = stage
    row = table[name]
    assert row["status"] == "ok", row["reason"]
    data = ShardReader(shards / row["shard"]).read(row["row"])
    return unpack(data, "video").astype(float), data


@pytest.mark.parametrize("name", ["fps30", "double_size", "portrait", "anamorphic"])
def test_resampled_resized_and_portrait_clips_crop_like_the_original(stage, name):
    original, _ = crop_of(stage, "original")
    crop, data = crop_of(stage, name)
    assert crop.shape == original.shape == (75, 96, 96, 1) and data["missing_frames"] == 0
    assert len(unpack(data, "audio")) == 75 * 640
    # Same talker, same frames: alignment and scale normalisation make the crops match closely
    # (re-encoding and resampling blur them a little), far closer than neighbouring frames differ.
    difference = np.abs(crop - original).mean()
    assert difference < 4.0, f"{name}: mean difference {difference:.1f} grey levels"


def test_frames_without_a_face_are_interpolated(stage):
    original, _ = crop_of(stage, "original")
    crop, data = crop_of(stage, "face_gone_10")
    assert data["missing_frames"] == 10
    assert not crop[30:40].any()  # the black frames stay black: only the landmarks were interpolated
    assert np.abs(crop[:29] - original[:29]).mean() < 4.0 and np.abs(crop[41:] - original[41:]).mean() < 4.0


def test_stage_went_on_and_counted_every_reason(stage):
    summary, table, _ = stage
    assert (summary.clips, summary.accepted, summary.rejected) == (14, 6, 8) and summary.failed
    assert dict(summary.reasons) == {
        "corrupt video": 1, "unreadable media": 1, "no video stream": 1, "no audio stream": 1,
        "no face": 2, "too short": 1, "face missing": 1,
    }
    assert sorted(n for n, r in table.items() if r["status"] == "ok") == [
        "anamorphic", "double_size", "face_gone_10", "fps30", "original", "portrait",
    ]
