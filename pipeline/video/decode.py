"""Decoding a clip: RGB frames at a constant frame rate and its audio fitted to exactly those frames.

ffmpeg (the imageio-ffmpeg static binary, driven through ffmpeg-python) does all resampling
of time and space, so every clip of every corpus reaches the landmark detector the same way:
`fps` frames per second whatever the source rate, rotated upright (ffmpeg's autorotate), and
never larger than `max_side` pixels on its longer side.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ffmpeg
import numpy as np

from pipeline.audio.io import fit_length, read_media_audio
from pipeline.video.probe import ffmpeg_exe


class ClipError(ValueError):
    """A clip that cannot be used; the message is the reason recorded for it ("kind: detail")."""


@dataclass(frozen=True)
class Clip:
    """Decoded frames (T x H x W x 3, uint8 RGB; None when they were streamed, never held whole) and
    mono audio of exactly T * sr / fps samples."""

    frames: np.ndarray | None
    n_frames: int
    fps: int
    audio: np.ndarray | None
    sample_rate: int
    audio_pad: int


_OUT_SIZE = re.compile(r"Video: rawvideo.*?, (\d{1,5})x(\d{1,5})\b")
_LEVEL = re.compile(r"\[(error|fatal|panic)\] (.*)")


def _frames_command(path: str, fps: int, max_side: int) -> Any:
    """The ffmpeg graph of every decode: RGB frames at `fps`, square pixels, at most `max_side` px."""
    scale = {"w": f"min(iw,{max_side})", "h": f"min(ih,{max_side})", "force_original_aspect_ratio": "decrease"}
    return (
        ffmpeg.input(path, nostdin=None, hide_banner=None, loglevel="level+info", threads=1)
        .video.filter("fps", fps=fps)
        # square pixels first: a non-square sample aspect ratio (anamorphic encodes) would stretch the face;
        # with square pixels this scale changes nothing and ffmpeg passes the frames through untouched
        .filter("scale", "round(iw*sar)", "ih", flags="area")
        .filter("setsar", "1")
        .filter("scale", flags="area", **scale)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
    )


def _existing(path: str | os.PathLike[str]) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ClipError(f"unreadable media: no such file {path}")
    return path


def decode_frames(path: str | os.PathLike[str], fps: int, max_side: int) -> tuple[np.ndarray, bool]:
    """RGB frames at `fps` (T x H x W x 3, uint8) and whether the file has an audio stream.

    Raises `ClipError` when ffmpeg cannot read the file, finds no video stream, or reports a
    decoding error (a truncated or damaged stream: its concealed frames are not the talker).
    """
    stream = _frames_command(_existing(path), fps, max_side)
    try:
        out, err = stream.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        raise ClipError(_failure_reason(exc.stderr.decode(errors="replace"))) from None
    report = err.decode(errors="replace")
    errors = _LEVEL.findall(report)
    if errors:
        raise ClipError(f"corrupt video: {errors[0][1].strip()}")
    size = _OUT_SIZE.search(_after_output(report))
    if size is None:
        raise ClipError("unreadable media: ffmpeg reported no output frame size")
    width, height = int(size[1]), int(size[2])
    frame_bytes = width * height * 3
    if not out or len(out) % frame_bytes:
        raise ClipError(f"corrupt video: {len(out)} bytes of frames is not a whole number of {width}x{height} frames")
    frames = np.frombuffer(out, dtype=np.uint8).reshape(-1, height, width, 3)
    return frames, _has_audio(report)


class FrameStream:
    """The frames of `decode_frames`, the same bytes, in chunks of up to `chunk` (n x H x W x 3) as it is
    iterated: a long video never sits in memory whole. `frame_size` (H, W) is known from the first chunk,
    `has_audio` once the stream has ended; a decoding error is a `ClipError` then."""

    def __init__(self, path: str | os.PathLike[str], fps: int, max_side: int, chunk: int = 64):
        self.command = _frames_command(_existing(path), fps, max_side).compile(cmd=ffmpeg_exe())
        self.chunk = chunk
        self.frame_size: tuple[int, int] | None = None
        self.has_audio: bool | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        report: list[bytes] = []
        # stderr is drained beside stdout, or ffmpeg would block on a full pipe while we wait for frames
        reader = threading.Thread(target=lambda: report.extend(iter(proc.stderr.readline, b"")), daemon=True)
        reader.start()
        try:
            frame_bytes, n = 0, 0
            while True:
                if not frame_bytes:
                    first = proc.stdout.read(1)  # the output's size is printed before its first frame
                    if not first:
                        break
                    size = _wait_for_size(report, reader)
                    if size is None:
                        raise ClipError("unreadable media: ffmpeg reported no output frame size")
                    self.frame_size = (int(size[2]), int(size[1]))
                    frame_bytes = self.frame_size[0] * self.frame_size[1] * 3
                    data = first + proc.stdout.read(frame_bytes * self.chunk - 1)
                else:
                    data = proc.stdout.read(frame_bytes * self.chunk)
                if not data:
                    break
                if len(data) % frame_bytes:
                    height, width = self.frame_size
                    raise ClipError(f"corrupt video: {n * frame_bytes + len(data)} bytes of frames is not a whole "
                                    f"number of {width}x{height} frames")
                frames = np.frombuffer(data, dtype=np.uint8).reshape(-1, *self.frame_size, 3)
                n += len(frames)
                yield frames
            proc.wait()
            reader.join()
            text = b"".join(report).decode(errors="replace")
            if proc.returncode:
                raise ClipError(_failure_reason(text))
            if errors := _LEVEL.findall(text):
                raise ClipError(f"corrupt video: {errors[0][1].strip()}")
            if not n:
                raise ClipError("unreadable media: no video frames")
            self.has_audio = _has_audio(text)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _after_output(report: str) -> str:
    return report[report.find("Output #0") :]


def _wait_for_size(report: list[bytes], reader: threading.Thread) -> re.Match[str] | None:
    # ffmpeg prints the output's size before its first frame, but the reader may not have taken it in yet
    while True:
        size = _OUT_SIZE.search(_after_output(b"".join(report).decode(errors="replace")))
        if size is not None or not reader.is_alive():
            return size
        reader.join(0.001)


def decode_clip(
    path: str | os.PathLike[str], fps: int, sample_rate: int, max_side: int, min_frames: int, require_audio: bool = True
) -> Clip:
    """Frames and audio of one clip; the audio is cut or zero-padded to the frames' duration.

    Without an audio stream, `require_audio=False` gives `audio=None` (a silent video to speak
    for); otherwise it is a `ClipError`, like a clip shorter than `min_frames`.
    """
    frames, has_audio = decode_frames(path, fps, max_side)
    check_length(len(frames), fps, min_frames)
    audio, pad = clip_audio(path, len(frames), fps, sample_rate, has_audio, require_audio)
    return Clip(frames, len(frames), fps, audio, sample_rate, pad)


def check_length(n_frames: int, fps: int, min_frames: int) -> None:
    if n_frames < min_frames:
        raise ClipError(f"too short: {n_frames} frames at {fps} fps, fewer than roi.min_frames={min_frames}")


def clip_audio(path: str | os.PathLike[str], n_frames: int, fps: int, sample_rate: int, has_audio: bool,
               require_audio: bool) -> tuple[np.ndarray | None, int]:
    """The audio of `n_frames` frames and the zero samples padded to reach it; `(None, 0)` for a silent
    video when `require_audio` is False."""
    if not has_audio:
        if require_audio:
            raise ClipError("no audio stream")
        return None, 0
    # n_frames * sr / fps is whole for every supported pair (16 kHz / 25 fps: 640 per frame).
    length = round(n_frames * sample_rate / fps)
    try:
        return fit_length(read_media_audio(path, sample_rate), length)
    except RuntimeError as exc:
        raise ClipError(f"unreadable audio: {exc}") from None


def _has_audio(report: str) -> bool:
    inputs = report[: report.find("Output #0")] if "Output #0" in report else report
    return bool(re.search(r"Stream #0:\d+.*: Audio: ", inputs))


def _failure_reason(report: str) -> str:
    if "Input #0" in report and not re.search(r"Stream #0:\d+.*: Video: ", report):
        return "no video stream"
    errors = [m[1].strip() for m in _LEVEL.findall(report)]
    detail = errors[0] if errors else (report.strip().splitlines() or ["ffmpeg failed"])[-1]
    return f"unreadable media: {detail}"
