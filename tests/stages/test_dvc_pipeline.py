"""The real DVC pipeline on a tiny demo corpus: builds from nothing, then a re-run is a no-op."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import paths
import pytest
import yaml

ROOT = paths.REPO
STAGES = ["download", "prepare", "roi"]


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git + DVC checkout of the tracked project files, with a 2-speaker x 4-clip demo corpus."""
    dest = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    demo = params["corpus"]["demo"]
    demo["speakers"] = dict(list(demo["speakers"].items())[:2])
    demo["utterances_per_speaker"] = 4
    params["protocols"]["demo"]["hold_out"] = 1  # the demo corpus sees every voice; this keeps the unseen path in the run
    params["executor"]["workers"] = 1
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], dest)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x", "--allow-empty"], dest)
    return dest


def test_repro_builds_then_is_a_no_op(project):
    first = _run([sys.executable, "-m", "dvc", "repro", *STAGES], project)
    assert all(f"Running stage '{s}'" in first for s in STAGES)
    import pandas as pd

    manifest = pd.read_parquet(project / "data/roi/manifest.parquet")
    assert len(manifest) == 8 and (manifest["status"] == "ok").all()
    assert set(manifest["split"]) >= {"train", "unseen"}
    # cache.type hardlink: the workspace output is the cache's file, not a second copy of it
    shard = next((project / "data/roi").rglob("*.parquet"))
    assert shard.stat().st_nlink == 2 and shard.stat().st_mode & 0o222 == 0  # read-only: edits would reach the cache
    second = _run([sys.executable, "-m", "dvc", "repro", *STAGES], project)
    assert "Running stage" not in second and "up to date" in second
    status = _run([sys.executable, "-m", "dvc", "status", *STAGES], project)
    assert "changed" not in status
