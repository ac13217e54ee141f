"""The report page: built from the real evaluation world, self-contained, rendered by headless Chromium."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eval_world import eval_world  # noqa: F401 - session fixture
from pipeline.report.build import ReportInputs, ablation_pairs, write_report


@pytest.fixture(scope="module")
def report(eval_world, tmp_path_factory) -> Path:
    paths = eval_world["paths"]
    inputs = ReportInputs(paths.eval, paths.metrics, (paths.asr_live,))
    return write_report(eval_world["params"], inputs, tmp_path_factory.mktemp("report") / "report.html")


def test_ablation_pairs_differ_in_exactly_one_setting():
    specs = {"a": {"family": "melspec", "decoder": "scratch", "separate_bn": True},
             "b": {"family": "melspec", "decoder": "pretrained_finetuned", "separate_bn": True},
             "c": {"family": "melspec", "decoder": "pretrained_frozen", "separate_bn": True},
             "d": {"family": "melspec", "decoder": "pretrained_frozen", "separate_bn": False},
             "e": {"family": "wavegan", "decoder": "pretrained_finetuned", "separate_bn": True}}
    pairs = {(a, b) for _, a, b in ablation_pairs(specs)}
    assert pairs == {("a", "b"), ("a", "c"), ("c", "b"), ("d", "c")}


def test_page_is_self_contained_and_labels_the_demo_corpus(report):
    text = report.read_text(encoding="utf-8")
    assert report.stat().st_size < 5_000_000
    assert "demo corpus: numbers are not comparable to any paper" in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)  # no external resources
    for system in ("ground_truth", "vocoder_ceiling", "mean_mel_baseline", "gl_clean", "gl_noisy", "broken"):
        assert f">{system}<" in text
    assert "pocketsphinx en-US + GRID JSGF grammar" in text and "in-domain word CTC" in text
    assert "pre-trained decoder (fine-tuned) vs. decoder from scratch" in text  # gl_noisy vs gl_clean
    assert "hypothesis silent: every sample is zero" in text  # the broken variant's problems are shown
    assert "Published results" in text and "secondary" in text


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and apt-get cannot run here (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        if proc.returncode != 0:
            pytest.skip(f"could not install chromium: {' '.join(cmd)}: {proc.stderr.strip()[-300:]}")
    return shutil.which("chromium") or pytest.skip("chromium still missing after apt-get install")


def _headless(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_chromium_renders_tables_images_and_audio(report, tmp_path):
    exe = _chromium()
    dom = _headless(exe, tmp_path / "profile", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-500:]
    html = dom.stdout
    assert html.count("<table") >= 6  # two result splits, ablations, listening, issues, versions, published
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", html)) >= 10
    assert len(re.findall(r"<audio [^>]*src=\"data:audio/wav;base64,", html)) == 6 * 2  # 6 systems x 2 utterances
    shot = tmp_path / "report.png"
    result = _headless(exe, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert result.returncode == 0 and shot.stat().st_size > 50_000, result.stderr[-500:]
