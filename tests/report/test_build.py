"""The report page: built from the real evaluation world, self-contained, rendered by headless Chromium."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from eval_world import QUESTION, REPO, VARIANTS, eval_world_fixture, merged, world_params  # noqa: F401 - session fixture

from pipeline.config import ConfigError, Params, load_params
from pipeline.evaluation.summary import paired_difference
from pipeline.report.build import PUBLISHED, ReportInputs, load_systems, results_section, write_report
from stages import report as report_stage


@pytest.fixture(scope="module")
def report(eval_world, tmp_path_factory) -> Path:
    layout = eval_world["layout"]
    inputs = ReportInputs(layout, (layout.asr_reports,))
    return write_report(eval_world["report"], inputs, tmp_path_factory.mktemp("report") / "report.html")


def _configure(**report: object) -> report_stage.ReportStageConfig:
    return report_stage.configure(Params(merged(world_params(), {"report": report})))


def test_the_repository_questions_name_systems_of_its_report():
    tree = load_params(REPO / "params.yaml")
    cfg = report_stage.configure(Params(tree)).report
    assert set(cfg.systems) == set(tree["v2a"]["variants"])  # today's systems: every V2A variant
    assert len(cfg.questions) == 7 and cfg.questions[0].question == QUESTION["question"]
    assert (cfg.questions[-1].a, cfg.questions[-1].b) == ("melspec_pretrained_frozen_sharedbn", "melspec_pretrained_frozen")


def test_a_question_must_name_systems_the_report_lists():
    with pytest.raises(ConfigError, match=r"report: questions\[0\]\.b: 'gl_gone' is neither in report\.systems"):
        _configure(questions=[{**QUESTION, "b": "gl_gone"}])
    with pytest.raises(ConfigError, match=r"unknown key report\.questions\[0\]\.c "):
        _configure(questions=[{**QUESTION, "c": "broken"}])
    with pytest.raises(ConfigError, match=r"report\.answer_split: 'val' is not one of evaluate\.splits"):
        _configure(answer_split="val")
    assert _configure(questions=[{**QUESTION, "a": "mean_mel_baseline"}]).report.questions[0].a == "mean_mel_baseline"


def test_answers_open_the_page_one_sentence_per_question(eval_world, report):
    text = report.read_text(encoding="utf-8")
    assert text.index("id='answers'") < text.index("id='results'") < text.index("id='ablations'")
    answers = text[text.index("id='answers'"):text.index("id='results'")]
    layout = eval_world["layout"]
    a, b = (pd.read_parquet(layout.eval(n)) for n in ("gl_noisy", "gl_clean"))
    diff, lo, hi, n = paired_difference(a[a["split"] == "test"], b[b["split"] == "test"], "stoi", 0)
    expected = f"STOI {diff:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    sentence = re.search(r"<li><b>Pre-trained decoder \(fine-tuned\) vs\. decoder from scratch, melspec</b>: (.*?)</li>",
                         answers).group(1)
    assert expected in sentence and f"on test (n={n})" in sentence and n == 4
    for label in ("PESQ", "ESTOI", "WER ctc %"):  # every headline metric, none other
        assert f">{label} " in sentence
    assert "MCD" not in sentence and "gl_clean &minus; gl_noisy" in sentence
    assert answers.count("<li>") == 1


def test_questions_come_from_params_and_need_no_code(eval_world, tmp_path):
    layout = eval_world["layout"]
    question = {"question": "a broken system vs. the video-blind baseline", "a": "mean_mel_baseline", "b": "broken"}
    cfg = _configure(questions=[QUESTION, question], headline=["stoi"])
    text = write_report(cfg, ReportInputs(layout, ()), tmp_path / "report.html").read_text(encoding="utf-8")
    answers = text[text.index("id='answers'"):text.index("id='results'")]
    assert answers.count("<li>") == 2
    assert "<b>A broken system vs. the video-blind baseline</b>: <span" in answers  # no shared family: no suffix
    ablations = text[text.index("id='ablations'"):text.index("id='listen'")]
    assert "A broken system vs. the video-blind baseline" in ablations and "broken &minus; mean_mel_baseline" in ablations
    assert ablations.count("<tr class='group'>") == 2
    charts = text[text.index("<div class='charts'>"):]
    assert charts[:charts.index("</div>")].count("<img ") == 1  # one chart per headline metric
    no_questions = write_report(_configure(questions=[]), ReportInputs(layout, ()), tmp_path / "none.html")
    assert "No questions in <code>report.questions</code>" in no_questions.read_text(encoding="utf-8")


def test_the_report_lists_exactly_its_systems_never_leftover_files(eval_world, tmp_path):
    world = eval_world["layout"]
    layout = type(world)(tmp_path)
    shutil.copytree(world.eval("x").parent, layout.eval("x").parent)
    shutil.copytree(world.metrics_dir, layout.metrics_dir)
    # An earlier run's system, since removed from params: its files stay behind.
    shutil.copy(layout.eval("gl_clean"), layout.eval("old_variant"))
    shutil.copy(layout.metrics("gl_clean"), layout.metrics("old_variant"))
    cfg = _configure(systems=["gl_clean", "gl_noisy"])
    text = write_report(cfg, ReportInputs(layout, ()), tmp_path / "report.html").read_text(encoding="utf-8")
    assert "old_variant" not in text and ">broken<" not in text
    assert text.index(">gl_clean<") < text.index(">gl_noisy<")  # in the order of report.systems
    layout.eval("gl_noisy").unlink()
    with pytest.raises(FileNotFoundError, match="no evaluation of gl_noisy .*: run evaluate@gl_noisy"):
        write_report(cfg, ReportInputs(layout, ()), tmp_path / "report2.html")


def test_page_is_self_contained_and_labels_the_demo_corpus(report):
    text = report.read_text(encoding="utf-8")
    assert report.stat().st_size < 5_000_000
    assert "demo corpus: numbers are not comparable to any paper" in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)  # no external resources
    for system in ("ground_truth", "vocoder_ceiling", "mean_mel_baseline", "gl_clean", "gl_noisy", "broken"):
        assert f">{system}<" in text
    assert "pocketsphinx en-US + GRID JSGF grammar" in text and "in-domain word CTC" in text
    assert "Pre-trained decoder (fine-tuned) vs. decoder from scratch" in text  # gl_noisy vs gl_clean
    assert "hypothesis silent: every sample is zero" in text  # the broken variant's problems are shown
    assert "Published results" in text and "secondary" in text


def _chromium() -> str:
    """The headless browser; `.ci/run` installs it in CI, where its absence fails instead of skipping."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("chromium is not installed (.ci/run installs it with apt-get)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


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
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", html)) >= 14  # 4 of them: headline charts
    assert len(re.findall(r"<audio [^>]*src=\"data:audio/wav;base64,", html)) == 6 * 2  # 6 systems x 2 utterances
    shot = tmp_path / "report.png"
    result = _headless(exe, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert result.returncode == 0 and shot.stat().st_size > 50_000, result.stderr[-500:]


def test_grid_results_sit_beside_the_papers_numbers(eval_world):
    systems = load_systems(ReportInputs(eval_world["layout"], ()), list(VARIANTS))
    published = pd.read_csv(PUBLISHED)
    keys = ["pesq", "stoi", "estoi", "wer_ctc"]
    html = results_section(systems, ["test"], keys, "grid", "seen-4", published, 0)
    assert html.count("<tr class='pub'>") == 4 and "published: SVTS" in html and "Mira et al. 2022" in html
    assert "demo corpus" not in html and "our split is drawn by our seed" in html
    unseen = results_section(systems, ["unseen"], keys, "grid", "unseen", published, 0)
    assert unseen.count("<tr class='pub'>") == 2
    assert "<tr class='pub'>" not in results_section(systems, ["test"], keys, "demo", "demo", published, 0)
