"""`v2s crop`: the stage's crop on any video, a one-line JSON summary, one-line reasons on bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import paths
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import Params, load_params
from pipeline.video.probe import ffmpeg_exe, probe
from pipeline.video.roi import crop_clip, roi_config

GRID = paths.GRID
PARAMS = paths.PARAMS


def grid_clip() -> Path:
    if not GRID.is_dir():
        paths.missing_grid()
    return GRID / "lbax4n.mpg"


def crop(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["crop", *map(str, args), "--params", str(PARAMS)])
    out, err = capsys.readouterr()
    return code, out, err


def test_crop_matches_the_stage_and_writes_a_preview(tmp_path, capsys):
    code, out, err = crop(capsys, grid_clip(), "-o", tmp_path / "c.npz", "--preview", tmp_path / "c.mp4")
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert out.count("\n") == 1
    assert {k: summary[k] for k in ("frames", "frames_with_face", "fps", "seconds", "audio")} == {
        "frames": 75, "frames_with_face": 75, "fps": 25, "seconds": 3.0, "audio": True,
    }
    saved = np.load(tmp_path / "c.npz")
    stage = crop_clip(grid_clip(), roi_config(Params(load_params(PARAMS))))
    assert saved["video"].tobytes() == stage.mouth.video.tobytes()
    assert saved["audio"].tobytes() == stage.clip.audio.tobytes()
    assert saved["transforms"].shape == (75, 2, 3) and not saved["missing"].any()
    info = probe(tmp_path / "c.mp4")
    size = stage.mouth.video.shape[1]
    assert (info.width, info.height, info.fps, info.has_audio) == (size, size, 25.0, True)


def test_no_mediapipe_log_lines_reach_the_terminal(tmp_path):
    # A fresh process: mediapipe's native INFO/WARNING lines (TFLite delegate, absl's pre-init
    # notice, inference_feedback_manager per graph start) go to file descriptor 2 directly.
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "crop", str(grid_clip()), "-o", str(tmp_path / "c.npz"),
                           "--params", str(PARAMS)], capture_output=True, text=True, cwd=PARAMS.parent, check=False)
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["frames_with_face"] == 75


def test_silent_video_is_cropped_without_audio(tmp_path, capsys):
    silent = tmp_path / "silent.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(grid_clip()), "-an", "-c:v", "libx264", str(silent)], check=True)
    code, out, _ = crop(capsys, silent, "-o", tmp_path / "s.npz")
    assert code == 0 and json.loads(out)["audio"] is False and json.loads(out)["frames_with_face"] == 75
    assert np.load(tmp_path / "s.npz")["audio"].size == 0


def make_bad(kind: str, folder: Path) -> Path:
    """A file of one bad kind (made with the ffmpeg binary or by hand)."""
    path = folder / f"{kind}.mp4"
    lavfi = {"no_video": ["-f", "lavfi", "-i", "sine=d=1"], "short": ["-i", str(grid_clip()), "-t", "0.12"]}
    if kind == "junk":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "truncated":
        path = folder / "truncated.mpg"
        path.write_bytes(grid_clip().read_bytes()[:100_000])
    elif kind in lavfi:
        subprocess.run([ffmpeg_exe(), "-v", "error", *lavfi[kind], str(path)], check=True)
    return path


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("junk", "unreadable media: "),
        ("absent", "unreadable media: no such file"),
        ("truncated", "corrupt video: "),
        ("no_video", "no video stream"),
        ("short", "too short: 3 frames at 25 fps"),
    ],
)
def test_bad_file_exits_nonzero_with_one_line(tmp_path, capsys, kind, reason):
    video = make_bad(kind, tmp_path)
    code, out, err = crop(capsys, video, "-o", tmp_path / "x.npz")
    assert code == 1 and out == "" and not (tmp_path / "x.npz").exists()
    assert len(err.strip().splitlines()) == 1 and f"{video}: {reason}" in err


def test_video_without_a_face_exits_nonzero(tmp_path, capsys):
    flat = tmp_path / "flat.mp4"
    lavfi = ["-f", "lavfi", "-i", "color=c=white:s=160x120:r=25:d=1"]
    subprocess.run([ffmpeg_exe(), "-v", "error", *lavfi, "-c:v", "libx264", str(flat)], check=True)
    code, out, err = crop(capsys, flat, "-o", tmp_path / "x.npz")
    assert (code, out) == (1, "") and err.strip().endswith("no face: none of 25 frames has a detected face")


def params_with(folder: Path, **roi: object) -> Path:
    """The pipeline's params.yaml with some `roi:` keys changed, written into `folder`."""
    tree = yaml.safe_load(PARAMS.read_text())
    tree["roi"].update(roi)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_unknown_backend_is_named(tmp_path, capsys):
    params = params_with(tmp_path, backend="dlib")
    code = main(["crop", "any.mp4", "-o", str(tmp_path / "x.npz"), "--params", str(params)])
    assert code == 1 and "unknown roi.backend 'dlib'; choose one of mediapipe, face_alignment" in capsys.readouterr().err


def test_face_alignment_without_weights_says_what_to_place_where(tmp_path, capsys, monkeypatch):
    import torch.hub

    def offline(url, dst, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    params = params_with(tmp_path, backend="face_alignment")
    code = main(["crop", "any.mp4", "-o", str(tmp_path / "x.npz"), "--params", str(params)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert "place s3fd-619a316812.pth and 2DFAN4-11f355bf06.pth.tar (from https://" in err
    assert err.strip().endswith(f") in {folder}") and folder.is_dir()


@pytest.mark.parametrize("args, reason", [
    (["-o", "x.npy"], "written as .npz; name it *.npz"),
    (["-o", "d.npz"], "d.npz is a directory"),
    (["-o", "x.npz", "--preview", "p.gif"], "written as .mp4; name it *.mp4"),
])
def test_crop_refuses_an_output_name_before_the_work(tmp_path, capsys, monkeypatch, args, reason):
    (tmp_path / "d.npz").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pipeline.video.cli.crop_clip", lambda *a, **k: pytest.fail("cropped before refusing"))
    code, out, err = crop(capsys, grid_clip(), *args)
    assert code == 1 and out == "" and reason in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]  # nothing written, hidden or not
