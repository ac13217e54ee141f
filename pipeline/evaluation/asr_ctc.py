"""In-domain ASR: a small word-level CTC recogniser trained on the corpus's ground-truth audio.

The papers score GRID with ASRs trained or fine-tuned on GRID itself; this is that ASR for
whatever corpus the pipeline runs on. Model: per-utterance normalised log-mel (the shared
definition) -> two strided 1-D convolutions (4x fewer frames: 25 per second, one per video
frame) -> 2-layer bidirectional GRU -> linear over the training vocabulary plus the CTC blank.
Tokens are whole words: GRID and the demo corpus have small closed vocabularies, where words
train in minutes on a CPU; a word not in the training transcripts can never be output.
Decoding is greedy (best path, repeats merged, blanks dropped). The checkpoint with the lowest
validation WER is kept.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pipeline.atomic import atomic_dir
from pipeline.audio.io import resample
from pipeline.audio.mel import MelConfig, log_mel
from pipeline.evaluation.metrics import error_counts, normalize_text, rate

BLANK = 0


@dataclass(frozen=True)
class CTCConfig:
    """Architecture and training settings (params.yaml `asr.ctc`)."""

    conv_channels: int = 128
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.1
    epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-3
    time_masks: int = 2  # SpecAugment-style masks: the ASR must not lean on any one band or instant
    time_mask_frames: int = 15
    freq_masks: int = 2
    freq_mask_bins: int = 10
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "CTCConfig":
        section = ((params.get("asr") or {}).get("ctc")) or {}
        fields = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        fields.setdefault("seed", params.get("seed", cls.seed))
        return cls(**fields)


class CTCRecognizer(nn.Module):
    """Normalised log-mel (B, n_mels, F) -> log-probabilities (B, F // 4, n_tokens + 1)."""

    def __init__(self, n_mels: int, n_tokens: int, cfg: CTCConfig):
        super().__init__()
        c = cfg.conv_channels
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, c, 5, stride=2, padding=2), nn.BatchNorm1d(c), nn.GELU(),
            nn.Conv1d(c, c, 5, stride=2, padding=2), nn.BatchNorm1d(c), nn.GELU(),
        )
        self.rnn = nn.GRU(c, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.out = nn.Linear(2 * cfg.hidden, n_tokens + 1)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(2):  # each conv: kernel 5, stride 2, padding 2
            lengths = (lengths - 1) // 2 + 1
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(feats).transpose(1, 2)
        out_len = self.output_lengths(lengths)
        packed = nn.utils.rnn.pack_padded_sequence(x, out_len.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.out(y).log_softmax(-1), out_len


def features(audio: np.ndarray, sample_rate: int, mel: MelConfig) -> np.ndarray:
    """Log-mel with per-utterance mean/variance normalisation per band (gain/channel invariant)."""
    x = log_mel(resample(np.asarray(audio, dtype=np.float32), sample_rate, mel.sample_rate), mel)
    return ((x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-5)).astype(np.float32)


def build_vocab(transcripts: Sequence[str]) -> list[str]:
    """Sorted distinct words of the training transcripts (token i+1 is vocab[i]; 0 is blank)."""
    return sorted({w for t in transcripts for w in normalize_text(t).split()})


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, vocab: Sequence[str]) -> list[str]:
    """Best-path CTC decoding of a batch into word strings."""
    best = log_probs.argmax(-1).cpu().numpy()
    out = []
    for seq, n in zip(best, lengths.cpu().numpy()):
        seq = seq[:n]
        keep = seq[(seq != BLANK) & np.r_[True, seq[1:] != seq[:-1]]]
        out.append(" ".join(vocab[i - 1] for i in keep))
    return out


def majority_sentence_wer(train_texts: Sequence[str], eval_texts: Sequence[str]) -> float:
    """Chance level: WER (%) of always answering the most frequent training transcript."""
    guess = Counter(normalize_text(t) for t in train_texts).most_common(1)[0][0]
    counts = [error_counts(t, guess) for t in eval_texts]
    return rate([c["word_errors"] for c in counts], [c["ref_words"] for c in counts])


def _device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def _batch(items: Sequence[tuple[np.ndarray, list[int]]]) -> tuple[torch.Tensor, ...]:
    lengths = torch.tensor([f.shape[1] for f, _ in items])
    feats = torch.zeros(len(items), items[0][0].shape[0], int(lengths.max()))
    for i, (f, _) in enumerate(items):
        feats[i, :, : f.shape[1]] = torch.from_numpy(f)
    targets = torch.tensor([t for _, ts in items for t in ts], dtype=torch.long)
    target_lengths = torch.tensor([len(ts) for _, ts in items])
    return feats, lengths, targets, target_lengths


def _mask(feats: torch.Tensor, lengths: torch.Tensor, cfg: CTCConfig, gen: torch.Generator) -> torch.Tensor:
    feats = feats.clone()
    for i, n in enumerate(lengths.tolist()):
        for _ in range(cfg.freq_masks):
            w = int(torch.randint(0, cfg.freq_mask_bins + 1, (1,), generator=gen))
            f0 = int(torch.randint(0, max(1, feats.shape[1] - w), (1,), generator=gen))
            feats[i, f0 : f0 + w, :n] = 0.0
        for _ in range(cfg.time_masks):
            w = int(torch.randint(0, cfg.time_mask_frames + 1, (1,), generator=gen))
            t0 = int(torch.randint(0, max(1, n - w), (1,), generator=gen))
            feats[i, :, t0 : t0 + w] = 0.0
    return feats


def evaluate_wer(model: CTCRecognizer, feats: Sequence[np.ndarray], texts: Sequence[str], vocab: Sequence[str],
                 device: torch.device, batch_size: int = 32) -> float:
    """Corpus WER (%) of `model` on normalised features with reference texts."""
    hyps = transcribe_features(model, feats, vocab, device, batch_size)
    counts = [error_counts(t, h) for t, h in zip(texts, hyps)]
    return rate([c["word_errors"] for c in counts], [c["ref_words"] for c in counts])


@torch.no_grad()
def transcribe_features(model: CTCRecognizer, feats: Sequence[np.ndarray], vocab: Sequence[str],
                        device: torch.device, batch_size: int = 32) -> list[str]:
    """Greedy transcripts of a list of normalised feature matrices."""
    model.eval()
    out: list[str] = []
    for i in range(0, len(feats), batch_size):
        x, lengths, _, _ = _batch([(f, []) for f in feats[i : i + batch_size]])
        lp, out_len = model(x.to(device), lengths.to(device))
        out.extend(greedy_decode(lp, out_len, vocab))
    return out


def train(train_set: Sequence[tuple[np.ndarray, str]], val_set: Sequence[tuple[np.ndarray, str]], cfg: CTCConfig,
          log: Callable[[int, dict[str, float]], None] | None = None) -> tuple[CTCRecognizer, list[str], dict[str, Any]]:
    """Train on (features, transcript) pairs; keep the epoch with the lowest validation WER.

    Returns the model (on CPU), its vocabulary and a summary (best epoch, WERs, chance level).
    `log(epoch, values)` receives each epoch's train loss and validation WER.
    """
    if not train_set:
        raise ValueError("no training utterances for the CTC ASR")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = _device(cfg.device)
    vocab = build_vocab([t for _, t in train_set])
    index = {w: i + 1 for i, w in enumerate(vocab)}
    items = [(f, [index[w] for w in normalize_text(t).split()]) for f, t in train_set]
    model = CTCRecognizer(train_set[0][0].shape[0], len(vocab), cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = cfg.epochs * ((len(items) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    val_feats, val_texts = [f for f, _ in val_set], [t for _, t in val_set]
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(items), generator=gen).tolist()
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            feats, lengths, targets, target_lengths = _batch([items[j] for j in order[i : i + cfg.batch_size]])
            feats = _mask(feats, lengths, cfg, gen)
            lp, out_len = model(feats.to(device), lengths.to(device))
            loss = ctc(lp.transpose(0, 1), targets.to(device), out_len, target_lengths.to(device))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(lengths)
        values = {"train_loss": total / len(items)}
        if val_set:
            values["val_wer"] = evaluate_wer(model, val_feats, val_texts, vocab, device)
        if log:
            log(epoch, values)
        score = values.get("val_wer", -epoch)  # without a validation split the last epoch is kept
        if best is None or score <= best[0]:
            best = (score, epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    assert best is not None
    model.load_state_dict(best[2])
    summary = {"best_epoch": best[1], "n_train": len(train_set), "n_val": len(val_set),
               "val_wer": best[0] if val_set else None,
               "val_chance_wer": majority_sentence_wer([t for _, t in train_set], val_texts) if val_set else None}
    return model.cpu(), vocab, summary


def save(model_dir: str | os.PathLike[str], model: CTCRecognizer, vocab: Sequence[str], cfg: CTCConfig,
         mel: MelConfig, summary: dict[str, Any]) -> Path:
    """Write `model.pt` (state dict) and `config.json` (vocab, settings, summary) atomically."""
    with atomic_dir(model_dir) as tmp:
        torch.save(model.state_dict(), tmp / "model.pt")
        config = {"vocab": list(vocab), "ctc": asdict(cfg), "mel": asdict(mel), "summary": summary}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return Path(model_dir)


class CTCASR:
    """A trained CTC recogniser loaded from `models/asr/`."""

    name = "ctc"

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.model_dir = Path(model_dir)
        config = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        self.vocab: list[str] = config["vocab"]
        self.mel = MelConfig(**config["mel"])
        self.summary: dict[str, Any] = config["summary"]
        cfg = CTCConfig(**config["ctc"])
        self.model = CTCRecognizer(self.mel.n_mels, len(self.vocab), cfg)
        self.model.load_state_dict(torch.load(self.model_dir / "model.pt", map_location="cpu", weights_only=True))
        self.model.eval()

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        """Greedy transcript of one utterance."""
        feats = features(audio, sample_rate, self.mel)
        return transcribe_features(self.model, [feats], self.vocab, torch.device("cpu"))[0]

    def identity(self) -> dict[str, Any]:
        """Model file hash, vocabulary size and its own validation WER, for the metrics files."""
        digest = hashlib.sha256((self.model_dir / "model.pt").read_bytes()).hexdigest()
        return {"name": "in-domain word CTC (conv + BiGRU, trained on the corpus's ground-truth train audio)",
                "model_sha256": digest, "vocab_size": len(self.vocab), **{k: self.summary.get(k) for k in
                ("n_train", "val_wer", "val_chance_wer", "best_epoch")}}
