"""The report's pictures as small PNG bytes: spectrogram pairs, training curves, metric distributions."""
from __future__ import annotations

import io
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.audio.mel import MelConfig, log_mel  # noqa: E402

DPI = 72


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def spectrogram_pair(reference: np.ndarray, synthesis: np.ndarray, cfg: MelConfig, title: str) -> bytes:
    """Log-mel of the ground truth and of the synthesis side by side, on one colour scale."""
    a, b = log_mel(reference, cfg), log_mel(synthesis, cfg)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    seconds = len(reference) / cfg.sample_rate
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 1.9), sharey=True)
    for ax, m, name in zip(axes, (a, b), ("ground truth", title)):
        ax.imshow(m, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma", extent=(0, seconds, 0, m.shape[0]))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("mel band", fontsize=8)
    return _png(fig)


def training_curves(curves: Mapping[str, pd.DataFrame], title: str) -> bytes:
    """One small panel per logged metric (DVCLive `step` against value)."""
    names = sorted(curves)[:8]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.7 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        df = curves[name]
        ax.plot(df["step"], df[df.columns[-1]], lw=1)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def distributions(per_system: Mapping[str, pd.DataFrame], metrics: Sequence[str], split: str) -> bytes:
    """Box plots of per-utterance scores of every system for one split (scored utterances only)."""
    systems = list(per_system)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 0.35 * len(systems) + 1.0), sharey=True,
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        data = [per_system[s].loc[per_system[s]["scored"] & (per_system[s]["split"] == split), metric].dropna()
                for s in systems]
        ax.boxplot([d.to_numpy() if len(d) else np.array([np.nan]) for d in data], orientation="horizontal", widths=0.6,
                   showfliers=True, flierprops={"markersize": 2})
        ax.set_title(f"{metric} ({split})", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(1, len(systems) + 1), systems, fontsize=7)
    fig.tight_layout()
    return _png(fig)
