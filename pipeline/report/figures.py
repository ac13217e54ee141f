"""The report's pictures as small PNG bytes: spectrogram pairs, training curves, distributions, interval charts."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.audio.mel import MelConfig, log_mel  # noqa: E402

DPI = 72


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # every figure is laid out already; bbox_inches="tight" would draw it twice
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
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.22, top=0.86, wspace=0.05)  # fixed: tight_layout cost a third of the draw
    return _png(fig)


def training_curves(curves: Mapping[str, pd.DataFrame], title: str) -> bytes:
    """One small panel per logged metric (DVCLive `step` against value)."""
    names = sorted(curves)[:8]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.7 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        df = curves[name]
        ax.plot(df["step"], df[df.columns[-1]], lw=1, marker="." if len(df) < 20 else None)  # a lone point shows
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    # fixed margins: tight_layout measured every tick label of every panel, 40% of the report stage's figure time
    fig.subplots_adjust(left=0.2 / cols, right=0.98, bottom=0.15 / rows, top=1 - 0.3 / rows, wspace=0.4, hspace=0.6)
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


class Point(NamedTuple):
    """One system's headline number on one split, with its 95% interval (NaN: none)."""

    system: str
    split: str
    value: float
    lo: float
    hi: float
    reference: bool


def interval_chart(points: Sequence[Point], title: str) -> bytes:
    """Systems top to bottom, each split a marker with its interval; reference rows in grey."""
    systems = list(dict.fromkeys(p.system for p in points))
    splits = list(dict.fromkeys(p.split for p in points))
    fig, ax = plt.subplots(figsize=(3.6, 0.28 * len(systems) + 0.9))
    offsets = np.linspace(-0.18, 0.18, len(splits)) if len(splits) > 1 else np.zeros(1)
    markers = "osD^v"
    for i, split in enumerate(splits):
        for p in (p for p in points if p.split == split and np.isfinite(p.value)):
            y = systems.index(p.system) + offsets[i]
            err = None
            if np.isfinite(p.lo) and np.isfinite(p.hi):  # the value is rounded as in the tables: it may sit a hair outside
                err = [[max(0.0, p.value - p.lo)], [max(0.0, p.hi - p.value)]]
            ax.errorbar(p.value, y, xerr=err, fmt=markers[i % len(markers)], ms=4, lw=1, capsize=2,
                        color="0.55" if p.reference else f"C{i}", label=split if not p.reference else None)
    ax.set_yticks(range(len(systems)), systems, fontsize=7)
    ax.set_ylim(len(systems) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", lw=0.3)
    ax.set_title(title, fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)
