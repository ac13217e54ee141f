"""Whisper as the third ASR behind WER: the ASR of the LRS3 literature, loaded through transformers.

`asr.whisper.checkpoint` is a Hugging Face hub id or a local directory holding a saved
`WhisperForConditionalGeneration` and its `WhisperProcessor`. Off by default: this pipeline
runs offline, where no hub weights can be fetched; a directory copied from a machine that has
them works offline. Decoding is greedy (deterministic), in English, without timestamps.

Text normalisation: Whisper writes numbers as digits ("bin blue at f 2 now"), the corpora as
words ("... two now"), so each run of digits is spelled out before the pipeline's own WER
normalisation (lower case, letters, digits and apostrophes) compares the two.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000  # Whisper's feature extractor works at 16 kHz only
MAX_NEW_TOKENS = 96  # our choice: a GRID sentence is about 15 tokens, an LRS3 one under 60
ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


@dataclass(frozen=True)
class WhisperConfig:
    """params.yaml `asr.whisper`."""

    enabled: bool  # off by default: offline there are no weights to load
    checkpoint: str  # hub id (e.g. openai/whisper-medium.en) or a local directory
    device: str  # auto (CUDA when present) | cpu | cuda


def spell_number(digits: str) -> str:
    """English words of a run of digits: 0-99 as numbers ("42": "forty two"), longer runs digit by digit
    (years and codes are read either way; GRID and the demo corpus only have 0-9)."""
    n = int(digits)
    if len(digits) > 2 or (len(digits) == 2 and digits[0] == "0"):
        return " ".join(ONES[int(d)] for d in digits)
    if n < 20:
        return ONES[n]
    return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])


def normalise(text: str) -> str:
    """Whisper's output with every run of digits spelled out and spaces collapsed."""
    return " ".join(re.sub(r"\d+", lambda m: f" {spell_number(m.group())} ", text).split())


def _weights_digest(checkpoint: str) -> str | None:
    """sha256 over a local checkpoint's weight files, each streamed (a medium Whisper is 1.5 GB); None for a hub id."""
    from pipeline.inference.model_dir import sha256_file

    root = Path(checkpoint)
    files = sorted([*root.glob("*.safetensors"), *root.glob("*.bin")]) if root.is_dir() else []
    if not files:
        return None
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()


class WhisperASR:
    """Greedy English transcription with a Whisper checkpoint."""

    def __init__(self, cfg: WhisperConfig):
        import transformers
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from pipeline.inference.vocoder import resolve_device

        transformers.logging.set_verbosity_error()  # generation-config advice on every call
        try:
            self.processor = WhisperProcessor.from_pretrained(cfg.checkpoint)
            self.model = WhisperForConditionalGeneration.from_pretrained(cfg.checkpoint).eval()
        except OSError as exc:  # a hub id offline, a wrong path
            raise FileNotFoundError(f"asr.whisper.checkpoint {cfg.checkpoint!r} cannot be loaded "
                                    f"({str(exc).splitlines()[0]}); copy a saved checkpoint here and name its "
                                    "directory, or set asr.whisper.enabled: false") from None
        self.device = resolve_device(cfg.device)
        self.model.to(self.device)
        self.cfg = cfg
        gen = self.model.generation_config
        # English-only checkpoints (*.en) refuse a language; multilingual ones are told English, transcribe
        self._kwargs = {"language": "en", "task": "transcribe"} if getattr(gen, "is_multilingual", False) else {}

    def identity(self) -> dict[str, Any]:
        import transformers

        return {"name": f"Whisper ({self.cfg.checkpoint}), greedy, English, digits spelled out",
                "checkpoint": self.cfg.checkpoint, "weights_sha256": _weights_digest(self.cfg.checkpoint),
                "transformers": transformers.__version__}

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        import torch

        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"Whisper transcribes {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
        features = self.processor(np.asarray(audio, dtype=np.float32), sampling_rate=SAMPLE_RATE,
                                  return_tensors="pt").input_features.to(self.device)
        with torch.no_grad():
            tokens = self.model.generate(features, do_sample=False, num_beams=1, max_new_tokens=MAX_NEW_TOKENS,
                                         **self._kwargs)
        return normalise(self.processor.batch_decode(tokens, skip_special_tokens=True)[0])
