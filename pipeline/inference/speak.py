"""`v2s speak VIDEO --model models/<kind>/<name> -o OUT.wav [--reference AUDIO]`.

Any video goes through the roi stage's own crop (`pipeline.video.roi.crop_clip`) with the roi
and audio settings recorded in the model's card, so the model sees what it was trained on
whatever params.yaml holds now. The voice is the GE2E embedding of `--reference` (any audio or
video file), or else the mean training-speaker embedding stored with the model; the command
says which it used. A long video is decoded as a stream and spoken in chunks (`speak_in_chunks`),
so memory does not grow with its length.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.inference.model_dir import WEIGHTS
from pipeline.video.faces import choice_note, face_number

if TYPE_CHECKING:
    from pipeline.inference.load import LoadedModel
    from pipeline.inference.vocoder import Vocoder
    from pipeline.video.crop import FrameFile

GRIFFIN_LIM = "griffin_lim"
# What `speak` can give a model: the crops of the video, a voice, and the synthesis of the model's base
# (an AV2A's base V2A, named by its card) speaking the same crops first.
PROVIDES = ("video", "spk", "synth")
# Our choice: 5 s spoken at a time, each with 1 s of the video on either side that the chunk's output
# drops (training windows are 1 s or less, so a frame's speech depends on little beyond that).
CHUNK_FRAMES = 125
CONTEXT_FRAMES = 25


def speak_in_chunks(model: LoadedModel, crops: np.ndarray | FrameFile, spk: np.ndarray, vocoder: Vocoder | None,
                    synth: np.ndarray | FrameFile | None = None, chunk: int = CHUNK_FRAMES,
                    context: int = CONTEXT_FRAMES) -> Iterator[np.ndarray]:
    """A video's speech, in consecutive pieces, from its crops (T x H x W x C uint8, read a slice at a
    time), the voice `spk` and, for a model that reads it, the base's `synth` (T x samples per frame):
    `chunk` frames at a time with `context` frames on each side, so a video of any length costs one
    chunk's memory. A clip of at most `chunk + 2 * context` frames is spoken whole, exactly as the
    pipeline's synthesis speaks it."""
    n = len(crops)
    spf = model.samples_per_frame
    voice = torch.from_numpy(np.asarray(spk, dtype=np.float32)[None])

    def speak(lo: int, hi: int) -> np.ndarray:
        # the stored (T, H, W, C) crops as a channels-first view, as synthesis hands them over
        batch = {"video": torch.from_numpy(np.array(crops[lo:hi])[None]).permute(0, 1, 4, 2, 3), "spk": voice}
        if synth is not None:
            batch["synth"] = torch.from_numpy(np.array(synth[lo:hi]).reshape(1, -1))
        wav = model.speak(batch, vocoder)[0]
        if len(wav) != (hi - lo) * spf:
            raise RuntimeError(f"{model.card.name} spoke {len(wav)} samples for {hi - lo} frames, not {spf} a frame")
        return wav

    if n <= chunk + 2 * context:
        yield speak(0, n)
        return
    for start in range(0, n, chunk):
        lo, hi, end = max(0, start - context), min(n, start + chunk + context), min(n, start + chunk)
        yield speak(lo, hi)[(start - lo) * spf : (end - lo) * spf]


def speech_file(pieces: Iterator[np.ndarray], samples_per_frame: int) -> tuple[FrameFile, float]:
    """Consecutive pieces of speech (whole frames each) in a `FrameFile` of frames' samples, and the peak."""
    from pipeline.video.crop import FrameFile

    out, peak = FrameFile((samples_per_frame,), np.float32), 0.0
    for wav in pieces:
        out.append(np.asarray(wav, dtype=np.float32).reshape(-1, samples_per_frame))
        peak = max(peak, float(np.abs(wav).max()) if wav.size else 0.0)
    return out, peak


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `v2s speak`."""
    parser.add_argument("video", type=Path, help="any video ffmpeg reads with a visible face; its audio is ignored")
    parser.add_argument("--model", type=Path, required=True, help="a trained model directory (e.g. models/v2a/<variant>)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="OUT.wav (16-bit PCM at the model's rate)")
    parser.add_argument("--reference", type=Path, help="audio or video of the voice to speak with (its GE2E embedding)")
    parser.add_argument("--vocoder", help="mel-spectrogram models: a HiFi-GAN directory or griffin_lim "
                        "(default: the model's own, the vocoder/ beside models/<kind>/ in its checkout)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument("--face", type=face_number, default=1,
                        help="which face speaks when several are in view: 1 (default) is the one found in the most "
                             "frames, then the largest")


def speaker_embedding(reference: Path | None, mean: np.ndarray | None, sample_rate: int) -> tuple[np.ndarray, str]:
    """The conditioning vector and a sentence saying where it came from."""
    if reference is not None:
        from pipeline.audio.io import read_media_audio
        from pipeline.features.speakers import embed

        return embed(read_media_audio(reference, sample_rate), sample_rate), f"GE2E embedding of {reference}"
    if mean is None:
        raise ValueError("the model stores no mean speaker embedding; pass --reference AUDIO")
    return mean, "the mean training-speaker embedding stored with the model (no --reference given)"


def vocoder_path(arg: str | None, model: Path) -> Path | None:
    """The HiFi-GAN directory `--vocoder` names (None: Griffin-Lim), by default the model's own: the one exported
    with it (`<model>/vocoder/`, v2s export), else the one the pipeline trained beside it (models/<kind>/<name> ->
    models/vocoder), wherever the command runs; one that is not there is an error, never a silent switch to
    Griffin-Lim."""
    if arg == GRIFFIN_LIM:
        return None
    bundled = model / "vocoder"
    own = bundled if (bundled / WEIGHTS).is_file() else model.resolve().parent.parent / "vocoder"
    path = Path(arg) if arg is not None else own
    if not (path / WEIGHTS).is_file():
        how = "--vocoder" if arg is not None else f"the model's own vocoder ({path})"
        raise FileNotFoundError(f"{how}: no HiFi-GAN weights in {path}; pass --vocoder DIR or --vocoder {GRIFFIN_LIM}")
    return path


def run(args: argparse.Namespace) -> int:
    """Speak one video; print where the voice came from and a one-line JSON summary, or a reason and exit 1."""
    from pipeline.atomic import check_output
    from pipeline.audio.io import write_wav
    from pipeline.config import ConfigError, parse
    from pipeline.inference.load import load_base_model, load_model
    from pipeline.inference.model_dir import CheckpointError
    from pipeline.inference.vocoder import load_vocoder
    from pipeline.video.crop import FrameFile
    from pipeline.video.decode import ClipError
    from pipeline.video.roi import RoiConfig, crop_clip

    start = time.perf_counter()
    try:
        check_output(args.output, ".wav")
        loaded = load_model(args.model, args.device)
        card = loaded.card
        if "video" not in card.inputs or set(card.inputs) - set(PROVIDES):
            raise ValueError(f"{args.model} is a {card.kind} model reading {list(card.inputs)}; "
                             f"`speak` gives a model only {list(PROVIDES)}")
        roi = parse(RoiConfig, card.crop["roi"], f"{args.model} card crop.roi")
        cropped = crop_clip(args.video, roi, require_audio=False, face=args.face, to_file=True)
        crops = cropped.mouth.video
        if note := choice_note(cropped.faces, cropped.face, cropped.clip.n_frames):
            print(f"v2s speak: {note}", file=sys.stderr)
        want = card.crop["frame"]
        if crops.shape[1:] != (want["height"], want["width"], want["channels"]):
            raise ValueError(f"crops are {crops.shape[1:]}, the model was trained on {dict(want)}")
        sr = loaded.audio.sample_rate
        mean = card.extra.get("mean_speaker_embedding")
        spk, source = speaker_embedding(args.reference, None if mean is None else np.asarray(mean, np.float32), sr)
        print(f"v2s speak: voice from {source}", file=sys.stderr)
        vocoder = None
        if loaded.family.vocoded:
            vocoder = load_vocoder(vocoder_path(args.vocoder, args.model), loaded.audio.mel, loaded.device)
            print(f"v2s speak: vocoder {vocoder.name}", file=sys.stderr)
        synth = None
        if "synth" in card.inputs:  # the chain: the base speaks from the video, then this model from both
            base = load_base_model(card, args.model, loaded.device)
            if base.family.vocoded and vocoder is None:
                vocoder = load_vocoder(vocoder_path(args.vocoder, args.model), base.audio.mel, base.device)
            synth, _ = speech_file(speak_in_chunks(base, crops, spk, vocoder), base.samples_per_frame)
            print(f"v2s speak: input audio from base {base.card.kind} {base.card.name} (sha256 {base.sha256[:12]})",
                  file=sys.stderr)
        wav, peak = speech_file(speak_in_chunks(loaded, crops, spk, vocoder, synth), loaded.samples_per_frame)
    except ClipError as exc:
        print(f"v2s speak: {args.video}: {exc}", file=sys.stderr)
        return 1
    except (CheckpointError, ConfigError, FileNotFoundError, OSError, RuntimeError, ValueError, KeyError) as exc:
        print(f"v2s speak: {exc}", file=sys.stderr)  # these name their file (model, vocoder, reference) themselves
        return 1
    frames, samples = len(crops), wav.shape[0] * wav.shape[1]
    scale = max(1.0, peak)  # scale down rather than clip a loud Griffin-Lim output
    write_wav(args.output, (wav[i : i + CHUNK_FRAMES].reshape(-1) / scale for i in range(0, len(wav), CHUNK_FRAMES)), sr)
    for stored in (crops, synth, wav):
        if isinstance(stored, FrameFile):
            stored.close()
    print(json.dumps({
        "frames": int(frames), "samples": int(samples), "seconds": round(samples / sr, 3), "sample_rate": sr,
        "faces": len(cropped.faces), "face": args.face,
        "model": str(args.model), "kind": card.kind, "family": card.family,
        "voice": "reference" if args.reference else "mean_training_speaker",
        "output": str(args.output), "elapsed_s": round(time.perf_counter() - start, 2),
    }))
    return 0
