"""HuBERT layer features at 50 Hz, from a transformers checkpoint (hub id or local directory).

Frame alignment: HuBERT's convolutional front end has a 400-sample receptive field and a
320-sample hop at 16 kHz. Padding the waveform with 40 zeros on each side (and its end up to a
multiple of 320) makes frame t centred on samples [320t, 320t + 320): exactly ceil(L / 320)
frames, two per 25 fps video frame, the same grid as the MFCC units.

The convolutional front end (linear in length: its first layer holds about 6.5 MB per second
of audio in float32) runs over the whole utterance, so its group norm (Base) sees the same
statistics as an unchunked pass. The transformer (quadratic in
length) runs on chunks of `chunk_seconds` of frames, each with `context_seconds` of extra frames
on both sides that are then dropped: kept frames stay on the global frame grid, and only the
attention's view of context further away than `context_seconds` differs from an unchunked pass.
Audio no longer than one chunk is computed in one pass, exactly as unchunked. Utterances and
windows of equal length are batched together, so no batch element is ever padded.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

SAMPLE_RATE = 16000
HOP = 320
EDGE = 40  # (receptive field 400 - hop 320) / 2
FRAME_RATE = SAMPLE_RATE / HOP

T = TypeVar("T")


class HubertUnavailable(RuntimeError):
    """The HuBERT checkpoint could not be loaded; the message says what to place where."""


@dataclass(frozen=True)
class HubertSpec:
    """Which HuBERT, which layer, and how to chunk and batch its input."""

    checkpoint: str = "facebook/hubert-large-ll60k"
    layer: int = 12
    chunk_seconds: float = 20.0
    context_seconds: float = 2.0
    max_batch: int = 8
    device: str = "auto"

    @property
    def chunk_frames(self) -> int:
        return max(1, round(self.chunk_seconds * FRAME_RATE))

    @property
    def context_frames(self) -> int:
        return max(0, round(self.context_seconds * FRAME_RATE))


def resolve_device(name: str) -> torch.device:
    """`auto` is the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _wants_normalized_input(checkpoint: str, feat_extract_norm: str) -> tuple[bool, str]:
    """Whether the checkpoint expects zero-mean unit-variance waveforms, and where that came from.

    The checkpoint's own feature-extractor config decides; without one, fairseq's rule: the
    layer-norm front ends (Large, X-Large) were trained on normalised input, Base was not.
    """
    from transformers import Wav2Vec2FeatureExtractor

    local = Path(checkpoint) / "preprocessor_config.json"
    if local.is_file():
        return bool(json.loads(local.read_text()).get("do_normalize", True)), "preprocessor_config.json"
    if not Path(checkpoint).is_dir():
        try:
            return bool(Wav2Vec2FeatureExtractor.from_pretrained(checkpoint).do_normalize), "preprocessor_config.json"
        except OSError:
            pass
    return feat_extract_norm == "layer", f"feat_extract_norm={feat_extract_norm}"


class HubertExtractor:
    """A HuBERT truncated after `layer`: 16 kHz waveforms -> (frames, hidden) float32 features."""

    def __init__(self, spec: HubertSpec):
        from transformers import HubertModel

        try:
            model = HubertModel.from_pretrained(spec.checkpoint)
        except OSError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HubertUnavailable(
                f"cannot load HuBERT from '{spec.checkpoint}' ({reason}). Without access to the model hub, "
                f"download it elsewhere (e.g. `huggingface-cli download {spec.checkpoint} --local-dir models/hubert`), "
                "copy the folder (config.json and model.safetensors or pytorch_model.bin) to this machine and set "
                "units.checkpoint to it, or set units.source: mfcc"
            ) from exc
        n_layers = model.config.num_hidden_layers
        if not 1 <= spec.layer <= n_layers:
            raise ValueError(f"units.layer={spec.layer}: {spec.checkpoint} has transformer layers 1..{n_layers}")
        # Layers after `layer` cannot change hidden_states[layer]; dropping them halves a Large model's cost at
        # layer 12. A pre-norm encoder's final layer norm belongs to its last layer's output only: without it the
        # truncated encoder returns exactly hidden_states[layer] of the full model (fairseq's layer features).
        model.encoder.layers = model.encoder.layers[: spec.layer]
        if model.config.do_stable_layer_norm:
            model.encoder.layer_norm = torch.nn.Identity()
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.model = model.eval().to(self.device)
        self.hidden_size = int(model.config.hidden_size)
        self.num_layers = n_layers
        self.normalize, self.normalize_from = _wants_normalized_input(spec.checkpoint, model.config.feat_extract_norm)

    def __call__(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of each 16 kHz waveform: ceil(len / 320) frames of `hidden_size`."""
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            frames = self._front_end([self._prepare(a) for a in audios])
            windows = [(u, *w) for u, f in enumerate(frames)
                       for w in chunk_windows(len(f), self.spec.chunk_frames, self.spec.context_frames)]
            kept: dict[tuple[int, int], np.ndarray] = {}
            for group in self._batches(windows, lambda w: w[2] - w[1]):
                hidden = self.model.encoder(torch.stack([frames[u][a:b] for u, a, b, _, _ in group])).last_hidden_state
                for (u, a, _, s, e), h in zip(group, hidden.float().cpu().numpy()):
                    kept[(u, s)] = h[s - a : e - a]
        out: list[list[np.ndarray]] = [[] for _ in audios]
        for u, _, _, s, _ in windows:
            out[u].append(kept[(u, s)])
        return [np.concatenate(parts) for parts in out]

    def _prepare(self, audio: np.ndarray) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float32)
        if x.size == 0:
            raise ValueError("empty audio")
        if self.normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        n = -(-len(x) // HOP)
        return np.pad(x, (EDGE, n * HOP - len(x) + EDGE)).astype(np.float32)

    def _front_end(self, padded: list[np.ndarray]) -> list[torch.Tensor]:
        """Projected convolutional features (frames, hidden) of whole utterances, batched by length."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(padded)
        for group in self._batches(range(len(padded)), lambda u: len(padded[u])):
            x = torch.from_numpy(np.stack([padded[u] for u in group])).to(self.device)
            hidden = self.model.feature_projection(self.model.feature_extractor(x).transpose(1, 2))
            for u, h in zip(group, hidden):
                out[u] = h
        return out

    def _batches(self, items: Iterable[T], key: Callable[[T], int]) -> Iterator[list[T]]:
        """Items of equal `key` (length) together, at most `max_batch` at a time: nothing is padded."""
        groups: dict[int, list[T]] = {}
        for item in items:
            groups.setdefault(key(item), []).append(item)
        for group in groups.values():
            for start in range(0, len(group), self.spec.max_batch):
                yield group[start : start + self.spec.max_batch]


def chunk_windows(n_frames: int, chunk: int, context: int) -> list[tuple[int, int, int, int]]:
    """`(input start, input end, kept start, kept end)` frames of each chunk of `n_frames`."""
    return [(max(0, s - context), min(n_frames, s + chunk + context), s, min(n_frames, s + chunk))
            for s in range(0, n_frames, chunk)]


_EXTRACTORS: dict[HubertSpec, HubertExtractor] = {}


def hubert_extractor(spec: HubertSpec) -> HubertExtractor:
    """The extractor for `spec`, loaded once per process."""
    if spec not in _EXTRACTORS:
        _EXTRACTORS[spec] = HubertExtractor(spec)
    return _EXTRACTORS[spec]
