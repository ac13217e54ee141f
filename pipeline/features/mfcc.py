"""MFCC + deltas + delta-deltas at 50 Hz: the features HuBERT's first iteration clustered.

As fairseq's HuBERT recipe (`simple_kmeans/dump_mfcc_feature.py`): Kaldi MFCCs (13 cepstra,
23 mel bins, 25 ms Povey window, no dither, so deterministic) with first and second deltas,
39 dimensions. The frame shift is 20 ms instead of the recipe's 10 ms, so the units share
HuBERT's 50 Hz grid: with Kaldi's `snip_edges=False`, frame t is centred on samples
[320t, 320t + 320) at 16 kHz, exactly like `pipeline.features.hubert`.
"""
from __future__ import annotations

import numpy as np
import torch
from torchaudio.compliance import kaldi
from torchaudio.functional import compute_deltas

SAMPLE_RATE = 16000
FRAME_SHIFT_MS = 20.0
FRAME_LENGTH_MS = 25.0
DIM = 39


def mfcc_features(audio: np.ndarray) -> np.ndarray:
    """(frames, 39) float32 MFCC+deltas of 16 kHz audio: round(len / 320) frames at 50 Hz."""
    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
    with torch.inference_mode():
        mfcc = kaldi.mfcc(wav, sample_frequency=SAMPLE_RATE, frame_shift=FRAME_SHIFT_MS,
                          frame_length=FRAME_LENGTH_MS, use_energy=False, snip_edges=False)
        cep = mfcc.T  # compute_deltas runs along the last (time) axis
        deltas = compute_deltas(cep)
        feats = torch.cat([cep, deltas, compute_deltas(deltas)]).T
    return feats.numpy().astype(np.float32)
