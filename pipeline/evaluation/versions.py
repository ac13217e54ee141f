"""Everything a score depends on besides the audio, recorded in every details file
(`reports/metrics/<system>.details.json`).

Peer projects' numbers stopped reproducing over ffmpeg builds, resampling, PESQ packages and
unnamed ASRs; each of those is named here so two details files can be compared honestly.
"""
from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import asdict
from typing import Any

from pipeline.audio.mel import MelConfig
from pipeline.evaluation.checks import CheckConfig
from pipeline.video.probe import ffmpeg_version

PACKAGES = ("pesq", "pystoi", "pocketsphinx", "jiwer", "torch", "torchaudio", "numpy", "scipy", "soundfile")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages the metrics run on, plus Python and ffmpeg."""
    out = {"python": platform.python_version(), "ffmpeg": ffmpeg_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def collect(mel: MelConfig, checks: CheckConfig, corpus: tuple[str, str] | None, asr: dict[str, Any],
            max_offset_s: float) -> dict[str, Any]:
    """The `versions` block of a details file: packages, audio settings, corpus and protocol, ASRs, sync range.

    `corpus` is `(name, protocol)`; None (a pair of files scored by `v2s score`) leaves both out.
    """
    out: dict[str, Any] = {"packages": package_versions(), "sample_rate": mel.sample_rate}
    if corpus is not None:
        out.update(corpus=corpus[0], protocol=corpus[1])
    return {**out, "mel": asdict(mel), "checks": asdict(checks), "max_offset_ms": 1000 * max_offset_s, "asr": asr}
