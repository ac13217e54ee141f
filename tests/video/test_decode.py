"""Decoding: constant frame rate, size limits, orientation, and audio fitted to the frames."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import paths
import pytest

from pipeline.audio.io import read_media_audio
from pipeline.video.decode import ClipError, FrameStream, decode_clip, decode_frames
from pipeline.video.probe import ffmpeg_exe

GRID = paths.GRID


def ffmpeg(out: Path, *args: str) -> Path:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args, str(out)], check=True)
    return out


def grid_clip() -> Path:
    if not GRID.is_dir():
        paths.missing_grid()
    return GRID / "bbaf2n.mpg"


def test_grid_clip_frames_and_audio():
    clip = decode_clip(grid_clip(), fps=25, sample_rate=16000, max_side=640, min_frames=10)
    assert clip.frames.shape == (75, 288, 360, 3) and clip.frames.dtype == np.uint8
    raw = read_media_audio(grid_clip(), 16000)
    assert clip.audio.dtype == np.float32 and len(clip.audio) == 75 * 640
    assert clip.audio_pad == 75 * 640 - len(raw) > 0  # GRID's audio ends a few ms before its video
    np.testing.assert_array_equal(clip.audio[: len(raw)], raw)
    assert not clip.audio[len(raw):].any()


def test_30fps_source_is_resampled_to_nearest_frames(tmp_path):
    # Frame N has luma 16 + 3N (distinct, inside TV range); lossless, so each output frame is one source frame.
    gen = "nullsrc=s=64x48:r=30:d=2,geq=lum='16+3*N':cb=128:cr=128"
    src = ffmpeg(tmp_path / "t30.mkv", "-f", "lavfi", "-i", gen, "-c:v", "ffv1")
    at30, _ = decode_frames(src, 30, 640)
    at25, _ = decode_frames(src, 25, 640)
    assert len(at30) == 60 and len(at25) == 50
    flat30 = at30.reshape(len(at30), -1)
    for k, frame in enumerate(at25):
        matches = np.flatnonzero((flat30 == frame.reshape(-1)).all(axis=1))
        assert len(matches) == 1, f"25 fps frame {k} is not one source frame"
        assert abs(matches[0] / 30 - k / 25) <= 1 / 60 + 1e-9


def test_large_and_portrait_videos_keep_aspect_under_max_side(tmp_path):
    wide = ffmpeg(tmp_path / "wide.mp4", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25:d=0.4", "-c:v", "libx264")
    tall = ffmpeg(tmp_path / "tall.mp4", "-f", "lavfi", "-i", "testsrc2=s=720x1280:r=25:d=0.4", "-c:v", "libx264")
    small = ffmpeg(
        tmp_path / "small.mkv", "-f", "lavfi", "-i", "testsrc2=s=200x150:r=25:d=0.4", "-vf", "scale=201:151",
        "-c:v", "ffv1", "-pix_fmt", "yuv444p",
    )
    assert decode_frames(wide, 25, 640)[0].shape == (10, 360, 640, 3)
    assert decode_frames(tall, 25, 640)[0].shape == (10, 640, 360, 3)
    assert decode_frames(small, 25, 640)[0].shape == (10, 151, 201, 3)  # odd sizes are never rescaled


def test_rotated_phone_video_comes_out_upright(tmp_path):
    coded = ffmpeg(tmp_path / "coded.mp4", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=0.4", "-c:v", "libx264")
    rotated = ffmpeg(tmp_path / "rotated.mp4", "-display_rotation", "90", "-i", str(coded), "-c", "copy")
    frames, _ = decode_frames(rotated, 25, 640)
    assert frames.shape == (10, 320, 240, 3)


@pytest.mark.parametrize("audio_seconds, pad", [(1.5, 8000), (2.5, -8000)])
def test_audio_is_padded_or_cut_to_the_video(tmp_path, audio_seconds, pad):
    clip_path = ffmpeg(
        tmp_path / "av.mkv", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2",
        "-f", "lavfi", "-i", f"sine=f=440:r=16000:d={audio_seconds}", "-c:v", "ffv1", "-c:a", "pcm_s16le",
    )
    clip = decode_clip(clip_path, fps=25, sample_rate=16000, max_side=640, min_frames=10)
    assert clip.n_frames == 50 and len(clip.audio) == 32000 and clip.audio_pad == pad
    spectrum = np.abs(np.fft.rfft(clip.audio[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 1


def test_silent_video_needs_audio_only_when_required(tmp_path):
    silent = ffmpeg(tmp_path / "silent.mp4", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1", "-c:v", "libx264")
    with pytest.raises(ClipError, match="^no audio stream$"):
        decode_clip(silent, 25, 16000, 640, 10)
    clip = decode_clip(silent, 25, 16000, 640, 10, require_audio=False)
    assert clip.audio is None and clip.n_frames == 25


def test_streamed_frames_are_the_decoded_bytes_and_refuse_what_decoding_refuses(tmp_path):
    frames, _ = decode_frames(grid_clip(), 25, 640)
    stream = FrameStream(grid_clip(), 25, 640, chunk=7)
    chunks = list(stream)
    assert [len(c) for c in chunks] == [7] * 10 + [5]
    assert stream.frame_size == (288, 360) and stream.has_audio
    np.testing.assert_array_equal(np.concatenate(chunks), frames)
    truncated = tmp_path / "truncated.mpg"
    truncated.write_bytes(grid_clip().read_bytes()[:20000])
    with pytest.raises(ClipError, match="^corrupt video: ") as decoded:
        decode_frames(truncated, 25, 640)
    with pytest.raises(ClipError, match="^corrupt video: ") as streamed:
        list(FrameStream(truncated, 25, 640))
    assert str(streamed.value) == str(decoded.value)
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ClipError, match="^unreadable media: "):
        list(FrameStream(tmp_path / "text.mp4", 25, 640))
