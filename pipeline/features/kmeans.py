"""k-means speech units: a seeded MiniBatchKMeans fit, and nearest-centroid labels.

The fit follows fairseq's HuBERT recipe (`simple_kmeans/learn_kmeans.py`): k-means++ init,
several inits, no reassignment, a fixed `random_state`, so the same frames and seed give the
same centroids.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class KMeansConfig:
    """MiniBatchKMeans settings (`units.kmeans` in params.yaml; fairseq's values there)."""

    batch_size: int
    max_iter: int
    n_init: int
    max_no_improvement: int


@dataclass(frozen=True)
class KMeansFit:
    """Fitted centroids and how they were obtained."""

    centroids: np.ndarray
    inertia: float
    frames: int


def fit_kmeans(frames: np.ndarray, cfg: KMeansConfig, clusters: int, seed: int) -> KMeansFit:
    """Fit `clusters` centroids to `frames` (N, D); needs at least as many frames as clusters."""
    from sklearn.cluster import MiniBatchKMeans

    if frames.ndim != 2 or len(frames) < clusters:
        raise ValueError(f"k-means needs at least units.clusters={clusters} frames to fit, got {len(frames)}: "
                         "lower units.clusters or raise units.fit_fraction / units.max_fit_frames")
    km = MiniBatchKMeans(n_clusters=clusters, init="k-means++", max_iter=cfg.max_iter, batch_size=cfg.batch_size,
                         tol=0.0, max_no_improvement=cfg.max_no_improvement, n_init=cfg.n_init,
                         reassignment_ratio=0.0, compute_labels=False, random_state=seed)
    x = np.ascontiguousarray(frames, dtype=np.float32)
    km.fit(x)
    centroids = km.cluster_centers_.astype(np.float32)
    return KMeansFit(centroids, float(((x - centroids[assign(x, centroids)]) ** 2).sum()), len(x))


def assign(frames: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of each frame, as int64."""
    x = np.asarray(frames, dtype=np.float32)
    dist = (x * x).sum(1, keepdims=True) - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)
    return dist.argmin(axis=1)


def describe(cfg: KMeansConfig, clusters: int, fit: KMeansFit, seed: int) -> dict[str, Any]:
    """The fit's settings and result, for the stage's metadata."""
    import sklearn

    return {"algorithm": "sklearn.cluster.MiniBatchKMeans", "sklearn": sklearn.__version__, "seed": seed,
            "clusters": clusters, "batch_size": cfg.batch_size, "max_iter": cfg.max_iter, "n_init": cfg.n_init,
            "max_no_improvement": cfg.max_no_improvement, "frames": fit.frames, "inertia": fit.inertia}
