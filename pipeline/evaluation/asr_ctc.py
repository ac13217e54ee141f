"""In-domain ASR: a small word-level CTC recogniser trained on the corpus's ground-truth audio.

The papers score GRID with ASRs trained or fine-tuned on GRID itself; this is that ASR for
whatever corpus the pipeline runs on. Model: per-utterance normalised log-mel (the shared
definition) -> two strided 1-D convolutions (4x fewer frames: 25 per second, one per video
frame) -> 2-layer bidirectional GRU -> linear over the training vocabulary plus the CTC blank.
Tokens are whole words: GRID and the demo corpus have small closed vocabularies, where words
train in minutes on a CPU; a word not in the training transcripts can never be output.
Decoding is greedy (best path, repeats merged, blanks dropped). It trains through the pipeline's
one training loop (pipeline.training.loop) as a `CTCTask` whose step is one epoch; the epoch with
the lowest validation WER is kept, and training stops `patience` epochs after it. The model directory (`model.pt` + card) is written like every
other model's.
"""
from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.audio.io import resample
from pipeline.audio.mel import AudioConfig, MelConfig, log_mel
from pipeline.config import parse, to_plain
from pipeline.evaluation.metrics import error_counts, normalize_text, rate
from pipeline.executor import Executor, ExecutorConfig, Failure
from pipeline.inference.card import ModelCard, require_kind
from pipeline.inference.model_dir import WEIGHTS, inputs_digest, load_model_dir, save_model_dir, sha256_file
from pipeline.layout import Layout
from pipeline.shards import ShardReader, list_shards, unpack
from pipeline.training.config import LoopConfig
from pipeline.training.distributed import DistInfo
from pipeline.training.loop import Trainer
from pipeline.training.task import Context, Task, Validation

BLANK = 0


WEIGHT_DECAY = 1e-4
CLIP_NORM = 5.0
WARMUP_FRACTION = 0.15  # of the one-cycle schedule


@dataclass(frozen=True)
class CTCConfig:
    """params.yaml `asr.ctc`: architecture and training settings (SpecAugment's are fixed here)."""

    enabled: bool  # score with this ASR (the evaluation reads it; training does not)
    conv_channels: int
    hidden: int
    layers: int
    dropout: float
    epochs: int  # at most; the epoch with the lowest val WER is kept
    patience: int  # after the warm-up, stop this many epochs after the best val WER (0: never)
    batch_size: int
    lr: float  # peak of a one-cycle schedule
    device: str  # auto (CUDA when present) | cpu | cuda
    time_masks: int = 2  # SpecAugment-style masks: the ASR must not lean on any one band or instant
    time_mask_frames: int = 15
    freq_masks: int = 2
    freq_mask_bins: int = 10


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


Item = tuple[np.ndarray, list[int]]


class CTCFeed:
    """One batch per epoch: the whole training set, which the task orders and masks with its own generator."""

    def __init__(self, items: list[Item], val_feats: list[np.ndarray], val_texts: list[str]):
        self.items, self.val_feats, self.val_texts = items, val_feats, val_texts

    def start(self, dist_info: DistInfo) -> None:
        return None

    def epoch(self, epoch: int, skip: int) -> list[dict[str, Any]]:
        return [{"items": self.items}] if skip == 0 else []

    def validation(self) -> list[dict[str, Any]] | None:
        return [{"feats": self.val_feats, "texts": self.val_texts}] if self.val_feats else None


class CTCTask(Task):
    """The recogniser, AdamW with a one-cycle schedule; a step is one epoch of shuffled, masked batches.

    Its dropout noise continues the initialisation's random stream (`reseed_after_build`), and
    the validation keeps a copy of the weights of the epoch with the lowest WER (ties: the later)
    and asks the loop to stop once `patience` epochs after the warm-up have passed without reaching it.
    """

    reseed_after_build = False

    def __init__(self, ctx: Context, cfg: CTCConfig, n_mels: int, vocab: Sequence[str], n_items: int, seed: int):
        self.ctx, self.cfg, self.vocab = ctx, cfg, list(vocab)
        self.gen = torch.Generator().manual_seed(seed)
        model = CTCRecognizer(n_mels, len(self.vocab), cfg).to(ctx.device)
        self.nets = {"asr": model}
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=WEIGHT_DECAY)
        self.optimizers = {"asr": opt}
        steps = cfg.epochs * ((n_items + cfg.batch_size - 1) // cfg.batch_size)
        self.schedulers = {"asr": torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps,
                                                                      pct_start=WARMUP_FRACTION)}
        self.ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        items: list[Item] = batch["items"]
        model, device = self.nets["asr"], self.ctx.device
        order = torch.randperm(len(items), generator=self.gen).tolist()
        total = 0.0
        for i in range(0, len(order), self.cfg.batch_size):
            feats, lengths, targets, target_lengths = _batch([items[j] for j in order[i : i + self.cfg.batch_size]])
            feats = _mask(feats, lengths, self.cfg, self.gen)
            lp, out_len = model(feats.to(device), lengths.to(device))
            loss = self.ctc(lp.transpose(0, 1), targets.to(device), out_len, target_lengths.to(device))
            total += self.optimize("asr", loss) * len(lengths)
        return {"loss": total / len(items)}

    def validate(self, batches: Iterator[dict[str, Any]]) -> Validation:
        b = next(batches)
        model = self.net("asr")
        wer = evaluate_wer(model, b["feats"], b["texts"], self.vocab, self.ctx.device)
        if self.best is None or wer <= self.best[0]:
            self.best = (wer, self.ctx.step, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        # counted from the end of the warm-up: before it a WER above 100% (inserted words) is common
        warm = max(self.best[1], math.ceil(WARMUP_FRACTION * self.cfg.epochs))
        stop = self.cfg.patience > 0 and self.ctx.step - warm >= self.cfg.patience
        return Validation({"wer": wer}, stop=stop)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "gen": self.gen.get_state(), "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.gen.set_state(state["gen"])
        self.best = state.get("best")

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The best epoch's weights (the last epoch's without a validation set)."""
        model = self.net("asr")
        if self.best is not None:
            model.load_state_dict(self.best[2])
        return model.cpu().state_dict(), {"best_epoch": self.best[1] if self.best else self.ctx.step,
                                          "val_wer": self.best[0] if self.best else None,
                                          "epochs_run": self.ctx.step}


def train(train_set: Sequence[tuple[np.ndarray, str]], val_set: Sequence[tuple[np.ndarray, str]], cfg: CTCConfig,
          seed: int, live_dir: str | os.PathLike[str] | None = None) -> tuple[CTCRecognizer, list[str], dict[str, Any]]:
    """Train on (features, transcript) pairs through the training loop; keep the epoch with the lowest validation WER.

    Returns the model (on CPU), its vocabulary and a summary (best epoch, WERs, chance level).
    Each epoch's train loss and validation WER go to DVCLive in `live_dir` (train/loss, val/wer).
    """
    if not train_set:
        raise ValueError("no training utterances for the CTC ASR")
    vocab = build_vocab([t for _, t in train_set])
    index = {w: i + 1 for i, w in enumerate(vocab)}
    items = [(f, [index[w] for w in normalize_text(t).split()]) for f, t in train_set]
    feed = CTCFeed(items, [f for f, _ in val_set], [t for _, t in val_set])
    loop = LoopConfig(steps=cfg.epochs, seed=seed, clip_norm=CLIP_NORM, amp=False, log_every=1, val_every=1,
                      checkpoint_every=cfg.epochs, keep_checkpoints=1, device=cfg.device)
    n_mels = train_set[0][0].shape[0]
    trainer = Trainer(lambda ctx: CTCTask(ctx, cfg, n_mels, vocab, len(items), seed), loop, feed, None, live_dir,
                      "", name="train_asr")
    task = trainer.fit()
    state, best = task.export()
    model = task.net("asr")
    summary = {"best_epoch": best["best_epoch"], "epochs_run": best["epochs_run"], "n_train": len(train_set), "n_val": len(val_set),
               "val_wer": best["val_wer"],
               "val_chance_wer": majority_sentence_wer([t for _, t in train_set], feed.val_texts) if val_set else None}
    return model, vocab, summary


def save(model_dir: str | os.PathLike[str], model: CTCRecognizer, vocab: Sequence[str], cfg: CTCConfig,
         audio: AudioConfig, seed: int, summary: dict[str, Any], data: dict[str, Any] | None = None) -> Path:
    """Write `model.pt` and the card (vocabulary, settings, summary) atomically."""
    card = ModelCard("asr", None, "ctc", ("audio",), {"audio": to_plain(audio)},
                     {"seed": seed, "epochs": cfg.epochs, "patience": cfg.patience, "batch_size": cfg.batch_size, "lr": cfg.lr,
                      "weight_decay": WEIGHT_DECAY, "clip_norm": CLIP_NORM},
                     data or {}, {"wer": summary["val_wer"]},
                     {"vocab": list(vocab), "mel": to_plain(audio.mel), "summary": summary}, to_plain(cfg))
    return save_model_dir(model_dir, model.state_dict(), card)


def _features_of_shard(job: tuple[str, MelConfig]) -> list[tuple[np.ndarray, str]]:
    path, mel = job
    return [(features(np.array(unpack(r, "audio")), int(r["sample_rate"]), mel), r["transcript"])
            for r in ShardReader(path).iter_rows(["audio", "sample_rate", "transcript"])]


def load_split(roi_shards: Path, split: str, mel: MelConfig, executor: Executor) -> list[tuple[np.ndarray, str]]:
    """Normalised features and transcripts of one ground-truth split, in shard order."""
    out: list[tuple[np.ndarray, str]] = []
    jobs = [(os.fspath(p), mel) for p in list_shards(roi_shards / split)]
    for result in executor.imap(_features_of_shard, jobs, desc=f"asr features {split}"):
        if isinstance(result, Failure):
            raise RuntimeError(f"asr features ({split}): {result.message}")
        out.extend(result)
    return out


@dataclass(frozen=True)
class TrainAsrConfig:
    """Stage `train_asr`: `asr.ctc`, `audio`, `seed` (and where feature extraction runs)."""

    ctc: CTCConfig
    audio: AudioConfig
    seed: int
    executor: ExecutorConfig


def train_in_domain(cfg: TrainAsrConfig, layout: Layout) -> dict[str, Any]:
    """Train the in-domain CTC ASR on the ground-truth `train` split, select on `val` -> models/asr/."""
    executor = Executor.from_config(cfg.executor)
    shards = layout.roi / "shards"
    train_set = load_split(shards, "train", cfg.audio.mel, executor)
    val_set = load_split(shards, "val", cfg.audio.mel, executor)
    model, vocab, summary = train(train_set, val_set, cfg.ctc, cfg.seed, layout.asr_reports)
    files = list_shards(shards / "train") + list_shards(shards / "val")
    save(layout.asr, model, vocab, cfg.ctc, cfg.audio, cfg.seed, summary, {"train+val": inputs_digest(files)})
    print(f"train_asr: {summary['n_train']} train / {summary['n_val']} val utterances, vocabulary {len(vocab)}, "
          f"best epoch {summary['best_epoch']} of {summary['epochs_run']} run: val WER {summary['val_wer']}% "
          f"(most frequent training sentence: {summary['val_chance_wer']}%)", file=sys.stderr, flush=True)
    return summary


class CTCASR:
    """A trained CTC recogniser loaded from `models/asr/`."""

    name = "ctc"

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.model_dir = Path(model_dir)
        state, card = load_model_dir(self.model_dir)
        require_kind(card, ("asr",), self.model_dir)
        self.vocab: list[str] = list(card.extra["vocab"])
        self.mel = parse(MelConfig, card.extra["mel"], f"{self.model_dir} card extra.mel")
        self.summary: dict[str, Any] = dict(card.extra["summary"])
        self.model = CTCRecognizer(self.mel.n_mels, len(self.vocab), parse(CTCConfig, card.model, f"{self.model_dir} card model"))
        self.model.load_state_dict(state)
        self.model.eval()

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        """Greedy transcript of one utterance."""
        feats = features(audio, sample_rate, self.mel)
        return transcribe_features(self.model, [feats], self.vocab, torch.device("cpu"))[0]

    def identity(self) -> dict[str, Any]:
        """Model file hash, vocabulary size and its own validation WER, for the details files."""
        digest = sha256_file(self.model_dir / WEIGHTS)
        return {"name": "in-domain word CTC (conv + BiGRU, trained on the corpus's ground-truth train audio)",
                "model_sha256": digest, "vocab_size": len(self.vocab), **{k: self.summary.get(k) for k in
                ("n_train", "val_wer", "val_chance_wer", "best_epoch", "epochs_run")}}
