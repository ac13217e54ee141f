"""`reports/report.html`: one self-contained page from the evaluation outputs.

Inputs: `data/eval/<system>.parquet` (per utterance), `data/eval/samples/<system>.parquet`
(audio of a few test/unseen utterances), `reports/metrics/<system>.json` (headline numbers
and versions), the V2A variants in params (for the ablations), DVCLive folders (training
curves) and `published_results.csv` beside this module. Every number on the page is
recomputed from the per-utterance tables with `pipeline.evaluation.summary`, the code that
wrote the metrics files.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from pipeline.atomic import write_text
from pipeline.audio.mel import MelConfig
from pipeline.config import get
from pipeline.evaluation.evaluate import REFERENCES, SPLITS
from pipeline.evaluation.metrics import SIGNAL_METRICS
from pipeline.evaluation.summary import ASRS, bootstrap_ci, paired_difference, summarize
from pipeline.report import figures
from pipeline.report.html import audio, esc, fmt, img, page, table
from pipeline.shards import ShardReader, unpack

PUBLISHED = Path(__file__).with_name("published_results.csv")
HIGHER_IS_BETTER = {"pesq": True, "stoi": True, "estoi": True, "mcd": False, "wer_sphinx": False, "cer_sphinx": False,
                    "wer_ctc": False, "cer_ctc": False}
LABELS = {"pesq": "PESQ", "stoi": "STOI", "estoi": "ESTOI", "mcd": "MCD dB", "wer_sphinx": "WER sphinx %",
          "cer_sphinx": "CER sphinx %", "wer_ctc": "WER ctc %", "cer_ctc": "CER ctc %"}
# The seed papers' questions, as pairs of variant settings that differ in one attribute.
QUESTIONS = (
    ("decoder", "scratch", "pretrained_finetuned", "pre-trained decoder (fine-tuned) vs. decoder from scratch"),
    ("decoder", "scratch", "pretrained_frozen", "pre-trained decoder (frozen) vs. decoder from scratch"),
    ("decoder", "pretrained_frozen", "pretrained_finetuned", "fine-tuning vs. freezing the pre-trained decoder"),
    ("separate_bn", False, True, "separate batch-norm statistics for audio and video vs. shared"),
)
VARIANT_DEFAULTS = {"decoder": "scratch", "separate_bn": True}


@dataclass
class System:
    """One row of the results: its per-utterance scores, metrics file and sample audio."""

    name: str
    kind: str  # "reference" or "v2a"
    scores: pd.DataFrame
    metrics: dict[str, Any]
    samples: dict[str, tuple[np.ndarray, int]]  # utt_id -> (audio, sample rate) as the system produced it


@dataclass(frozen=True)
class ReportInputs:
    """Where the report reads from."""

    eval_dir: Path
    metrics_dir: Path
    curve_roots: tuple[Path, ...]


def load_systems(inputs: ReportInputs, variants: Sequence[str]) -> dict[str, System]:
    """Every evaluated system: reference rows first, then the variants in params order, then any others."""
    found = sorted(p.stem for p in inputs.eval_dir.glob("*.parquet") if not p.name.startswith("."))
    order = [n for n in REFERENCES if n in found] + [v for v in variants if v in found]
    order += [n for n in found if n not in order]
    out: dict[str, System] = {}
    for name in order:
        metrics_file = inputs.metrics_dir / f"{name}.json"
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
        samples = {}
        sample_file = inputs.eval_dir / "samples" / f"{name}.parquet"
        if sample_file.is_file():
            for row in ShardReader(sample_file).iter_rows():
                samples[row["utt_id"]] = (np.array(unpack(row, "audio")), int(row["sample_rate"]))
        kind = "reference" if name in REFERENCES else "v2a"
        out[name] = System(name, kind, pd.read_parquet(inputs.eval_dir / f"{name}.parquet"), metrics, samples)
    return out


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
    return 3 if key in ("stoi", "estoi") else (1 if key.startswith(("wer", "cer")) else 2)


def results_section(systems: dict[str, System], splits: Sequence[str], keys: Sequence[str], corpus: str,
                    protocol: str, published: pd.DataFrame, seed: int) -> str:
    """Headline numbers of every system per split, with bootstrap intervals and published rows."""
    parts = ["<h2 id='results'>Results</h2>"]
    if corpus == "demo":
        parts.append("<div class='banner'>demo corpus: numbers are not comparable to any paper.</div>")
    parts.append("<p class='note'>Means over scored utterances (WER/CER: total edits / total reference words or "
                 "characters, in %), with 95% bootstrap intervals over utterances in brackets. "
                 "<b>unscored</b> counts utterances an input check refused (see Input problems); they are "
                 "not in the means. Grey rows are references computed by the same code.</p>")
    for split in splits:
        rows, classes = [], []
        for s in systems.values():
            part = s.scores[s.scores["split"] == split]
            if part.empty:
                continue
            summary = summarize(s.scores, [split])[split]
            unscored = sum(summary["unscored"].values())
            cells = [esc(s.name), f"{summary['n']}", f"<span class='{'warn' if unscored else ''}'>{unscored}</span>"]
            for k in keys:
                ci = bootstrap_ci(part, k, seed) if k in summary else None
                cells.append(_cell(summary.get(k), ci, _digits(k)))
            rows.append(cells)
            classes.append("ref" if s.kind == "reference" else "")
        pub = published[(published["dataset"].str.lower() == corpus.lower()) & (published["our_protocol"] == protocol)
                         & (published["our_split"] == split)]
        for _, p in pub.iterrows():
            cells = [f"published: {esc(p['system'])} <span class='small'>({esc(p['paper'])}; ASR: "
                     f"{esc(p['asr_for_wer'])}; {esc(p['checked'])})</span>", "", ""]
            for k in keys:
                col = {"wer_sphinx": "wer_percent", "wer_ctc": "wer_percent"}.get(k, k)
                cells.append(fmt(p[col], _digits(k)) if col in p and k in ("pesq", "stoi", "estoi", "wer_ctc") else "")
            rows.append(cells)
            classes.append("pub")
        if not rows:
            continue
        caption = f"<b>{esc(split)}</b> split &mdash; corpus <b>{esc(corpus)}</b>, protocol <b>{esc(protocol)}</b>"
        if corpus == "demo":
            caption += " &mdash; <span class='warn'>demo corpus: not comparable to any paper</span>"
        elif pub.empty:
            caption += " &mdash; no published numbers for this dataset, protocol and split"
        else:
            caption += (" &mdash; published WERs are listed under the in-domain (ctc) column: each paper used its "
                        "own ASR (named in the row); our split is drawn by our seed, not the papers' lists")
        parts.append(table(["system", "n", "unscored", *[LABELS[k] for k in keys]], rows, classes, caption=caption))
    return "\n".join(parts)


def asr_section(systems: dict[str, System]) -> str:
    """Which ASRs produced the WERs, their identity hashes and their floor on ground-truth audio."""
    gt = systems.get("ground_truth")
    asr = get(next(iter(systems.values())).metrics, "versions.asr", {}) if systems else {}
    items = []
    for name in ASRS:
        ident = asr.get(name)
        if not ident:
            continue
        floor = ""
        if gt is not None:
            summ = summarize(gt.scores, SPLITS)
            floor = "; ".join(f"{sp}: {fmt(v.get(f'wer_{name}'), 1)}% WER" for sp, v in summ.items())
        details = ", ".join(f"{esc(k)} <code>{esc(v)}</code>" for k, v in ident.items() if k != "name")
        items.append(f"<li><b>{esc(name)}</b>: {esc(ident.get('name', name))}. On the ground-truth audio "
                     f"(the floor): <b>{floor or 'not evaluated'}</b>.<br><span class='small'>{details}</span></li>")
    if not items:
        return "<h2 id='asr'>ASRs</h2><p class='warn'>No ASR identity found in the metrics files.</p>"
    return ("<h2 id='asr'>ASRs used for WER and CER</h2><ul>" + "".join(items) + "</ul>"
            "<p class='note'>A system's WER cannot be read without its ASR's floor: an ASR that misreads "
            "real speech also misreads synthesis.</p>")


def variant_spec(params: dict[str, Any], name: str) -> dict[str, Any]:
    """A variant's settings with the trainer's defaults filled in."""
    return {**VARIANT_DEFAULTS, **(get(params, f"v2a.variants.{name}") or {})}


def ablation_pairs(specs: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """`(question, variant A, variant B)` for every pair differing only in the question's attribute."""
    out = []
    for attr, a, b, question in QUESTIONS:
        for va, sa in specs.items():
            for vb, sb in specs.items():
                if sa.get(attr) != a or sb.get(attr) != b:
                    continue
                others = {k for k in set(sa) | set(sb) if k != attr}
                if all(sa.get(k) == sb.get(k) for k in others):
                    out.append((question, va, vb))
    return out


def ablation_section(systems: dict[str, System], params: dict[str, Any], splits: Sequence[str], keys: Sequence[str],
                     seed: int) -> str:
    """B - A with paired 95% intervals for each ablation pair present in this run."""
    specs = {n: variant_spec(params, n) for n, s in systems.items() if s.kind == "v2a"}
    pairs = ablation_pairs(specs)
    head = "<h2 id='ablations'>Ablations</h2>"
    if not pairs:
        return head + "<p class='note'>No pair of evaluated variants differs in exactly one setting.</p>"
    rows, classes = [], []
    for question, va, vb in pairs:
        for split in splits:
            a, b = systems[va].scores, systems[vb].scores
            a, b = a[a["split"] == split], b[b["split"] == split]
            if a.empty or b.empty:
                continue
            cells = [esc(question), f"{esc(specs[va]['family'])}", f"{esc(vb)} &minus; {esc(va)}", esc(split)]
            n = 0
            for k in keys:
                diff, lo, hi, n_k = paired_difference(a, b, k, seed)
                n = max(n, n_k)
                cls = ""
                if np.isfinite(lo) and (lo > 0 or hi < 0):
                    cls = "better" if (lo > 0) == HIGHER_IS_BETTER[k] else "worse"
                cells.append(f"<span class='{cls}'>{_cell(diff, (lo, hi), _digits(k))}</span>")
            cells.insert(4, str(n))
            rows.append(cells)
            classes.append("")
    return head + ("<p class='note'>Difference of the second variant minus the first on the utterances both "
                   "scored, with a paired 95% bootstrap interval. Green: the interval excludes zero in the better "
                   "direction; red: in the worse direction.</p>"
                   + table(["question", "family", "comparison", "split", "n", *[LABELS[k] for k in keys]], rows,
                           classes, left=4))


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
        classes.append("ref" if s.kind == "reference" else "")
    return ("<h2 id='listen'>Listening</h2><p class='note'>Each player holds a 16-bit WAV of the whole utterance as "
            "the system produced it. Under each: what each ASR heard.</p>"
            + table(headers, rows, classes))


def system_sections(systems: dict[str, System], utts: list[tuple[str, str]], curves: dict[str, dict[str, pd.DataFrame]],
                    params: dict[str, Any], mel: MelConfig) -> str:
    """Per system: its settings, spectrograms of the sample utterances and its training curves."""
    parts = ["<h2 id='systems'>Systems</h2>"]
    gt = systems.get("ground_truth")
    for name, s in systems.items():
        if name == "ground_truth":
            continue
        parts.append(f"<h3 id='sys-{esc(name)}'>{esc(name)}</h3>")
        if s.kind == "reference":
            parts.append(f"<p>{esc(REFERENCES[name])}. Vocoder: <code>{esc(get(s.metrics, 'vocoder.name', '?'))}"
                         f"</code>.</p>")
        else:
            spec = variant_spec(params, name)
            parts.append("<p>" + ", ".join(f"{esc(k)}: <b>{esc(v)}</b>" for k, v in spec.items()) + ". "
                         f"Synthesis from model sha256 <code>{esc(str(get(s.metrics, 'synthesis.model_sha256', '?'))[:16])}"
                         "</code>.</p>")
        for utt, split in utts:
            if gt is not None and utt in gt.samples and utt in s.samples and s.samples[utt][1] == mel.sample_rate:
                png = figures.spectrogram_pair(gt.samples[utt][0], s.samples[utt][0], mel, f"{name} ({utt}, {split})")
                parts.append(img(png, f"log-mel spectrograms of {utt}: ground truth and {name}"))
        runs = {label: c for label, c in curves.items() if Path(label).name == name}
        for label, c in runs.items():
            parts.append(img(figures.training_curves(c, label), f"training curves of {label}"))
        if s.kind == "v2a" and not runs:
            parts.append("<p class='note'>No DVCLive training curves found for this variant.</p>")
    others = {label: c for label, c in curves.items() if Path(label).name not in systems}
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
            parts.append(img(figures.distributions(per, ["pesq", "stoi", "estoi"], split), f"metric distributions, {split}"))
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


def versions_section(systems: dict[str, System]) -> str:
    """The versions block of the metrics files, and any disagreement between them."""
    flat = {n: _flatten(s.metrics.get("versions", {})) for n, s in systems.items()}
    if not flat:
        return ""
    first = next(iter(flat.values()))
    differ = sorted({k for f in flat.values() for k in set(f) | set(first) if f.get(k) != first.get(k)})
    rows = [[esc(k), f"<code>{esc(v)}</code>"] for k, v in first.items()]
    warn = (f"<p class='warn'>The metrics files disagree on: {esc(', '.join(differ))}. Rerun the evaluation of all "
            "systems before comparing them.</p>" if differ else
            "<p class='note'>All metrics files were computed with these versions and settings.</p>")
    return "<h2 id='versions'>Versions and settings</h2>" + warn + table(["what", "value"], rows, left=2)


def published_section(published: pd.DataFrame) -> str:
    """The papers' numbers as kept in the project, with how well each was checked."""
    cols = ["dataset", "protocol", "system", "paper", "pesq", "stoi", "estoi", "wer_percent", "asr_for_wer", "checked"]
    rows = [[esc("" if pd.isna(r[c]) else r[c]) for c in cols] for _, r in published.iterrows()]
    return ("<h2 id='published'>Published results</h2><p class='note'>From "
            "<code>pipeline/report/published_results.csv</code>. <b>checked</b>: <i>secondary</i> = read in a later "
            "paper's comparison table, <i>readme</i> = the authors' repository, <i>unchecked</i> = not verified. "
            "Each WER comes from that paper's own ASR.</p>" + table(cols, rows, left=4))


def build(params: dict[str, Any], inputs: ReportInputs) -> str:
    """The report page as one HTML string."""
    section = get(params, "report", {}) or {}
    seed = int(params.get("seed", 0))
    variants = list(get(params, "v2a.variants", {}) or {})
    systems = load_systems(inputs, variants)
    if not systems:
        raise RuntimeError(f"no evaluation results in {inputs.eval_dir}: run the evaluate stages first")
    versions = next(iter(systems.values())).metrics.get("versions", {})
    corpus, protocol = versions.get("corpus", "unknown"), versions.get("protocol", "unknown")
    splits = [sp for sp in get(params, "evaluate.splits", SPLITS)
              if any((s.scores["split"] == sp).any() for s in systems.values())]
    asrs = [a for a in ASRS if any(f"word_errors_{a}" in s.scores for s in systems.values())]
    keys = [*SIGNAL_METRICS, *(f"wer_{a}" for a in asrs), *(f"cer_{a}" for a in asrs)]
    published = pd.read_csv(PUBLISHED)
    utts = sample_utterances(systems, splits, int(section.get("samples_per_split", 1)))
    curves = find_curves(inputs.curve_roots)
    title = f"Video-to-speech evaluation: {corpus} corpus, {protocol} protocol"
    body = [f"<h1>{esc(title)}</h1>"]
    if corpus == "demo":
        body.append("<div class='banner'>demo corpus: numbers are not comparable to any paper. The demo corpus is "
                    "generated offline (espeak-ng voices over an animated photograph) to exercise the pipeline.</div>")
    body.append("<p class='note'>Sections: <a href='#results'>results</a> &middot; <a href='#asr'>ASRs</a> &middot; "
                "<a href='#ablations'>ablations</a> &middot; <a href='#listen'>listening</a> &middot; "
                "<a href='#systems'>systems</a> &middot; <a href='#distributions'>distributions</a> &middot; "
                "<a href='#issues'>input problems</a> &middot; <a href='#versions'>versions</a> &middot; "
                "<a href='#published'>published results</a>. How to read it: <code>reports/README.md</code>.</p>")
    body += [results_section(systems, splits, keys, corpus, protocol, published, seed), asr_section(systems),
             ablation_section(systems, params, splits, keys, seed), listening_section(systems, utts),
             system_sections(systems, utts, curves, params, MelConfig.from_params(params)),
             distribution_section(systems, splits), issues_section(systems), versions_section(systems),
             published_section(published)]
    return page(title, "\n".join(body))


def write_report(params: dict[str, Any], inputs: ReportInputs, out: str | os.PathLike[str]) -> Path:
    """Build the page and write it atomically; returns its path."""
    write_text(out, build(params, inputs))
    return Path(out)
