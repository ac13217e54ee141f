"""The roi stage gives the same bytes inline, on a local process pool and on a Dask cluster."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import paths
import pyarrow as pa
import pytest

from pipeline.config import Params, load_params
from pipeline.executor import Executor
from pipeline.manifest import MANIFEST_SCHEMA, write_manifest
from pipeline.video.roi import roi_config, run

GRID = paths.GRID
CFG = replace(roi_config(Params(load_params(paths.PARAMS))), shard_size=2)


def outputs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    if not GRID.is_dir():
        paths.missing_grid()
    clips = sorted(GRID.glob("*.mpg"))
    rows = [
        {
            "utt_id": f"s{i % 2 + 1}_{p.stem}", "corpus": "grid", "speaker": f"s{i % 2 + 1}", "split": "train",
            "source": str(p), "transcript": p.stem, "words": None, "duration": 3.0, "fps": 25.0, "n_frames": 75,
            "width": 360, "height": 288, "audio_sr": 44100, "status": "ok", "reason": None,
        }
        for i, p in enumerate(clips)
    ]
    path = tmp_path_factory.mktemp("manifest") / "manifest.parquet"
    write_manifest(pa.Table.from_pylist(sorted(rows, key=lambda r: r["utt_id"]), schema=MANIFEST_SCHEMA), path)
    return path


@pytest.fixture(scope="module")
def inline(manifest, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("inline") / "roi"
    assert run(CFG, Executor(workers=1), manifest, out).accepted == 5
    return outputs(out)


def test_local_pool_matches_inline(manifest, inline, tmp_path):
    summary = run(CFG, Executor(workers=2), manifest, tmp_path / "roi")
    assert summary.accepted == 5
    assert len(inline) == 4  # s1: 3 clips in 2 shards, s2: 2 clips in 1 shard, and the manifest
    assert outputs(tmp_path / "roi") == inline


def test_dask_cluster_matches_inline(manifest, inline, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert run(CFG, Executor(address=cluster.scheduler_address), manifest, tmp_path / "roi").accepted == 5
    assert outputs(tmp_path / "roi") == inline
