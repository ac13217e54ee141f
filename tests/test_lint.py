"""The linter configured in pyproject.toml passes on the whole tree."""
from __future__ import annotations

import subprocess
import sys

import paths


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=paths.REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
