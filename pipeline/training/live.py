"""DVCLive: the one place a training run's metrics, spectrogram and audio samples are logged.

dvc.yaml declares the files itself, so DVCLive must never write dvc.yaml or make experiments.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.training.task import Validation


def open_live(directory: Path, resume: bool) -> Any:
    """A DVCLive run in `directory` that leaves dvc.yaml and experiments alone."""
    from dvclive import Live

    return Live(str(directory), resume=resume, dvcyaml=False, save_dvc_exp=False, report=None)


class Logger:
    """DVCLive metrics, one spectrogram image and one pair of audio samples, overwritten per validation."""

    def __init__(self, directory: Path | None, resume: bool, from_step: int):
        self.live = None
        self.has_summary = False
        if directory is None:
            return
        if resume:
            _truncate_history(directory, from_step)
        else:
            shutil.rmtree(directory / "audio", ignore_errors=True)  # Live clears its own files, not ours
        self.has_summary = (directory / "metrics.json").is_file() and resume
        self.live = open_live(directory, resume)

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.step = step
        for k, v in values.items():
            self.live.log_metric(k, float(v))
        self.live.make_summary()

    def media(self, v: Validation) -> None:
        if self.live is None:
            return
        if v.mel_pred is not None:
            self.live.log_image("spectrogram.png", _spectrogram_figure(v.mel_pred, v.mel_target))
        from pipeline.audio.io import write_wav

        audio_dir = Path(self.live.dir) / "audio"
        for name, wav in (("predicted.wav", v.wav_pred), ("target.wav", v.wav_target)):
            if wav is not None:
                write_wav(audio_dir / name, wav / max(1.0, float(np.abs(wav).max())), v.sample_rate)

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


def _spectrogram_figure(pred: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """RGB image of the predicted log-mel above the target's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("predicted", pred)] + ([("target", target)] if target is not None else [])
    scale = target if target is not None else pred  # one colour scale, so the two are comparable
    fig, axes = plt.subplots(len(rows), 1, figsize=(6, 2.2 * len(rows)), squeeze=False)
    for ax, (title, mel) in zip(axes[:, 0], rows):
        ax.imshow(mel, origin="lower", aspect="auto", interpolation="nearest", vmin=scale.min(), vmax=scale.max())
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def _truncate_history(directory: Path, step: int) -> None:
    """Drop logged rows after `step`: they came from the interrupted run and will be re-logged."""
    for tsv in (directory / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        col = lines[0].split("\t").index("step") if "step" in lines[0].split("\t") else None
        if col is None:
            continue
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[col]) <= step]
        tsv.write_text("\n".join(kept) + "\n", encoding="utf-8")
