"""`reports/report.html`: one self-contained page from the evaluation outputs.

Inputs: `data/eval/<system>.parquet` (per utterance), `data/eval/samples/<system>.parquet`
(audio of a few test/unseen utterances), `reports/metrics/<system>.details.json`
(the system's kind and family from its model card, versions), DVCLive folders (training curves)
and `published_results.csv` beside this module. The page lists the reference rows and exactly
the systems of `report.systems`, whatever else earlier runs left in those folders (their metrics
files, evaluations and training curves), and answers the questions of `report.questions`. Every
number on the page is recomputed from the per-utterance tables with `pipeline.evaluation.summary`,
the code that wrote the metrics files.

The page says what was run: a protocol evaluated on some of its talkers is named with them, and
the papers' rows beside it are marked not comparable; a vocoder ceiling far from ground truth is
flagged beside every system it caps; a difference between two systems that neither beat the
video-blind baseline is greyed as no finding.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic import write_text
from pipeline.audio.mel import MelConfig
from pipeline.evaluation.asr_whisper import WhisperConfig
from pipeline.evaluation.evaluate import REFERENCES
from pipeline.evaluation.metrics import FEATURE_METRICS, PESQ_METRICS, SYNC_METRICS
from pipeline.evaluation.summary import ASRS, bootstrap_ci, paired_difference, summarize, video_use
from pipeline.layout import Layout
from pipeline.report import figures
from pipeline.report.config import Question, ReportStageConfig
from pipeline.report.html import audio, esc, fmt, img, page, table
from pipeline.report.talkers import Coverage, coverage
from pipeline.shards import ShardReader, unpack

PUBLISHED = Path(__file__).with_name("published_results.csv")
# A paper's PESQ sits in the column of its convention (published_results.csv `pesq_convention`); one whose
# paper does not say is shown under ours (wide-band) and marked not comparable.
PESQ_CONVENTIONS = {"pesq_wb": "wide-band, 16 kHz", "pesq_nb8k": "narrow-band at 8 kHz",
                    "pesq_nb16k": "narrow-band at 16 kHz", "not stated": "the paper does not say which PESQ"}
HIGHER_IS_BETTER = {"pesq_wb": True, "pesq_nb8k": True, "pesq_nb16k": True, "stoi": True, "estoi": True, "mcd": False,
                    "pesq_wb_aligned": True, "stoi_aligned": True, "estoi_aligned": True,
                    "wer_sphinx": False, "cer_sphinx": False, "wer_ctc": False, "cer_ctc": False, "unit_accuracy": True,
                    "f0_rmse": False, "voicing_error": False, "energy_mae": False}
LABELS = {"pesq_wb": "PESQ-WB", "pesq_nb8k": "PESQ-NB 8k", "pesq_nb16k": "PESQ-NB 16k", "stoi": "STOI",
          "estoi": "ESTOI", "mcd": "MCD dB", "offset_ms": "offset ms", "pesq_wb_aligned": "PESQ-WB aligned",
          "stoi_aligned": "STOI aligned", "estoi_aligned": "ESTOI aligned", "wer_sphinx": "WER sphinx %",
          "cer_sphinx": "CER sphinx %", "wer_ctc": "WER ctc %", "cer_ctc": "CER ctc %", "unit_accuracy": "unit accuracy",
          "f0_rmse": "F0 RMSE Hz", "voicing_error": "voicing error", "energy_mae": "energy MAE"}
CEILING, BASELINE = "vocoder_ceiling", "mean_mel_baseline"
# A system beats the video-blind baseline when its paired 95% interval over it is above zero on both
# (issue 16's criterion): STOI alone rises for outputs that carry no words.
BEATS_BASELINE_ON = ("stoi", "estoi")
NOT_A_FINDING = f"neither system beats the video-blind baseline ({BASELINE}): not a finding"
VIDEO_USE_LABEL = "ESTOI own video &minus; other video"
IGNORES_VIDEO = "&#9888; not above zero: says as much from another utterance's lips"


@dataclass
class System:
    """One row of the results: its per-utterance scores, details file (provenance) and sample audio."""

    name: str
    scores: pd.DataFrame
    details: dict[str, Any]
    samples: dict[str, tuple[np.ndarray, int]]  # utt_id -> (audio, sample rate) as the system produced it

    @property
    def reference(self) -> bool:
        return self.name in REFERENCES

    @property
    def family(self) -> str | None:
        """The model family its card names (None for reference rows and family-less models)."""
        return self.details.get("family")


@dataclass(frozen=True)
class VocoderCap:
    """The vocoder ceiling far from ground truth, and the rows whose audio went through that vocoder."""

    vocoder: str
    split: str
    estoi: float  # the ceiling's mean ESTOI on `split`
    threshold: float  # report.vocoder_ceiling_min_estoi
    systems: tuple[str, ...]  # every row but the ceiling whose audio went through `vocoder`, in page order

    @property
    def note(self) -> str:
        """The warning beside one capped system (HTML)."""
        return (f"<span class='warn'>&#9888; scores capped by the vocoder: its ceiling ({CEILING}) reaches only "
                f"ESTOI {self.estoi:.3f} on {esc(self.split)}</span>")

    @property
    def summary(self) -> str:
        """The warning in one line of plain text (the stage's summary)."""
        return (f"vocoder ceiling ESTOI {self.estoi:.3f} on {self.split} is below {self.threshold}: the scores of "
                f"{', '.join(self.systems)} are capped by the vocoder {self.vocoder}")


@dataclass(frozen=True)
class ReportInputs:
    """Where the report reads from: the evaluation outputs of `layout`, DVCLive runs under `curve_roots`."""

    layout: Layout
    curve_roots: tuple[Path, ...]


def load_systems(inputs: ReportInputs, systems: Sequence[str]) -> dict[str, System]:
    """The reference rows, then `systems` in order; an evaluation missing for any of them is an error.

    Files of other systems (left by earlier runs, or by variants since removed) are not read.
    """
    layout = inputs.layout
    order = [*REFERENCES, *systems]
    missing = [n for n in order if not layout.eval(n).is_file()]
    if missing:
        stages = dict.fromkeys("evaluate_references" if n in REFERENCES else f"evaluate@{n}" for n in missing)
        raise FileNotFoundError(f"no evaluation of {', '.join(missing)} in {layout.eval(missing[0]).parent}: run "
                                + ", ".join(stages))
    out: dict[str, System] = {}
    for name in order:
        details_file = layout.metrics_details(name)
        details = json.loads(details_file.read_text(encoding="utf-8")) if details_file.is_file() else {}
        samples = {}
        sample_file = layout.eval_samples(name)
        if sample_file.is_file():
            for row in ShardReader(sample_file).iter_rows():
                samples[row["utt_id"]] = (np.array(unpack(row, "audio")), int(row["sample_rate"]))
        out[name] = System(name, pd.read_parquet(layout.eval(name)), details, samples)
    return out


def vocoder_of(s: System) -> str | None:
    """The vocoder a row's audio went through: a reference row's `vocoder.name`, a system's synthesis's vocoder."""
    return _nested(s.details, "vocoder.name" if s.reference else "synthesis.vocoder")


def vocoder_cap(systems: dict[str, System], split: str, min_estoi: float) -> VocoderCap | None:
    """The cap on every row vocoded like the ceiling when the ceiling's ESTOI on `split` is below `min_estoi`.

    None when the ceiling is close enough to ground truth, has no `split` utterances, or no system
    of `report.systems` goes through its vocoder (waveform models are not capped by it).
    """
    ceiling = systems.get(CEILING)
    vocoder = vocoder_of(ceiling) if ceiling is not None else None
    if ceiling is None or vocoder is None or not _has(ceiling, split):
        return None
    estoi = summarize(ceiling.scores, [split])[split].get("estoi")
    capped = tuple(n for n, s in systems.items() if n != CEILING and vocoder_of(s) == vocoder)
    if estoi is None or estoi >= min_estoi or all(systems[n].reference for n in capped):
        return None
    return VocoderCap(vocoder, split, estoi, min_estoi, capped)


def find_curves(roots: Sequence[Path]) -> dict[str, dict[str, pd.DataFrame]]:
    """DVCLive runs under `roots`: `{run label: {metric name: step/value table}}`."""
    runs: dict[str, dict[str, pd.DataFrame]] = {}
    for root in roots:
        for plots in sorted(Path(root).rglob("plots/metrics")):
            run = plots.parent.parent
            label = os.fspath(run.relative_to(root.parent)) if run != root else root.name
            curves = {}
            for tsv in sorted(plots.rglob("*.tsv")):
                df = pd.read_csv(tsv, sep="\t")
                if "step" in df and len(df.columns) >= 2:
                    curves[os.fspath(tsv.relative_to(plots).with_suffix(""))] = df
            if curves:
                runs[label] = curves
    return runs


def _cell(value: Any, ci: tuple[float, float] | None, digits: int) -> str:
    text = fmt(value, digits)
    if ci is not None and all(np.isfinite(ci)):
        text += f" <span class='ci'>[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]</span>"
    return text


def _digits(key: str) -> int:
    if key in ("stoi", "estoi", "stoi_aligned", "estoi_aligned", "unit_accuracy", "voicing_error"):
        return 3
    return 1 if key.startswith(("wer", "cer", "offset")) else 2


def results_section(systems: dict[str, System], splits: Sequence[str], keys: Sequence[str], corpus: str,
                    protocol: Coverage, published: pd.DataFrame, seed: int, cap: VocoderCap | None = None) -> str:
    """Headline numbers of every system per split, with bootstrap intervals and published rows.

    Published rows of a split where the run lacks some of the protocol's talkers are marked not comparable.
    """
    parts = ["<h2 id='results'>Results</h2>"]
    if corpus == "demo":
        parts.append("<div class='banner'>demo corpus: numbers are not comparable to any paper.</div>")
    parts.append("<p class='note'>Means over scored utterances (WER/CER: total edits / total reference words or "
                 "characters, in %), with 95% bootstrap intervals over utterances in brackets. "
                 "<b>unscored</b> counts utterances an input check refused (see Input problems); they are "
                 "not in the means. Grey rows are references computed by the same code. The last column asks "
                 "whether a model uses the video at all: its ESTOI minus the ESTOI of its speech from another "
                 "utterance's video (same speaker, split and every other input), paired over utterances.</p>")
    for split in splits:
        rows, classes = [], []
        for s in systems.values():
            part = s.scores[s.scores["split"] == split]
            if part.empty:
                continue
            summary = summarize(s.scores, [split])[split]
            unscored = sum(summary["unscored"].values())
            name = esc(s.name) + (f"<br>{cap.note}" if cap is not None and s.name in cap.systems else "")
            cells = [name, f"{summary['n']}", f"<span class='{'warn' if unscored else ''}'>{unscored}</span>"]
            for k in keys:
                ci = bootstrap_ci(part, k, seed) if k in summary else None
                cells.append(_cell(summary.get(k), ci, _digits(k)))
            cells.append(video_use_cell(part, seed))
            rows.append(cells)
            classes.append("ref" if s.reference else "")
        pub = published[(published["dataset"].str.lower() == corpus.lower())
                         & (published["our_protocol"] == protocol.protocol) & (published["our_split"] == split)]
        other_talkers = protocol.partial(split)
        for _, p in pub.iterrows():
            cells = [f"published: {esc(p['system'])} <span class='small'>({esc(p['paper'])}; ASR: "
                     f"{esc(p['asr_for_wer'])}; {esc(p['checked'])})</span>"
                     + ("<br><span class='warn'>not comparable (other talkers)</span>" if other_talkers else ""),
                     "", ""]
            for k in keys:
                cells.append(_published_cell(p, k))
            rows.append([*cells, ""])
            classes.append("pub")
        if not rows:
            continue
        caption = (f"<b>{esc(split)}</b> split &mdash; corpus <b>{esc(corpus)}</b>, protocol "
                   f"<b>{esc(protocol.label)}</b>")
        if corpus == "demo":
            caption += " &mdash; <span class='warn'>demo corpus: not comparable to any paper</span>"
        elif pub.empty:
            caption += " &mdash; no published numbers for this dataset, protocol and split"
        else:
            caption += (" &mdash; published WERs are listed under the in-domain (ctc) column: each paper used its "
                        "own ASR (named in the row); our split is drawn by our seed, not the papers' lists")
            if other_talkers:
                caption += (" &mdash; <span class='warn'>the papers measured all of the protocol's talkers of this "
                            "split, this run only some: their rows are not comparable</span>")
        parts.append(table(["system", "n", "unscored", *[LABELS[k] for k in keys], VIDEO_USE_LABEL], rows, classes,
                           caption=caption))
    return "\n".join(parts)


def video_use_cell(part: pd.DataFrame, seed: int) -> str:
    """ESTOI from the utterance's own video minus from another utterance's (paired, 95% interval); marked when
    the interval is not above zero. Empty for rows without that synthesis (references, audio-only inputs)."""
    use = video_use(part, "estoi", seed)
    if use is None:
        return ""
    diff, lo, hi, _ = use
    cell = f"{_signed(diff, 3)} <span class='small'>[{lo:.3f}, {hi:.3f}]</span>"
    return cell if lo > 0 else f"{cell}<br><span class='warn'>{IGNORES_VIDEO}</span>"


def _published_cell(p: pd.Series, key: str) -> str:
    """A published row's number for column `key`: its PESQ only under its own convention."""
    if key in PESQ_METRICS:
        convention = p["pesq_convention"]
        if pd.isna(p["pesq"]) or key != (convention if convention in PESQ_METRICS else "pesq_wb"):
            return ""
        cell = fmt(p["pesq"], _digits(key))
        if convention not in PESQ_METRICS:
            cell += f"<br><span class='warn small'>not comparable: {esc(PESQ_CONVENTIONS[convention])}</span>"
        return cell
    col = {"wer_ctc": "wer_percent"}.get(key, key)
    return fmt(p[col], _digits(key)) if col in p and key in ("stoi", "estoi", "wer_ctc") else ""


def sync_section(systems: dict[str, System], splits: Sequence[str], seed: int) -> str:
    """The estimated offset of each system's speech against the reference, and the scores once it is removed."""
    parts = ["<h2 id='sync'>Sync</h2><p class='note'>Offset: how late a system's speech is against the reference "
             f"(negative: early), the lag within &plusmn;{esc(_max_offset(systems))} ms that best lines up the "
             "log-energy envelopes of the two, mean over utterances. The aligned scores are computed over the overlap "
             "once each utterance's offset is removed: a synthesis that is right but shifted is not scored as wrong "
             "(Niu &amp; Mak, arXiv 2303.00502). 95% bootstrap intervals in brackets.</p>"]
    scored = {n: s for n, s in systems.items() if "offset_ms" in s.scores}
    parts += filter(None, (means_table(scored, split, SYNC_METRICS, seed) for split in splits))
    return "\n".join(parts)


def means_table(systems: dict[str, System], split: str, keys: Sequence[str], seed: int) -> str:
    """One row per system with `split` utterances: n scored and the mean of each of `keys` with its 95% bootstrap
    interval (a dash where the system has no such score); empty when no system has the split."""
    rows = []
    for s in systems.values():
        part = s.scores[s.scores["split"] == split]
        if part.empty:
            continue
        summary = summarize(s.scores, [split])[split]
        rows.append([esc(s.name), str(summary["n_scored"]),
                     *(_cell(summary.get(k), bootstrap_ci(part, k, seed), _digits(k)) if k in summary else "&ndash;"
                       for k in keys)])
    return table(["system", "n", *[LABELS[k] for k in keys]], rows, caption=f"<b>{esc(split)}</b> split") if rows else ""


def _max_offset(systems: dict[str, System]) -> str:
    ms = _nested(next(iter(systems.values())).details, "versions.max_offset_ms") if systems else None
    return "?" if ms is None else f"{ms:g}"


def features_section(systems: dict[str, System], splits: Sequence[str], seed: int) -> str:
    """The speech features the systems that predict them predicted, against the feature stages' ground truth."""
    head = "<h2 id='features'>Predicted features</h2>"
    predicting = {n: s for n, s in systems.items() if any(k in s.scores for k in FEATURE_METRICS)}
    if not predicting:
        return head + "<p class='note'>No listed system predicts speech features.</p>"
    parts = [head, "<p class='note'>What each system predicted on the way to speech (from video alone), against the "
             "feature stages' ground truth of the same utterance: unit accuracy (share of 20 ms k-means units "
             "predicted exactly; the unit source is in the system's description), F0 RMSE over the frames both call "
             "voiced, voicing error (share of mel frames with the other voiced/unvoiced decision), energy MAE (L2 norm "
             "of the linear mel frame). Means over scored utterances with 95% bootstrap intervals; a dash: not "
             "predicted by that variant.</p>"]
    parts += filter(None, (means_table(predicting, split, FEATURE_METRICS, seed) for split in splits))
    return "\n".join(parts)


def headline_charts(systems: dict[str, System], splits: Sequence[str], keys: Sequence[str], seed: int) -> str:
    """One chart per headline metric: every system's mean per split with its 95% bootstrap interval."""
    charts = []
    for k in keys:
        points = []
        for s in systems.values():
            for split in splits:
                part = s.scores[s.scores["split"] == split]
                if part.empty:
                    continue
                summary = summarize(s.scores, [split])[split]
                value = summary.get(k)
                lo, hi = bootstrap_ci(part, k, seed) if k in summary else (np.nan, np.nan)
                points.append(figures.Point(s.name, split, np.nan if value is None else value, lo, hi, s.reference))
        better = "higher" if HIGHER_IS_BETTER[k] else "lower"
        charts.append(img(figures.interval_chart(points, f"{LABELS[k]} ({better} is better)"),
                          f"{LABELS[k]} of every system with 95% intervals"))
    return "<div class='charts'>" + "".join(charts) + "</div>" if charts else ""


def asr_section(systems: dict[str, System], splits: Sequence[str], whisper: WhisperConfig) -> str:
    """Which ASRs produced the WERs, their identity hashes and their floor on ground-truth audio; a Whisper
    that is off is named as off."""
    gt = systems.get("ground_truth")
    asr = next(iter(systems.values())).details.get("versions", {}).get("asr", {}) if systems else {}
    items = []
    for name in ASRS:
        ident = asr.get(name)
        if not ident:
            continue
        floor = ""
        if gt is not None:
            summ = summarize(gt.scores, splits)
            floor = "; ".join(f"{sp}: {fmt(v.get(f'wer_{name}'), 1)}% WER" for sp, v in summ.items())
        details = ", ".join(f"{esc(k)} <code>{esc(v)}</code>" for k, v in ident.items() if k != "name")
        items.append(f"<li><b>{esc(name)}</b>: {esc(ident.get('name', name))}. On the ground-truth audio "
                     f"(the floor): <b>{floor or 'not evaluated'}</b>.<br><span class='small'>{details}</span></li>")
    if not items:
        return "<h2 id='asr'>ASRs</h2><p class='warn'>No ASR identity found in the details files.</p>"
    if "whisper" not in asr and not whisper.enabled:
        items.append(f"<li><b>whisper</b>: off (<code>asr.whisper.enabled: false</code>): this run is offline, where the "
                     f"weights of <code>{esc(whisper.checkpoint)}</code> cannot be fetched. Name a local copy in "
                     "<code>asr.whisper.checkpoint</code> and enable it to add its WER.</li>")
    return ("<h2 id='asr'>ASRs used for WER and CER</h2><ul>" + "".join(items) + "</ul>"
            "<p class='note'>A system's WER cannot be read without its ASR's floor: an ASR that misreads "
            "real speech also misreads synthesis.</p>")


def _paired(systems: dict[str, System], q: Question, split: str, key: str, seed: int,
            moot: bool) -> tuple[float, float, float, int, str]:
    """`b - a` of one metric on one split: difference, paired 95% interval, n, and its colour class (grey when `moot`)."""
    a, b = systems[q.a].scores, systems[q.b].scores
    diff, lo, hi, n = paired_difference(a[a["split"] == split], b[b["split"] == split], key, seed)
    cls = "moot" if moot else ""
    if not moot and np.isfinite(lo) and (lo > 0 or hi < 0):
        cls = "better" if (lo > 0) == HIGHER_IS_BETTER[key] else "worse"
    return diff, lo, hi, n, cls


def beats_baseline(systems: dict[str, System], name: str, split: str, seed: int) -> bool:
    """Whether `name` beats the video-blind baseline on `split`: paired 95% interval above zero on each of
    BEATS_BASELINE_ON (every one of which is higher-is-better)."""
    base, s = systems[BASELINE].scores, systems[name].scores
    return all(paired_difference(base[base["split"] == split], s[s["split"] == split], k, seed)[1] > 0
               for k in BEATS_BASELINE_ON)


def not_a_finding(systems: dict[str, System], q: Question, split: str, seed: int) -> bool:
    """Whether neither system of `q` beats the video-blind baseline on `split`: their difference says nothing
    about what either learned from the lips. A question that asks about the baseline itself is always a finding."""
    if BASELINE in (q.a, q.b) or BASELINE not in systems or not _has(systems[BASELINE], split):
        return False
    return not any(beats_baseline(systems, n, split, seed) for n in (q.a, q.b))


def _has(s: System, split: str) -> bool:
    return bool((s.scores["split"] == split).any())


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}" if np.isfinite(value) else "&ndash;"


def _title(q: Question, systems: dict[str, System]) -> str:
    """The question as a heading, with the family when both systems share one."""
    text = q.question[:1].upper() + q.question[1:]
    families = {systems[q.a].family, systems[q.b].family}
    return f"{text}, {families.pop()}" if len(families) == 1 and None not in families else text


_MOOT_NOTE = (f"Grey: neither system beats the video-blind baseline ({BASELINE}) on that split, i.e. neither has a "
              f"paired 95% interval over it above zero on both {' and '.join(LABELS[k] for k in BEATS_BASELINE_ON)}; "
              "a difference between two systems that learned nothing from the lips is not a finding.")


def answers_section(systems: dict[str, System], questions: Sequence[Question], split: str, keys: Sequence[str],
                    seed: int) -> str:
    """One sentence per question: `b - a` of each headline metric on `split` with its paired interval."""
    head = "<h2 id='answers'>Answers</h2>"
    if not questions:
        return head + "<p class='note'>No questions in <code>report.questions</code>.</p>"
    items = []
    for q in questions:
        pair = f"<span class='small'>({esc(q.b)} &minus; {esc(q.a)})</span>"
        absent = [n for n in (q.a, q.b) if not _has(systems[n], split)]
        if absent:
            items.append(f"<li><b>{esc(_title(q, systems))}</b>: not answered, {esc(absent[0])} has no "
                         f"{esc(split)} utterances. {pair}</li>")
            continue
        parts, n = [], 0
        moot = not_a_finding(systems, q, split, seed)
        for k in keys:
            diff, lo, hi, n_k, cls = _paired(systems, q, split, k, seed, moot)
            n, d = max(n, n_k), _digits(k)
            interval = f" [{_signed(lo, d)}, {_signed(hi, d)}]" if np.isfinite(lo) and np.isfinite(hi) else ""
            parts.append(f"<span class='{cls}'>{esc(LABELS[k])} {_signed(diff, d)}{interval}</span>")
        verdict = f"<span class='warn'>{esc(NOT_A_FINDING)}</span>. " if moot else ""
        items.append(f"<li><b>{esc(_title(q, systems))}</b>: {verdict}{', '.join(parts)} on {esc(split)} (n={n}). "
                     f"{pair}</li>")
    return (head + "<p class='note'>Each question of <code>report.questions</code>, answered by the second system "
            "minus the first on the utterances both scored, with a paired 95% bootstrap interval. Green: the interval "
            "excludes zero in the better direction; red: in the worse direction. " + _MOOT_NOTE + " Every split and "
            "metric: <a href='#ablations'>ablations</a>.</p><ul class='answers'>" + "".join(items) + "</ul>")


def ablation_section(systems: dict[str, System], questions: Sequence[Question], splits: Sequence[str],
                     keys: Sequence[str], seed: int) -> str:
    """B - A with paired 95% intervals for each question, per split and metric."""
    head = "<h2 id='ablations'>Ablations</h2>"
    if not questions:
        return head + "<p class='note'>No questions in <code>report.questions</code>.</p>"
    rows: list[list[str]] = []
    groups: dict[int, str] = {}
    for q in questions:
        label = esc(q.question[:1].upper() + q.question[1:])
        for split in splits:
            if not (_has(systems[q.a], split) and _has(systems[q.b], split)):
                continue
            moot = not_a_finding(systems, q, split, seed)
            verdict = f"<br><span class='small'>{esc(NOT_A_FINDING)}</span>" if moot else ""
            cells = [f"{esc(q.b)} &minus; {esc(q.a)}{verdict}", esc(split)]
            n = 0
            for k in keys:
                diff, lo, hi, n_k, cls = _paired(systems, q, split, k, seed, moot)
                n = max(n, n_k)
                cells.append(f"<span class='{cls}'>{_cell(diff, (lo, hi), _digits(k))}</span>")
            cells.insert(2, str(n))
            if label not in groups.values():
                groups[len(rows)] = label
            rows.append(cells)
    return head + ("<p class='note'>Difference of the second system minus the first on the utterances both "
                   "scored, with a paired 95% bootstrap interval. Green: the interval excludes zero in the better "
                   "direction; red: in the worse direction. " + _MOOT_NOTE + "</p>"
                   + table(["comparison", "split", "n", *[LABELS[k] for k in keys]], rows, left=2, groups=groups))


def sample_utterances(systems: dict[str, System], splits: Sequence[str], per_split: int) -> list[tuple[str, str]]:
    """`(utt_id, split)` of the utterances whose audio is shown: the first ground-truth samples per split."""
    gt = systems.get("ground_truth")
    if gt is None or not gt.samples:
        return []
    split_of = dict(zip(gt.scores["utt_id"], gt.scores["split"]))
    return [(u, sp) for sp in splits for u in sorted(x for x in gt.samples if split_of.get(x) == sp)[:per_split]]


def _row_of(s: System, utt: str) -> pd.Series | None:
    rows = s.scores[s.scores["utt_id"] == utt]
    return None if rows.empty else rows.iloc[0]


def _heard(s: System, utt: str) -> str:
    """What each ASR transcribed, or why the utterance was not scored."""
    row = _row_of(s, utt)
    if row is None:
        return ""
    if not row["scored"]:
        return f"<span class='warn'>not scored</span>: {esc(row['issues'])}"
    return " / ".join(f"{a}: <i>{esc(row[f'hyp_{a}'])}</i>" for a in ASRS if f"hyp_{a}" in row)


def listening_section(systems: dict[str, System], utts: list[tuple[str, str]]) -> str:
    """One audio player per system (rows) and sample utterance (columns), with what each ASR heard."""
    if not utts:
        return "<h2 id='listen'>Listening</h2><p class='note'>No sample audio was kept by the evaluation.</p>"
    gt = systems["ground_truth"]
    headers = ["system"]
    for utt, split in utts:
        row = _row_of(gt, utt)
        headers.append(f"{esc(utt)} ({esc(split)})<br><i>{esc(row['transcript'] if row is not None else '')}</i>")
    rows, classes = [], []
    for name, s in systems.items():
        cells = [esc(name.replace("_", " ") if name == "ground_truth" else name)]
        for utt, _ in utts:
            player = audio(*s.samples[utt], f"{utt} {name}") if utt in s.samples else "<span class='warn'>no audio</span>"
            cells.append(player + f"<div class='small'>{_heard(s, utt)}</div>")
        rows.append(cells)
        classes.append("ref" if s.reference else "")
    return ("<h2 id='listen'>Listening</h2><p class='note'>Each player holds a 16-bit WAV of the whole utterance as "
            "the system produced it. Under each: what each ASR heard.</p>"
            + table(headers, rows, classes))


def _nested(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def describe(s: System) -> str:
    """A system in one line: what a reference row is, or the model card's kind, family and settings."""
    if s.reference:
        return f"{esc(REFERENCES[s.name])}. Vocoder: <code>{esc(_nested(s.details, 'vocoder.name') or '?')}</code>."
    card = _flat({"kind": s.details.get("kind", "?"), "family": s.family, **(_nested(s.details, "model.extra") or {})})
    sha = str(_nested(s.details, "synthesis.model_sha256") or "?")[:16]
    return (", ".join(f"{esc(k)}: <b>{esc(v)}</b>" for k, v in card.items() if v is not None)
            + f". Synthesis from model sha256 <code>{esc(sha)}</code>.")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested card settings (an AV2A's base and A2A) as dotted keys; hashes shortened to 16 digits."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v[:16] if k in ("sha256", "fingerprint") and isinstance(v, str) else v
    return out


def system_sections(systems: dict[str, System], utts: list[tuple[str, str]], curves: dict[str, dict[str, pd.DataFrame]],
                    mel: MelConfig, cap: VocoderCap | None) -> str:
    """Per system: its settings, spectrograms of the sample utterances and its training curves.

    Under "Other training runs": the runs that serve the listed systems (vocoder, A2A pre-training,
    ASR). A run in the folder of a listed system's run but not itself listed is a removed system's
    leftover and is not shown.
    """
    parts = ["<h2 id='systems'>Systems</h2>"]
    gt = systems.get("ground_truth")
    for name, s in systems.items():
        if name == "ground_truth":
            continue
        parts.append(f"<h3 id='sys-{esc(name)}'>{esc(name)}</h3><p>{describe(s)}</p>")
        if cap is not None and name in cap.systems:
            parts.append(f"<p>{cap.note}</p>")
        for utt, split in utts:
            if gt is not None and utt in gt.samples and utt in s.samples and s.samples[utt][1] == mel.sample_rate:
                png = figures.spectrogram_pair(gt.samples[utt][0], s.samples[utt][0], mel, f"{name} ({utt}, {split})")
                parts.append(img(png, f"log-mel spectrograms of {utt}: ground truth and {name}"))
        runs = {label: c for label, c in curves.items() if Path(label).name == name}
        for label, c in runs.items():
            parts.append(img(figures.training_curves(c, label), f"training curves of {label}"))
        if not s.reference and not runs:
            parts.append("<p class='note'>No DVCLive training curves found for this system.</p>")
    system_folders = {Path(label).parent for label in curves if Path(label).name in systems}
    others = {label: c for label, c in curves.items()
              if Path(label).name not in systems and Path(label).parent not in system_folders}
    if others:
        parts.append("<h3>Other training runs</h3>")
        parts.extend(img(figures.training_curves(c, label), f"training curves of {label}") for label, c in others.items())
    return "\n".join(parts)


def distribution_section(systems: dict[str, System], splits: Sequence[str]) -> str:
    """Box plots of the per-utterance signal metrics per split."""
    parts = ["<h2 id='distributions'>Distributions</h2>"]
    per = {n: s.scores for n, s in systems.items()}
    for split in splits:
        if any((s.scores["split"] == split).any() for s in systems.values()):
            parts.append(img(figures.distributions(per, ["pesq_wb", "stoi", "estoi"], split), f"metric distributions, {split}"))
    return "\n".join(parts)


def issues_section(systems: dict[str, System]) -> str:
    """Counts of unscored and flagged utterances per system, with example messages."""
    rows = []
    for name, s in systems.items():
        bad = s.scores[s.scores["issues"].fillna("") != ""]
        if bad.empty:
            continue
        counts: dict[str, int] = {}
        for kinds in bad["issue_kinds"]:
            for k in kinds:
                counts[k] = counts.get(k, 0) + 1
        examples = "<br>".join(f"{esc(u)}: {esc(m)}" for u, m in zip(bad["utt_id"][:3], bad["issues"][:3]))
        rows.append([esc(name), ", ".join(f"{esc(k)} {v}" for k, v in sorted(counts.items())),
                     str(int((~bad['scored']).sum())), f"<span class='small'>{examples}</span>"])
    body = (table(["system", "issues", "unscored", "examples"], rows, left=4) if rows
            else "<p>Every utterance of every system passed the input checks.</p>")
    return ("<h2 id='issues'>Input problems</h2><p class='note'>Silent, empty, too short, non-finite, wrong-rate, "
            "length-mismatched or missing audio is not scored (never counted as zero); clipped audio and single "
            "metrics that could not be computed are scored and flagged.</p>" + body)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def versions_section(systems: dict[str, System], protocol: Coverage) -> str:
    """The versions block of the details files (the protocol with the talkers evaluated), and any disagreement."""
    flat = {n: _flatten(s.details.get("versions", {})) for n, s in systems.items()}
    if not flat:
        return ""
    first = next(iter(flat.values()))
    differ = sorted({k for f in flat.values() for k in set(f) | set(first) if f.get(k) != first.get(k)})
    rows = [[esc(k), f"<code>{esc(protocol.label if k == 'protocol' and v == protocol.protocol else v)}</code>"]
            for k, v in first.items()]
    warn = (f"<p class='warn'>The details files disagree on: {esc(', '.join(differ))}. Rerun the evaluation of all "
            "systems before comparing them.</p>" if differ else
            "<p class='note'>All details files were computed with these versions and settings.</p>")
    return "<h2 id='versions'>Versions and settings</h2>" + warn + table(["what", "value"], rows, left=2)


def published_section(published: pd.DataFrame) -> str:
    """The papers' numbers as kept in the project, with how well each was checked."""
    cols = ["dataset", "protocol", "system", "paper", "pesq", "pesq_convention", "stoi", "estoi", "wer_percent", "asr_for_wer",
            "checked"]
    rows = [[esc("" if pd.isna(r[c]) else r[c]) for c in cols] for _, r in published.iterrows()]
    return ("<h2 id='published'>Published results</h2><p class='note'>From "
            "<code>pipeline/report/published_results.csv</code>. <b>checked</b>: <i>secondary</i> = read in a later "
            "paper's comparison table, <i>readme</i> = the authors' repository, <i>unchecked</i> = not verified. "
            "Each WER comes from that paper's own ASR; each PESQ from the convention named beside it (ours: wide-band "
            "at 16 kHz; <code>v2s score</code> prints all three).</p>" + table(cols, rows, left=4))


def build(cfg: ReportStageConfig, inputs: ReportInputs) -> str:
    """The report page as one HTML string."""
    report, seed = cfg.report, cfg.seed
    systems = load_systems(inputs, report.systems)
    versions = systems["ground_truth"].details.get("versions", {})
    corpus, protocol = versions.get("corpus", "unknown"), versions.get("protocol", "unknown")
    splits = [sp for sp in cfg.splits if any(_has(s, sp) for s in systems.values())]
    asrs = [a for a in ASRS if any(f"word_errors_{a}" in s.scores for s in systems.values())]
    errors = [*(f"wer_{a}" for a in asrs), *(f"cer_{a}" for a in asrs)]
    keys = [*PESQ_METRICS, "stoi", "estoi", "mcd", *errors]
    ablation_keys = ["pesq_wb", "stoi", "estoi", "mcd", *errors]  # one PESQ: each key is a paired bootstrap per question
    headline = [k for k in report.headline if k in keys]
    published = pd.read_csv(PUBLISHED)
    utts = sample_utterances(systems, splits, report.samples_per_split)
    curves = find_curves(inputs.curve_roots)
    talkers = coverage(protocol, cfg.protocols, splits, systems["ground_truth"].scores["speaker"].unique())
    cap = vocoder_cap(systems, report.answer_split, report.vocoder_ceiling_min_estoi)
    title = f"Video-to-speech evaluation: {corpus} corpus, protocol {talkers.label}"
    body = [f"<h1>{esc(title)}</h1>"]
    if corpus == "demo":
        body.append("<div class='banner'>demo corpus: numbers are not comparable to any paper. The demo corpus is "
                    "generated offline (espeak-ng voices over an animated photograph) to exercise the pipeline.</div>")
    if cap is not None:
        body.append(f"<div class='banner'>The vocoder ceiling is far from ground truth: ground-truth log-mels through "
                    f"the vocoder <code>{esc(cap.vocoder)}</code> reach only ESTOI {cap.estoi:.3f} on "
                    f"{esc(cap.split)} (below {cap.threshold}). The scores of {esc(', '.join(cap.systems))} are capped "
                    "by it: they measure the vocoder as much as the model.</div>")
    body.append("<p class='note'>Sections: <a href='#answers'>answers</a> &middot; <a href='#results'>results</a> "
                "&middot; <a href='#sync'>sync</a> &middot; <a href='#features'>predicted features</a> &middot; <a href='#asr'>ASRs</a> &middot; "
                "<a href='#ablations'>ablations</a> &middot; <a href='#listen'>listening</a> &middot; "
                "<a href='#systems'>systems</a> &middot; <a href='#distributions'>distributions</a> &middot; "
                "<a href='#issues'>input problems</a> &middot; <a href='#versions'>versions</a> &middot; "
                "<a href='#published'>published results</a>. How to read it: <code>reports/README.md</code>.</p>")
    body += [answers_section(systems, report.questions, report.answer_split, headline, seed),
             results_section(systems, splits, keys, corpus, talkers, published, seed, cap)
             + headline_charts(systems, splits, headline, seed),
             sync_section(systems, splits, seed), features_section(systems, splits, seed), asr_section(systems, splits, cfg.whisper),
             ablation_section(systems, report.questions, splits, ablation_keys, seed),
             listening_section(systems, utts), system_sections(systems, utts, curves, cfg.mel, cap),
             distribution_section(systems, splits), issues_section(systems), versions_section(systems, talkers),
             published_section(published)]
    return page(title, "\n".join(body))


def write_report(cfg: ReportStageConfig, inputs: ReportInputs, out: str | os.PathLike[str]) -> Path:
    """Build the page and write it atomically; returns its path."""
    write_text(out, build(cfg, inputs))
    return Path(out)


def report_warnings(cfg: ReportStageConfig, inputs: ReportInputs) -> list[str]:
    """What the stage's summary must say besides the page: the vocoder cap, one line of text each."""
    cap = vocoder_cap(load_systems(inputs, cfg.report.systems), cfg.report.answer_split,
                      cfg.report.vocoder_ceiling_min_estoi)
    return [cap.summary] if cap is not None else []
