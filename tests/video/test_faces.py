"""Several faces in view: linking detections into tracks, ranking them, and `--face N` on a real two-face video."""
from __future__ import annotations

import json
import subprocess
from argparse import ArgumentTypeError

import numpy as np
import paths
import pytest

from pipeline.cli import main
from pipeline.config import Params, load_params
from pipeline.video.faces import choice_note, choose, face_number, link, rank
from pipeline.video.landmarks import KEYPOINTS
from pipeline.video.probe import ffmpeg_exe
from pipeline.video.roi import crop_clip, roi_config


def _face(x: float, y: float, eyes: float) -> np.ndarray:
    """Keypoints of a face centred near (x, y) with its outer eye corners `eyes` px apart."""
    points = np.tile([x, y], (len(KEYPOINTS), 1)).astype(float)
    points[KEYPOINTS.index("right_eye_outer"), 0] -= eyes / 2
    points[KEYPOINTS.index("left_eye_outer"), 0] += eyes / 2
    return points


def test_tracks_follow_faces_whatever_order_the_detector_lists_them():
    big, small = _face(100, 120, 40), _face(300, 110, 20)
    # the detector's order swaps every other frame; the small face drifts, the big one leaves for two frames
    frames = [[big + t, small + 2 * t][:: 1 if t % 2 else -1] for t in range(8)]
    frames[3] = [small + 6]
    frames[4] = [small + 8]
    tracks = link(frames)
    assert len(tracks) == 2
    first_x = [t[0, 0, 0] for t in tracks]
    big_track, small_track = tracks[int(np.argmin(np.abs(np.array(first_x) - 80)))], tracks[int(np.argmax(first_x))]
    assert np.isnan(big_track[3:5]).all() and not np.isnan(small_track).any()
    assert np.allclose(small_track[:, 0, 0] - small_track[0, 0, 0], 2 * np.arange(8))  # never a jump to the other face
    faces = rank(tracks, (240, 400))
    assert [f.frames for f in faces] == [8, 6]  # found in more frames beats larger
    assert faces[0].points is small_track and faces[0].width == pytest.approx(20) and faces[1].width == pytest.approx(40)
    assert faces[1].x == pytest.approx((100 + 5.5 + 0.5) / 400, abs=0.02)


def test_equal_presence_ranks_the_larger_face_first_and_a_missing_number_is_refused():
    faces = rank(link([[_face(300, 100, 20), _face(100, 100, 40)]] * 3), (200, 400))
    assert [f.width for f in faces] == pytest.approx([40, 20]) and [f.number for f in faces] == [1, 2]
    assert choose(faces, 2) is faces[1]
    with pytest.raises(ValueError, match="--face 3: 2 faces found in the video"):
        choose(faces, 3)
    assert "2 faces in view; cropped face 1" in choice_note(faces, faces[0], 3)
    assert choice_note(faces[:1], faces[0], 3) is None  # one face: nothing to say
    with pytest.raises(ArgumentTypeError, match="from 1"):
        face_number("0")
    assert face_number("2") == 2


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """A real GRID talker at full size beside another at 3/4 size: one video, two faces."""
    if not paths.GRID.is_dir():
        paths.missing_grid()
    out = tmp_path_factory.mktemp("faces") / "two faces.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(paths.GRID / "bbaf2n.mpg"), "-i", str(paths.GRID / "lrwp9a.mpg"),
                    "-filter_complex", "[1:v]scale=270:216,pad=360:288:45:36[s];[0:v][s]hstack=inputs=2[v]",
                    "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-c:a", "aac", str(out)], check=True)
    return out


def test_two_faces_crop_the_larger_unless_told_and_say_so(two_faces, tmp_path, capsys):
    cfg = roi_config(Params(load_params(paths.PARAMS)))
    first, second = crop_clip(two_faces, cfg, require_audio=False, face=1), crop_clip(two_faces, cfg, require_audio=False, face=2)
    assert len(first.faces) == 2 and first.face.x < 0.5 < second.face.x  # the full-size talker is on the left
    assert first.face.width > 1.05 * second.face.width  # the other talker's face is larger at full size (about 81 px between the eyes against 68)
    assert np.abs(first.mouth.video.astype(float) - second.mouth.video).mean() > 10  # two different mouths
    code = main(["crop", str(two_faces), "-o", str(tmp_path / "c.npz"), "--face", "2", "--params", str(paths.PARAMS)])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["faces"] == 2 and json.loads(out)["face"] == 2
    assert err.startswith("v2s crop: 2 faces in view; cropped face 2") and err.count("\n") == 1
    assert np.load(tmp_path / "c.npz")["video"].tobytes() == second.mouth.video.tobytes()
    code = main(["crop", str(two_faces), "-o", str(tmp_path / "d.npz"), "--face", "3", "--params", str(paths.PARAMS)])
    assert code == 1 and capsys.readouterr().err.strip().endswith("--face 3: 2 faces found in the video")
    assert not (tmp_path / "d.npz").exists()


def test_speak_speaks_the_chosen_face(two_faces, tmp_path, capsys):
    from model_world import model_dir

    model = model_dir(tmp_path / "wavegan", "wavegan")
    for face in (1, 2):
        assert main(["speak", str(two_faces), "--model", str(model), "-o", str(tmp_path / f"{face}.wav"),
                     "--face", str(face)]) == 0
        captured = capsys.readouterr()
        assert f"v2s speak: 2 faces in view; cropped face {face}" in captured.err
        assert json.loads(captured.out.strip().splitlines()[-1])["face"] == face
    assert (tmp_path / "1.wav").read_bytes() != (tmp_path / "2.wav").read_bytes()  # two mouths, two outputs
