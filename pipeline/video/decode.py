"""Decoding a clip: RGB frames at a constant frame rate and its audio fitted to exactly those frames.

ffmpeg (the imageio-ffmpeg static binary, driven through ffmpeg-python) does all resampling
of time and space, so every clip of every corpus reaches the landmark detector the same way:
`fps` frames per second whatever the source rate, rotated upright (ffmpeg's autorotate), and
never larger than `max_side` pixels on its longer side.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import ffmpeg
import numpy as np

from pipeline.audio.io import fit_length, read_media_audio
from pipeline.video.probe import ffmpeg_exe


class ClipError(ValueError):
    """A clip that cannot be used; the message is the reason recorded for it ("kind: detail")."""


@dataclass(frozen=True)
class Clip:
    """Decoded frames (T x H x W x 3, uint8 RGB) and mono audio of exactly T * sr / fps samples."""

    frames: np.ndarray
    fps: int
    audio: np.ndarray | None
    sample_rate: int
    audio_pad: int

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


_OUT_SIZE = re.compile(r"Video: rawvideo.*?, (\d{1,5})x(\d{1,5})\b")
_LEVEL = re.compile(r"\[(error|fatal|panic)\] (.*)")


def decode_frames(path: str | os.PathLike[str], fps: int, max_side: int) -> tuple[np.ndarray, bool]:
    """RGB frames at `fps` (T x H x W x 3, uint8) and whether the file has an audio stream.

    Raises `ClipError` when ffmpeg cannot read the file, finds no video stream, or reports a
    decoding error (a truncated or damaged stream: its concealed frames are not the talker).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ClipError(f"unreadable media: no such file {path}")
    scale = {"w": f"min(iw,{max_side})", "h": f"min(ih,{max_side})", "force_original_aspect_ratio": "decrease"}
    stream = (
        ffmpeg.input(path, nostdin=None, hide_banner=None, loglevel="level+info", threads=1)
        .video.filter("fps", fps=fps)
        # square pixels first: a non-square sample aspect ratio (anamorphic encodes) would stretch the face;
        # with square pixels this scale changes nothing and ffmpeg passes the frames through untouched
        .filter("scale", "round(iw*sar)", "ih", flags="area")
        .filter("setsar", "1")
        .filter("scale", flags="area", **scale)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
    )
    try:
        out, err = stream.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        raise ClipError(_failure_reason(exc.stderr.decode(errors="replace"))) from None
    report = err.decode(errors="replace")
    errors = _LEVEL.findall(report)
    if errors:
        raise ClipError(f"corrupt video: {errors[0][1].strip()}")
    size = _OUT_SIZE.search(report[report.find("Output #0") :])
    if size is None:
        raise ClipError("unreadable media: ffmpeg reported no output frame size")
    width, height = int(size[1]), int(size[2])
    frame_bytes = width * height * 3
    if not out or len(out) % frame_bytes:
        raise ClipError(f"corrupt video: {len(out)} bytes of frames is not a whole number of {width}x{height} frames")
    frames = np.frombuffer(out, dtype=np.uint8).reshape(-1, height, width, 3)
    return frames, _has_audio(report)


def decode_clip(
    path: str | os.PathLike[str], fps: int, sample_rate: int, max_side: int, min_frames: int, require_audio: bool = True
) -> Clip:
    """Frames and audio of one clip; the audio is cut or zero-padded to the frames' duration.

    Without an audio stream, `require_audio=False` gives `audio=None` (a silent video to speak
    for); otherwise it is a `ClipError`, like a clip shorter than `min_frames`.
    """
    frames, has_audio = decode_frames(path, fps, max_side)
    if len(frames) < min_frames:
        raise ClipError(f"too short: {len(frames)} frames at {fps} fps, fewer than roi.min_frames={min_frames}")
    if not has_audio:
        if require_audio:
            raise ClipError("no audio stream")
        return Clip(frames, fps, None, sample_rate, 0)
    # n_frames * sr / fps is whole for every supported pair (16 kHz / 25 fps: 640 per frame).
    length = round(len(frames) * sample_rate / fps)
    try:
        audio, pad = fit_length(read_media_audio(path, sample_rate), length)
    except RuntimeError as exc:
        raise ClipError(f"unreadable audio: {exc}") from None
    return Clip(frames, fps, audio, sample_rate, pad)


def _has_audio(report: str) -> bool:
    inputs = report[: report.find("Output #0")] if "Output #0" in report else report
    return bool(re.search(r"Stream #0:\d+.*: Audio: ", inputs))


def _failure_reason(report: str) -> str:
    if "Input #0" in report and not re.search(r"Stream #0:\d+.*: Video: ", report):
        return "no video stream"
    errors = [m[1].strip() for m in _LEVEL.findall(report)]
    detail = errors[0] if errors else (report.strip().splitlines() or ["ffmpeg failed"])[-1]
    return f"unreadable media: {detail}"
