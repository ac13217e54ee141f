"""The report page: built from the real evaluation world, self-contained, rendered by headless Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from eval_world import QUESTION, REPO, VARIANTS, eval_world_fixture, merged, world_params  # noqa: F401 - session fixture

from pipeline.config import ConfigError, Params, load_params
from pipeline.evaluation.summary import paired_difference
from pipeline.layout import Layout
from pipeline.report.build import (
    IGNORES_VIDEO,
    NOT_A_FINDING,
    PUBLISHED,
    VIDEO_USE_LABEL,
    ReportInputs,
    System,
    describe,
    features_section,
    load_systems,
    results_section,
    write_report,
)
from pipeline.report.talkers import Coverage, coverage
from stages import report as report_stage


@pytest.fixture(scope="module")
def report(eval_world, tmp_path_factory) -> Path:
    layout = eval_world["layout"]
    inputs = ReportInputs(layout, (layout.asr_reports,))
    return write_report(eval_world["report"], inputs, tmp_path_factory.mktemp("report") / "report.html")


def _configure(**report: object) -> report_stage.ReportStageConfig:
    return report_stage.configure(Params(merged(world_params(), {"report": report})))


def _copy_world(eval_world: dict[str, Any], root: Path) -> Layout:
    """The world's evaluations and metrics files under `root`, to be altered by one test."""
    world, layout = eval_world["layout"], Layout(root)
    shutil.copytree(world.eval("x").parent, layout.eval("x").parent)
    shutil.copytree(world.metrics_dir, layout.metrics_dir)
    return layout


def _edit_details(layout: Layout, system: str, edit: Any) -> None:
    details = json.loads(layout.metrics_details(system).read_text(encoding="utf-8"))
    edit(details)
    layout.metrics_details(system).write_text(json.dumps(details), encoding="utf-8")


def _page(cfg: report_stage.ReportStageConfig, layout: Layout, name: str = "report.html",
          roots: tuple[Path, ...] = ()) -> str:
    return write_report(cfg, ReportInputs(layout, roots), layout.root / name).read_text(encoding="utf-8")


def test_the_repository_questions_name_systems_of_its_report():
    tree = load_params(REPO / "params.yaml")
    cfg = report_stage.configure(Params(tree)).report
    # today's systems: every V2A, AV2A and LTS variant and every AV2A given one modality
    av2a, lts = tree["av2a"], tree["lts"]["variants"]
    assert set(cfg.systems) == set(tree["v2a"]["variants"]) | set(av2a["variants"]) | set(av2a["robustness"]) | set(lts)
    assert len(cfg.questions) == 19 and cfg.questions[0].question == QUESTION["question"]
    assert (cfg.questions[6].a, cfg.questions[6].b) == ("melspec_pretrained_frozen_sharedbn", "melspec_pretrained_frozen")
    bases = {v["base"] for v in av2a["variants"].values()}
    for q in cfg.questions[7:16]:  # AV2A questions pair systems of one family
        assert {q.a, q.b} <= {*av2a["variants"], *av2a["robustness"], *bases}
        assert len({tree["v2a"]["variants"].get(s, av2a["variants"].get(s, {})).get("family") for s in (q.a, q.b)} - {None}) == 1
    for q in cfg.questions[12:16]:  # robustness: an AV2A against itself given one modality
        assert av2a["robustness"][q.b]["av2a"] == q.a
    for q in cfg.questions[16:]:  # LTS: the full model against an ablation of it, or against the best V2A
        assert q.b == "lts_full" and q.a in {*lts, "melspec_pretrained_finetuned"}


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
    for label in ("PESQ-WB", "ESTOI", "WER ctc %"):  # every headline metric, none other
        assert f">{label} " in sentence
    assert "MCD" not in sentence and "gl_clean &minus; gl_noisy" in sentence
    assert answers.count("<li>") == 1


def test_the_asr_section_names_whisper_as_off_when_it_is(report, eval_world, tmp_path):
    text = report.read_text(encoding="utf-8")
    asrs = text[text.index("id='asr'"):text.index("id='ablations'")]
    assert "<b>whisper</b>: off (<code>asr.whisper.enabled: false</code>)" in asrs and "<b>sphinx</b>" in asrs
    on = report_stage.configure(Params(merged(world_params(), {"asr": {"whisper": {"enabled": True}}})))
    page = _page(on, _copy_world(eval_world, tmp_path))  # enabled, yet absent from these evaluations: not called off
    assert "<b>whisper</b>: off" not in page


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
    layout = _copy_world(eval_world, tmp_path)
    # An earlier run's system, since removed from params: its files stay behind, training curves included.
    shutil.copy(layout.eval("gl_clean"), layout.eval("old_variant"))
    shutil.copy(layout.metrics("gl_clean"), layout.metrics("old_variant"))
    train, asr = tmp_path / "reports/train", tmp_path / "reports/train_asr"
    for run in (train / "train_v2a/gl_clean", train / "train_v2a/old_variant", train / "vocoder/hifigan",
                train / "pretrain_a2a/melspec", asr):
        (run / "plots/metrics/train").mkdir(parents=True)
        pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]}).to_csv(run / "plots/metrics/train/loss.tsv", sep="\t",
                                                                  index=False)
    cfg = _configure(systems=["gl_clean", "gl_noisy"])
    text = _page(cfg, layout, roots=(train, asr))
    assert "old_variant" not in text and ">broken<" not in text
    assert text.index(">gl_clean<") < text.index(">gl_noisy<")  # in the order of report.systems
    # the runs that serve the listed systems stay: vocoder, A2A pre-training, ASR
    for run in ("train/train_v2a/gl_clean", "train/vocoder/hifigan", "train/pretrain_a2a/melspec", "train_asr"):
        assert f'alt="training curves of {run}"' in text
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
    keys = ["pesq_wb", "pesq_nb8k", "pesq_nb16k", "stoi", "estoi", "wer_ctc"]
    html = results_section(systems, ["test"], keys, "grid", Coverage("seen-4"), published, 0)
    assert html.count("<tr class='pub'>") == 4 and "published: SVTS" in html and "Mira et al. 2022" in html
    assert "demo corpus" not in html and "our split is drawn by our seed" in html
    assert "other talkers" not in html  # a protocol naming no talkers here is never partial
    # each paper's PESQ in the column of its convention (VCA-GAN narrow-band at 8 kHz, Lip2Wav at 16 kHz); a paper
    # that does not say is shown under wide-band and marked
    pesq_cells = {row.split("published: ")[1].split(" <")[0]: re.findall(r"<td class=''>(.*?)</td>", row)[2:5]
                  for row in html.split("\n") if "published: " in row}
    assert pesq_cells["VCA-GAN"] == ["", "2.01", ""] and pesq_cells["Lip2Wav"] == ["", "", "1.77"]
    assert pesq_cells["SVTS"][0].startswith("1.97<br>") and pesq_cells["SVTS"][1:] == ["", ""]
    assert html.count("not comparable: the paper does not say which PESQ") == 2 and "narrow-band" not in html
    unseen = results_section(systems, ["unseen"], keys, "grid", Coverage("unseen"), published, 0)
    assert unseen.count("<tr class='pub'>") == 2
    assert "<tr class='pub'>" not in results_section(systems, ["test"], keys, "demo", Coverage("demo"), published, 0)


def test_a_vocoder_ceiling_far_from_ground_truth_is_flagged_beside_every_vocoded_system(eval_world, tmp_path, monkeypatch,
                                                                                       capsys):
    layout = _copy_world(eval_world, tmp_path)
    ceiling = json.loads(layout.metrics_details("vocoder_ceiling").read_text(encoding="utf-8"))
    vocoder, estoi = ceiling["vocoder"]["name"], ceiling["test"]["estoi"]
    # gl_clean's synthesis went through the ceiling's vocoder; gl_noisy and broken wrote waveforms
    _edit_details(layout, "gl_clean", lambda m: m["synthesis"].update(vocoder=vocoder))
    note = ("<span class='warn'>&#9888; scores capped by the vocoder: its ceiling (vocoder_ceiling) reaches only "
            f"ESTOI {estoi:.3f} on test</span>")
    cfg = _configure(vocoder_ceiling_min_estoi=estoi + 0.01)
    text = _page(cfg, layout)
    assert f"reach only ESTOI {estoi:.3f} on test (below {estoi + 0.01})" in text
    assert "The scores of mean_mel_baseline, gl_clean are capped by it" in text
    for system in ("gl_clean", "mean_mel_baseline"):  # beside its row of both results tables, and under its heading
        assert text.count(f"<td class='l'>{system}<br>{note}</td>") == 2
        assert re.search(rf">{system}</h3><p>[^\n]*</p>\n<p>{re.escape(note)}</p>", text)
    assert text.count(note) == 3 * 2 and "gl_noisy<br>" not in text and "broken<br>" not in text

    monkeypatch.setattr(report_stage, "Layout", lambda: layout)
    monkeypatch.setattr(report_stage, "load_config", lambda stage, configure: cfg)
    assert report_stage.main() == 0
    assert (f"report: WARNING: vocoder ceiling ESTOI {estoi:.3f} on test is below {estoi + 0.01}: the scores of "
            f"mean_mel_baseline, gl_clean are capped by the vocoder {vocoder}\n") in capsys.readouterr().err

    close = _page(_configure(vocoder_ceiling_min_estoi=estoi), layout, "close.html")  # at the threshold: no warning
    assert "capped" not in close
    _edit_details(layout, "gl_clean", lambda m: m["synthesis"].update(vocoder=None))
    assert "capped" not in _page(cfg, layout, "waveforms.html")  # only the baseline is vocoded: nothing to warn about


def test_a_protocol_run_on_some_of_its_talkers_says_so_wherever_it_is_named(eval_world, tmp_path):
    layout = _copy_world(eval_world, tmp_path)
    for path in layout.metrics_dir.glob("*.details.json"):  # a GRID seen-4 run ...
        _edit_details(layout, path.name.removesuffix(".details.json"), lambda m: m["versions"].update(corpus="grid", protocol="seen-4"))
    gt = pd.read_parquet(layout.eval("ground_truth"))
    gt.assign(speaker="s1").to_parquet(layout.eval("ground_truth"))  # ... whose utterances are all s1's
    text = _page(_configure(), layout)
    label = "seen-4, 1 of 4 talkers: s1"
    assert f"<h1>Video-to-speech evaluation: grid corpus, protocol {label}</h1>" in text
    assert text.count(f"protocol <b>{label}</b>") == 2  # both result tables
    assert f"<code>{label}</code>" in text  # the versions table
    assert not re.findall(r"seen-4(?!, 1 of 4 talkers: s1)", text[:text.index("id='published'")])
    results = text[text.index("id='results'"):text.index("id='sync'")]
    assert results.count("<tr class='pub'>") == results.count("not comparable (other talkers)") == 4

    talkers = ["s1", "s2", "s4", "s29"]  # every talker of seen-4 evaluated: the protocol's name alone
    gt.assign(speaker=[talkers[i % 4] for i in range(len(gt))]).to_parquet(layout.eval("ground_truth"))
    whole = _page(_configure(), layout, "whole.html")
    assert "<h1>Video-to-speech evaluation: grid corpus, protocol seen-4</h1>" in whole
    assert "talkers:" not in whole and "other talkers" not in whole


def test_talkers_a_protocol_names_per_split():
    protocols = _configure().protocols
    unseen = set(protocols["unseen"].per_speaker["unseen"])
    whole = coverage("unseen", protocols, ["test", "unseen"], unseen)
    assert whole.label == "unseen" and not whole.partial("unseen")  # its training talkers are never evaluated
    part = coverage("unseen", protocols, ["unseen"], unseen - {"s2"})
    assert part.partial("unseen") and part.label.startswith(f"unseen, {len(unseen) - 1} of {len(unseen)} talkers: s4, ")
    demo = coverage("demo", protocols, ["test", "unseen"], ["d1"])  # `per_utterance: all` names no talker
    assert demo.label == "demo" and not demo.partial()
    assert coverage("unknown", protocols, ["test"], ["s1"]).label == "unknown"


def test_an_ablation_of_systems_that_do_not_beat_the_video_blind_baseline_is_no_finding(eval_world, tmp_path):
    layout = _copy_world(eval_world, tmp_path)
    base = pd.read_parquet(layout.eval("mean_mel_baseline"))
    # two systems that learned nothing from the lips: one is the baseline, the other the baseline with STOI
    # (never ESTOI) raised: the difference between them is consistent, and no finding
    base.to_parquet(layout.eval("blind"))
    base.assign(stoi=base["stoi"] + 0.05).to_parquet(layout.eval("blind_stoi"))
    for name in ("blind", "blind_stoi"):
        shutil.copy(layout.metrics("broken"), layout.metrics(name))  # no family: no suffix to the titles
    moot = {"question": "raised STOI vs. a copy of the baseline", "a": "blind", "b": "blind_stoi"}
    finding = {"question": "Griffin-Lim vs. a copy of the baseline", "a": "blind", "b": "gl_clean"}
    text = _page(_configure(systems=[*VARIANTS, "blind", "blind_stoi"], questions=[moot, finding], headline=["stoi"]),
                 layout)
    answers = text[text.index("id='answers'"):text.index("id='results'")]
    sentence = re.search(r"<li><b>Raised STOI vs\. a copy of the baseline</b>: (.*?)</li>", answers).group(1)
    assert sentence.startswith(f"<span class='warn'>{NOT_A_FINDING}</span>. "
                               "<span class='moot'>STOI +0.050 [+0.050, +0.050]</span> on test"), sentence
    assert re.search(r"<li><b>Griffin-Lim vs\. a copy of the baseline</b>: <span class='better'>STOI ", answers)
    assert NOT_A_FINDING == "neither system beats the video-blind baseline (mean_mel_baseline): not a finding"
    ablations = text[text.index("id='ablations'"):text.index("id='listen'")]
    rows = re.findall(r"<tr>(<td class='l'>blind_stoi &minus; blind.*?)</tr>", ablations)
    assert len(rows) == 2 and all(NOT_A_FINDING in r and "<span class='moot'>" in r for r in rows)  # test and unseen
    assert "better" not in "".join(rows) and "worse" not in "".join(rows)
    found = re.findall(r"<tr>(<td class='l'>gl_clean &minus; blind.*?)</tr>", ablations)
    assert len(found) == 2 and not any(NOT_A_FINDING in r for r in found)


def test_a_system_that_says_as_much_from_other_lips_is_marked_beside_its_row(eval_world, tmp_path):
    layout = _copy_world(eval_world, tmp_path)
    own = pd.read_parquet(layout.eval("gl_clean"))
    # the same scores from another utterance's video: the lips changed nothing; 0.2 lower: they matter
    own.assign(stoi_deranged=own["stoi"], estoi_deranged=own["estoi"]).to_parquet(layout.eval("blind"))
    own.assign(stoi_deranged=own["stoi"] - 0.2, estoi_deranged=own["estoi"] - 0.2).to_parquet(layout.eval("lipreader"))
    for name in ("blind", "lipreader"):
        shutil.copy(layout.metrics("gl_clean"), layout.metrics(name))
    text = _page(_configure(systems=[*VARIANTS, "blind", "lipreader"]), layout)
    results = text[text.index("id='results'"):text.index("id='sync'")]
    assert results.count(f">{VIDEO_USE_LABEL}</th>") == 2  # test and unseen
    row = {n: re.findall(rf"<tr[^>]*><td class='l'>{n}</td>(.*?)</tr>", results) for n in ("blind", "lipreader", "gl_clean")}
    assert len(row["blind"]) == 2 and all(IGNORES_VIDEO in r and "+0.000" in r for r in row["blind"])
    assert len(row["lipreader"]) == 2 and all("+0.200" in r and IGNORES_VIDEO not in r for r in row["lipreader"])
    assert len(row["gl_clean"]) == 2 and all(r.endswith("<td class=''></td>") for r in row["gl_clean"])  # nothing claimed


def test_a_system_line_spells_out_nested_settings_as_dotted_keys():
    metrics = {"kind": "av2a", "family": "melspec",
               "model": {"extra": {"procedure": "baseline",
                                   "base": {"name": "melspec_scratch", "sha256": "ab" * 32}}}}
    line = describe(System("melspec_baseline", pd.DataFrame(), metrics, {}))
    assert "base.name: <b>melspec_scratch</b>" in line
    assert f"base.sha256: <b>{'ab' * 8}</b>" in line
    assert "{" not in line


def test_predicted_features_are_tabled_for_the_systems_that_predict_them():
    def system(name: str, **features: float) -> System:
        rows = [{"utt_id": f"u{i}", "split": "test", "scored": True, "issue_kinds": [], "pesq_wb": 1.0, "stoi": 0.5,
                 "estoi": 0.2, "mcd": 9.0, **{k: v + 0.01 * i for k, v in features.items()}} for i in range(4)]
        return System(name, pd.DataFrame(rows), {}, {})

    systems = {"v2a": system("v2a"), "lts": system("lts", unit_accuracy=0.5, f0_rmse=20.0, voicing_error=0.1,
                                                  energy_mae=0.3),
               "lts_units_only": system("lts_units_only", unit_accuracy=0.4)}
    html = features_section(systems, ["test"], 0)
    assert "lts_units_only" in html and ">v2a<" not in html
    assert "0.515" in html and "20.02" in html  # means over the utterances, with their digits
    assert html.count("&ndash;") == 3  # the prosody a units-only variant does not predict
    assert "No listed system" in features_section({"v2a": systems["v2a"]}, ["test"], 0)
