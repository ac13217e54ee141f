"""What a media file holds, read from ffmpeg's own report (imageio-ffmpeg ships no ffprobe)."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache

import imageio_ffmpeg


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the static ffmpeg binary shipped in the imageio-ffmpeg wheel."""
    return imageio_ffmpeg.get_ffmpeg_exe()


@lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    """First line of `ffmpeg -version`, recorded in metrics so numbers can be reproduced."""
    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


@dataclass(frozen=True)
class MediaInfo:
    """Streams of a container: `None` fields mean the stream is absent."""

    duration: float | None
    fps: float | None
    width: int | None
    height: int | None
    audio_sr: int | None
    audio_channels: int | None

    @property
    def has_video(self) -> bool:
        return self.width is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_sr is not None


class ProbeError(RuntimeError):
    """ffmpeg could not read the file at all."""


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: .*?(\d+) Hz, ([^,]+)")


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Streams, size, rate and duration of a media file; `ProbeError` if ffmpeg cannot open it."""
    if not os.path.isfile(path):
        raise ProbeError(f"no such file: {path}")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", os.fspath(path)], capture_output=True, text=True, check=False)
    report = proc.stderr
    if "Input #0" not in report:
        last = report.strip().splitlines()[-1] if report.strip() else "unknown error"
        raise ProbeError(f"ffmpeg cannot read {path}: {last}")
    duration = None
    if m := _DURATION.search(report):
        duration = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    width = height = None
    fps = None
    if m := _VIDEO.search(report):
        width, height = int(m[1]), int(m[2])
        line = report[m.start() : report.find("\n", m.start())]
        if f := _FPS.search(line):
            fps = float(f[1])
    audio_sr = channels = None
    if m := _AUDIO.search(report):
        audio_sr = int(m[1])
        layout = m[2].strip()
        channels = {"mono": 1, "stereo": 2}.get(layout)
        if channels is None and (c := re.match(r"(\d+)", layout)):
            channels = int(c[1])
    return MediaInfo(duration, fps, width, height, audio_sr, channels)
