"""Mouth crops of real GRID clips: faces found, mouth centred (checked by other detectors), determinism,
and the stage's shards, manifest and failure rules."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import paths
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import Params, load_params
from pipeline.executor import Executor
from pipeline.manifest import MANIFEST_SCHEMA, write_manifest
from pipeline.shards import ShardReader, list_shards, unpack
from pipeline.video.crop import MOUTH, REFERENCE, fill_missing, smooth, transforms
from pipeline.video.decode import ClipError
from pipeline.video.landmarks import KEYPOINTS, MediaPipeMesh, quiet_native_logs
from pipeline.video.roi import crop_clip, roi_config, run

REPO = paths.REPO
GRID = REPO.parent / "shared" / "grid_samples"
ROI = roi_config(Params(load_params(REPO / "params.yaml")))  # the pipeline's own settings
INLINE = Executor(workers=1)
CLIPS = ("bbaf2n", "brbk7n", "lbax4n", "lbbc2a", "lrwp9a")
CENTRE = (96 - 1) / 2


def apply_transform(maps: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (T, K, 2) image points through per-frame 2 x 3 affine maps into crop pixels."""
    return np.einsum("tij,tkj->tki", maps[:, :, :2], points) + maps[:, None, :, 2]


def grid_or_skip() -> Path:
    if not GRID.is_dir():
        paths.missing_grid()
    return GRID


@pytest.fixture(scope="module")
def crops():
    grid = grid_or_skip()
    return {name: crop_clip(grid / f"{name}.mpg", ROI) for name in CLIPS}


def test_every_grid_frame_has_a_face(crops):
    for name, result in crops.items():
        assert result.clip.n_frames == 75, name
        assert not result.mouth.missing.any(), f"{name}: frames without a face {np.flatnonzero(result.mouth.missing)}"
        assert result.mouth.video.shape == (75, 96, 96, 1) and result.mouth.video.dtype == np.uint8


def test_mouth_is_centred_by_a_fresh_static_detection(crops):
    # Static mode: every frame detected afresh, unsmoothed - not the tracked points the crop used.
    static = MediaPipeMesh(static=True)
    left, right = KEYPOINTS.index("mouth_left"), KEYPOINTS.index("mouth_right")
    for name, result in crops.items():
        in_crop = apply_transform(result.mouth.transforms, static.detect(result.clip.frames))
        offset = in_crop[:, MOUTH].mean(axis=1) - CENTRE
        assert np.abs(offset).max() < 3.0, f"{name}: mouth centre off by {np.abs(offset).max(axis=0)} px"
        width = np.linalg.norm(in_crop[:, left] - in_crop[:, right], axis=1)
        assert 0.8 * 48 < width.min() and width.max() < 1.2 * 48, f"{name}: mouth width {width.min()}-{width.max()}"


def test_mouth_is_centred_by_blazeface(crops):
    # BlazeFace is a different model (the face *detector*), with its own mouth-centre keypoint.
    from mediapipe.python.solutions.face_detection import FaceDetection

    with FaceDetection(model_selection=0) as detector:
        for name, result in crops.items():
            frames = result.clip.frames[::3]
            height, width = frames.shape[1:3]
            mouth = []
            for frame in frames:
                key = detector.process(frame).detections[0].location_data.relative_keypoints[3]
                mouth.append([(key.x * width - 0.5, key.y * height - 0.5)])
            offset = apply_transform(result.mouth.transforms[::3], np.array(mouth))[:, 0] - CENTRE
            # BlazeFace's keypoints are coarse (a few px of bias per talker); 8 px is 8% of the crop.
            assert np.abs(offset).max() < 8.0, f"{name}: BlazeFace mouth at {np.abs(offset).max(axis=0)} px off centre"


def test_crops_are_deterministic_whatever_ran_before(crops):
    grid = grid_or_skip()
    crop_clip(grid / "lrwp9a.mpg", ROI)  # leaves tracking state behind, unless reset
    again = crop_clip(grid / "bbaf2n.mpg", ROI)
    first = crops["bbaf2n"]
    assert again.mouth.video.tobytes() == first.mouth.video.tobytes()
    assert again.clip.audio.tobytes() == first.clip.audio.tobytes()


def test_rgb_crops_match_gray_geometry(crops):
    rgb = crop_clip(grid_or_skip() / "bbaf2n.mpg", replace(ROI, gray=False))
    gray = crops["bbaf2n"].mouth
    assert rgb.mouth.video.shape == (75, 96, 96, 3)
    np.testing.assert_array_equal(rgb.mouth.transforms, gray.transforms)
    luma = rgb.mouth.video.astype(float) @ [0.299, 0.587, 0.114]
    assert np.abs(luma - gray.video[..., 0]).max() <= 1.0


def test_native_info_and_warnings_are_held_back_errors_are_not(capfd):
    import os

    with quiet_native_logs():
        with quiet_native_logs():  # nested (or concurrent) blocks share one redirection
            os.write(2, b"W0000 00:00:1796402093.776559    5331 inference_feedback_manager.cc:114] Feedback manager\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796402093.8    5332 gl_context.cc:369] GL version: 3.2\n")
        os.write(2, b"E0000 00:00:1796402093.9    5332 calculator_graph.cc:887] real trouble\n")
        os.write(2, b"a line of our own\n")
    os.write(2, b"after the block\n")
    assert capfd.readouterr().err == (
        "E0000 00:00:1796402093.9    5332 calculator_graph.cc:887] real trouble\na line of our own\nafter the block\n"
    )


def test_fill_missing_interpolates_inside_and_copies_at_the_ends():
    points = np.arange(6 * len(KEYPOINTS) * 2, dtype=float).reshape(6, len(KEYPOINTS), 2)
    holey = points.copy()
    holey[[0, 2]] = np.nan
    filled, missing = fill_missing(holey, max_missing=0.4)
    assert missing.tolist() == [True, False, True, False, False, False]
    np.testing.assert_allclose(filled[2], (points[1] + points[3]) / 2)
    np.testing.assert_allclose(filled[0], points[1])
    with pytest.raises(ClipError, match=r"^face missing: 2 of 6 frames"):
        fill_missing(holey, max_missing=0.3)
    with pytest.raises(ClipError, match=r"^no face: none of 6 frames"):
        fill_missing(np.full_like(points, np.nan), max_missing=1.0)


def test_smooth_is_a_centred_mean_with_shrinking_ends():
    track = np.array([0.0, 0.0, 9.0, 0.0, 0.0, 3.0])[:, None, None]
    out = smooth(track, 3)[:, 0, 0]
    np.testing.assert_allclose(out, [0.0, 3.0, 3.0, 3.0, 1.0, 1.5])
    assert smooth(track, 1) is track


def test_transform_undoes_a_known_similarity():
    cfg = ROI.crop
    angle, scale, shift = np.radians(20), 3.0, np.array([150.0, 80.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    face = (REFERENCE @ rot.T) * scale + shift  # the reference face, rotated, scaled and moved
    (m,) = transforms(face[None], cfg)
    mapped = face @ m[:, :2].T + m[:, 2]
    expected_scale = cfg.mouth_width * cfg.size / np.linalg.norm(REFERENCE[6] - REFERENCE[5])
    mouth_ref = REFERENCE[MOUTH].mean(axis=0)
    np.testing.assert_allclose(mapped, (REFERENCE - mouth_ref) * expected_scale + CENTRE, atol=1e-9)


def grid_manifest(path: Path, names: tuple[str, ...], extra: list[dict] | None = None) -> Path:
    rows = [
        {
            "utt_id": f"s{i % 2 + 1}_{name}", "corpus": "grid", "speaker": f"s{i % 2 + 1}",
            "split": "train" if i < 3 else "test", "source": str(GRID / f"{name}.mpg"), "transcript": name,
            "words": None, "duration": 3.0, "fps": 25.0, "n_frames": 75, "width": 360, "height": 288,
            "audio_sr": 44100, "status": "ok", "reason": None,
        }
        for i, name in enumerate(names)
    ]
    rows = sorted(rows + (extra or []), key=lambda r: r["utt_id"])  # as the prepare stage writes it
    write_manifest(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), path)
    return path


def test_stage_writes_shards_and_manifest_per_contract(tmp_path, crops):
    grid_or_skip()
    prior_reject = {
        "utt_id": "s9_bad", "corpus": "grid", "speaker": "s9", "split": None, "source": "x.mpg", "transcript": None,
        "words": None, "duration": None, "fps": None, "n_frames": None, "width": None, "height": None,
        "audio_sr": None, "status": "rejected", "reason": "no video stream",
    }
    manifest = grid_manifest(tmp_path / "manifest.parquet", CLIPS, [prior_reject])
    summary = run(replace(ROI, shard_size=2), INLINE, manifest, tmp_path / "roi")
    assert (summary.clips, summary.accepted, summary.frames, summary.failed) == (5, 5, 375, False)
    shards = [p.relative_to(tmp_path / "roi" / "shards").as_posix() for p in list_shards(tmp_path / "roi" / "shards")]
    # s1: bbaf2n, lbax4n (train), lrwp9a (test); s2: brbk7n (train), lbbc2a (test); at most 2 per shard.
    assert shards == ["test/s1-000.parquet", "test/s2-000.parquet", "train/s1-000.parquet", "train/s2-000.parquet"]
    assert summary.shards == 4
    out = pq.read_table(tmp_path / "roi" / "manifest.parquet").to_pylist()
    assert [r["utt_id"] for r in out] == ["s1_bbaf2n", "s1_lbax4n", "s1_lrwp9a", "s2_brbk7n", "s2_lbbc2a", "s9_bad"]
    assert out[-1]["status"] == "rejected" and out[-1]["shard"] is None and out[-1]["reason"] == "no video stream"
    for r in out[:-1]:
        reader = ShardReader(tmp_path / "roi" / "shards" / r["shard"])
        row = reader.read(r["row"])
        assert row["utt_id"] == r["utt_id"] and r["status"] == "ok"
        name = r["utt_id"].split("_")[1]
        assert unpack(row, "video").tobytes() == crops[name].mouth.video.tobytes()
        audio = unpack(row, "audio")
        assert audio.dtype == np.float32 and len(audio) == row["n_frames"] * row["sample_rate"] // row["fps"]
        assert row["audio_pad"] == crops[name].clip.audio_pad and row["missing_frames"] == 0
        assert (row["speaker"], row["split"], row["transcript"]) == (r["speaker"], r["split"], name)


def test_stage_fails_only_above_the_reject_fraction(tmp_path):
    grid_or_skip()
    missing_file = {
        "utt_id": "s3_gone", "corpus": "grid", "speaker": "s3", "split": "train", "source": str(tmp_path / "gone.mpg"),
        "transcript": "x", "words": None, "duration": 3.0, "fps": 25.0, "n_frames": 75, "width": 360,
        "height": 288, "audio_sr": 44100, "status": "ok", "reason": None,
    }
    manifest = grid_manifest(tmp_path / "manifest.parquet", CLIPS[:1], [missing_file])
    strict = run(replace(ROI, max_reject_fraction=0.4), INLINE, manifest, tmp_path / "a")
    lenient = run(replace(ROI, max_reject_fraction=0.5), INLINE, manifest, tmp_path / "b")
    assert (strict.rejected, strict.failed, lenient.failed) == (1, True, False)
    assert "1 of 2 clips cropped" in strict.line() and "unreadable media: 1" in strict.line()
    row = pq.read_table(tmp_path / "a" / "manifest.parquet").to_pylist()[1]
    assert row["status"] == "rejected" and row["reason"].startswith("unreadable media: no such file")


def test_stage_main_exits_nonzero_with_a_summary(tmp_path, monkeypatch, capsys):
    from stages.roi import main

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["executor"]["workers"] = 1
    params["roi"]["max_reject_fraction"] = 0.0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    bad = {
        "utt_id": "s1_junk", "corpus": "grid", "speaker": "s1", "split": "train", "source": "junk.mpg",
        "transcript": "x", "words": None, "duration": 1.0, "fps": 25.0, "n_frames": 25, "width": 64,
        "height": 48, "audio_sr": 16000, "status": "ok", "reason": None,
    }
    Path("junk.mpg").write_bytes(b"\x00\x01" * 5000)
    write_manifest(pa.Table.from_pylist([bad], schema=MANIFEST_SCHEMA), "data/manifest.parquet")
    assert main([]) == 1
    assert capsys.readouterr().err.startswith("roi: 1 of 1 clips rejected, more than roi.max_reject_fraction=0.0")
    assert pq.read_table("data/roi/manifest.parquet").column("status").to_pylist() == ["rejected"]


def test_interrupted_stage_leaves_previous_outputs_untouched(tmp_path, monkeypatch):
    grid_or_skip()
    import pipeline.video.roi as roi

    out = tmp_path / "roi"
    out.mkdir()
    (out / "manifest.parquet").write_text("previous run")
    manifest = grid_manifest(tmp_path / "manifest.parquet", CLIPS[:2])

    def interrupted(path, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(roi, "write_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(ROI, INLINE, manifest, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.parquet", "roi"]
    assert [p.name for p in out.iterdir()] == ["manifest.parquet"]
    assert (out / "manifest.parquet").read_text() == "previous run"
