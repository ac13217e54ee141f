"""The roi stage gives the same bytes inline, on a local process pool and on a Dask cluster."""
from __future__ import annotations

import os
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


def test_spawned_pool_matches_inline(manifest, inline, tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.executor.start_method", lambda: "spawn")  # the pool off Linux or after CUDA/mediapipe
    assert run(CFG, Executor(workers=2), manifest, tmp_path / "roi").accepted == 5
    assert outputs(tmp_path / "roi") == inline


def test_pool_forks_only_where_it_is_safe(monkeypatch):
    import sys

    from pipeline.executor import start_method

    monkeypatch.delitem(sys.modules, "mediapipe", raising=False)  # the roi tests ran it in this process
    assert start_method() == ("fork" if sys.platform == "linux" else "spawn")
    monkeypatch.setitem(sys.modules, "mediapipe", object())  # its graph threads would not survive a fork
    assert start_method() == "spawn"


def _matmul_sum(seed: int) -> float:
    import torch

    g = torch.Generator().manual_seed(seed)
    a = torch.randn(256, 256, generator=g)
    return float((a @ a).sum())


def test_forked_workers_run_torch_after_the_parent_used_its_thread_pool():
    # a fork after torch's OpenMP pool has run can hang the children; run it in a subprocess so a hang fails
    import subprocess
    import sys

    code = (
        "import torch, test_executor as t\n"
        "from pipeline.executor import Executor, start_method\n"
        "torch.set_num_threads(2); x = torch.randn(512, 512); (x @ x).sum()\n"
        "assert start_method() == 'fork'\n"
        "out = list(Executor(workers=2).imap(t._matmul_sum, range(6)))\n"
        "torch.set_num_threads(1)  # the workers' thread count: the same reduction order\n"
        "assert out == [t._matmul_sum(i) for i in range(6)], out\n"
    )
    if sys.platform != "linux":
        pytest.skip("fork is used on Linux only")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(paths.REPO / "tests"), str(paths.REPO)])}
    done = subprocess.run([sys.executable, "-c", code], cwd=paths.REPO, env=env, timeout=120, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
