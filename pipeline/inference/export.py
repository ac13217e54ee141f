"""`v2s export MODEL OUT`: a trained model as a folder others can use on another machine.

OUT holds the model's weights and card, what it speaks through (an AV2A's base model in
`base/`, a log-mel model's HiFi-GAN in `vocoder/`; `v2s speak --model OUT` finds both there),
and `README.md`, a Hugging Face model card: YAML metadata with a `model-index` result per
evaluated split and metric, then the corpus, protocol and split digests, the ASRs with their
floors on ground-truth audio, the corpus licence and how to run it. Run it in the checkout that
trained and evaluated the model: the numbers come from its `reports/metrics/<name>.details.json`,
and a model that was never evaluated says so instead of showing numbers.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.inference.card import CARD, ModelCard, load_card
from pipeline.inference.model_dir import WEIGHTS, inputs_digest, sha256_file
from pipeline.layout import Layout
from pipeline.shards import list_shards

# The licence of each corpus a model can be trained on: (Hugging Face licence id, what to cite).
LICENCES = {
    "grid": ("cc-by-4.0", "the GRID audio-visual sentence corpus (Cooke, Barker, Cunningham & Shao, 2006), "
             "CC BY 4.0, Zenodo record 3625687: credit it when you use this model"),
    "demo": ("mit", "the pipeline's demo corpus, generated offline (espeak-ng voices over scikit-image's "
             "public-domain astronaut photograph), MIT like the pipeline"),
}
# model-index metrics: (key in the details file, metric type, readable name)
RESULTS = (("pesq_wb", "pesq", "PESQ wide-band (P.862.2, 16 kHz)"),
           ("pesq_nb8k", "pesq", "PESQ narrow-band at 8 kHz"),
           ("pesq_nb16k", "pesq", "PESQ narrow-band at 16 kHz"),
           ("stoi", "stoi", "STOI"), ("estoi", "estoi", "ESTOI"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a trained model directory (e.g. models/av2a/<variant>)")
    parser.add_argument("out", type=Path, help="the folder to write (must not exist, or be empty)")


def bundle(model_dir: Path, out: Path) -> dict[str, str]:
    """Copy the model and everything it speaks through into `out`; returns {relative folder: its weights' sha256}."""
    from pipeline.families import get_family
    from pipeline.inference.load import base_dir
    from pipeline.inference.speak import vocoder_path

    card = load_card(model_dir)
    parts = {".": model_dir}
    families = [card.family]
    if "synth" in card.inputs:  # it reads its base's speech: the base travels with it, checked to be the one
        parts["base"] = base_dir(card, model_dir)
        families.append(load_card(parts["base"]).family)
    if any(get_family(f).vocoded for f in families if f):
        try:
            parts["vocoder"] = vocoder_path(None, model_dir)
        except FileNotFoundError:
            raise FileNotFoundError(f"{model_dir} speaks through the HiFi-GAN of the vocoder stage, and there is none "
                                    "beside it (models/vocoder): run that stage first") from None
    copied = {}
    for rel, src in parts.items():
        (out / rel).mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS, CARD):
            shutil.copy2(src / name, out / rel / name)
        copied[rel] = sha256_file(out / rel / WEIGHTS)
    return copied


def _split_results(details: dict[str, Any], floor: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {split: {**numbers, "floor": floor.get(split, {})} for split, numbers in details.items()
            if isinstance(numbers, dict) and "n_scored" in numbers}


def model_card(card: ModelCard, details: dict[str, Any] | None, floor: dict[str, Any], split_digests: dict[str, str],
               files: dict[str, str]) -> str:
    """README.md: Hugging Face model-card metadata (model-index from `details`) and the text a user needs."""
    versions = (details or {}).get("versions", {})
    corpus, protocol = versions.get("corpus", "unknown"), versions.get("protocol", "unknown")
    licence, cite = LICENCES.get(corpus, ("other", f"the {corpus} corpus: check its licence before use"))
    asrs = versions.get("asr", {})  # the ASRs the evaluation ran, in its order
    splits = _split_results(details or {}, floor)
    index = []
    for split, numbers in splits.items():
        metrics = [{"type": t, "name": name, "value": numbers[k]} for k, t, name in RESULTS if numbers.get(k) is not None]
        metrics += [{"type": "wer", "name": f"WER % ({asrs.get(a, {}).get('name', a)}; ground truth: "
                     f"{numbers['floor'].get(f'wer_{a}')}%)", "value": numbers[f"wer_{a}"]}
                    for a in asrs if numbers.get(f"wer_{a}") is not None]
        index.append({"task": {"type": "video-to-speech", "name": "Video-to-speech (lip-to-speech)"},
                      "dataset": {"type": corpus, "name": f"{corpus} ({protocol})", "split": split},
                      "metrics": metrics})
    meta: dict[str, Any] = {"license": licence, "language": ["en"],
                            "tags": ["video-to-speech", "lip-to-speech", card.kind, *([card.family] if card.family else [])]}
    if index:
        meta["model-index"] = [{"name": card.name, "results": index}]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {card.name}", "",
             f"A {card.kind} model of the `{card.family}` family, trained and evaluated by the v2s video-to-speech "
             f"pipeline. It reads {', '.join(card.inputs)}; `card.json` holds its full configuration, the crop it "
             "expects and the identities of its training data.", "", "## How to run it", "",
             "```", f"v2s speak VIDEO --model {card.name} -o OUT.wav [--reference VOICE.wav]", "```", "",
             "`v2s` is the pipeline's command line (its README: `make venv`). The video is cropped exactly as the "
             "model was trained (`card.json` `crop`); without `--reference` it speaks with the mean training voice."]
    if "base" in files:
        lines += ["", f"It speaks from the video and the speech of its base model, bundled in `base/` "
                  f"(sha256 {files['base'][:16]}), which `v2s speak` runs first; never from the video's own audio."]
    if "vocoder" in files:
        lines += ["", f"Its log-mel spectrograms become speech through the HiFi-GAN in `vocoder/` (sha256 {files['vocoder'][:16]})."]
    lines += ["", "## Training", "", f"- steps: {card.train.get('steps', '?')}, batch {card.train.get('batch_size', '?')}, "
              f"lr {card.train.get('lr', '?')}, seed {card.train.get('seed', '?')}",
              f"- data (digests of the training inputs): `{json.dumps(card.data, sort_keys=True)}`",
              f"- weights: `model.pt`, sha256 {files['.']}", "", "## Evaluation", ""]
    if not splits:
        lines += ["Not evaluated: no `reports/metrics/<name>.details.json` was found where it was exported."]
    else:
        lines += [f"Corpus **{corpus}**, protocol **{protocol}**" + (" (demo corpus: synthetic voices over a photograph; "
                  "these numbers are not comparable to any paper)" if corpus == "demo" else "") + ". Split digests "
                  "(name, size and ends of the ground-truth shards): "
                  + ", ".join(f"{s} `{d}`" for s, d in split_digests.items() if s in splits) + ".", "",
                  "| split | n | PESQ wb | PESQ nb 8k | PESQ nb 16k | STOI | ESTOI | " + " | ".join(
                      f"WER {a} % (ground truth)" for a in asrs) + " |",
                  "|---" * (7 + len(asrs)) + "|"]
        for split, n in splits.items():
            cells = [split, str(n.get("n_scored"))] + [str(n.get(k)) for k, _, _ in RESULTS]
            cells += [f"{n.get(f'wer_{a}')} ({n['floor'].get(f'wer_{a}')})" for a in asrs]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "ASRs: " + "; ".join(f"**{a}**: {i.get('name', a)}" for a, i in asrs.items())
                  + ". Each WER is beside that ASR's own error on the ground-truth audio of the same utterances: its floor.",
                  "PESQ is given under the three conventions papers use; compare a paper's number only with the same one."]
    lines += ["", "## Corpus licence", "", f"Trained on {cite}.", ""]
    return "\n".join(lines)


def export(model_dir: Path, out: Path, layout: Layout) -> Path:
    """Write the folder (atomically: nothing half-written is left under `out`); returns `out`."""
    from pipeline.atomic import atomic_dir

    card = load_card(model_dir)
    if not (model_dir / WEIGHTS).is_file():
        raise FileNotFoundError(f"{model_dir}: no {WEIGHTS} (not a trained model directory)")
    details_file, floor_file = layout.metrics_details(card.name), layout.metrics_details("ground_truth")
    details = json.loads(details_file.read_text(encoding="utf-8")) if details_file.is_file() else None
    floor = json.loads(floor_file.read_text(encoding="utf-8")) if floor_file.is_file() else {}
    digests = {s: inputs_digest(list_shards(layout.roi / "shards" / s))
               for s in (details or {}) if (layout.roi / "shards" / s).is_dir()}
    if out.exists():
        out.rmdir()  # empty (checked by the caller): atomic_dir renames into place
    with atomic_dir(out) as tmp:
        files = bundle(model_dir, Path(tmp))
        (Path(tmp) / "README.md").write_text(model_card(card, details, floor, digests, files), encoding="utf-8")
    return out


def run(args: argparse.Namespace) -> int:
    """Check the arguments, then export; one line and exit 1 for what cannot be done."""
    from pipeline.inference.model_dir import CheckpointError

    try:
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            raise FileExistsError(f"{args.out} exists and is not an empty folder; name a new one")
        export(args.model, args.out, Layout())
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"v2s export: {exc}", file=sys.stderr)
        return 1
    print(f"v2s export: {args.model} -> {args.out} ({', '.join(sorted(p.name for p in args.out.iterdir()))})", file=sys.stderr)
    return 0
