"""The one driver of the feature stages: roi shards in, aligned feature shards out.

A feature stage reads the roi shards (`data/roi/shards/<split>/<speaker>-NNN.parquet`), runs a
batch function over their utterances through the shared `Executor`, and writes one shard per
roi shard at the same relative path under `data/features/<name>/`, with the same rows in the
same order and `utt_id` first. An utterance whose features fail keeps its row (`status`
`failed`, a one-line `reason`, null feature columns), so row i of a feature shard is always
row i of its roi shard; the stage's JSON side file lists every failure as well.
"""
from __future__ import annotations

import functools
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipeline.audio.io import resample
from pipeline.executor import Executor, Failure
from pipeline.shards import ShardReader, list_shards, unpack, write_shard

# Above this share of failed utterances a stage exits non-zero (after writing its outputs, so
# the failures can be read): a feature stage that loses a tenth of the corpus is broken.
MAX_FAILED_FRACTION = 0.1


@dataclass(frozen=True)
class UttKey:
    """Where an utterance lives in the roi shards, and its length in video frames."""

    utt_id: str
    speaker: str
    split: str
    shard: str
    row: int
    n_frames: int
    fps: float


@dataclass(frozen=True)
class Utterance:
    """An utterance's key with its roi audio (float32 mono)."""

    key: UttKey
    audio: np.ndarray
    sample_rate: int

    def audio_at(self, sample_rate: int) -> np.ndarray:
        """The audio at `sample_rate`, refusing empty or non-finite signals with a clear reason."""
        if self.audio.size == 0:
            raise ValueError("empty audio")
        if not np.isfinite(self.audio).all():
            raise ValueError("audio has non-finite samples (NaN or inf)")
        return resample(self.audio, self.sample_rate, sample_rate)


Result = dict[str, Any] | Failure
BatchFn = Callable[[list[Utterance]], list[Result]]


def index_roi(root: str | Path) -> list[UttKey]:
    """Every utterance of the roi shards under `root`, in shard and row order."""
    root = Path(root)
    shards = list_shards(root)
    if not shards:
        raise FileNotFoundError(f"no roi shards under {root}: run the roi stage first (dvc repro roi)")
    keys: list[UttKey] = []
    for path in shards:
        rel = path.relative_to(root).as_posix()
        cols = pq.read_table(path, columns=["utt_id", "speaker", "split", "n_frames", "fps"]).to_pydict()
        for row, values in enumerate(zip(*cols.values())):
            utt, speaker, split, n_frames, fps = values
            keys.append(UttKey(utt, speaker, split, rel, row, int(n_frames), float(fps)))
    return keys


def iter_utterances(root: str | Path, keys: Sequence[UttKey]) -> Iterator[Utterance]:
    """The utterances of `keys` with their audio, reading one shard at a time."""
    root = Path(root)
    by_shard: dict[str, list[UttKey]] = {}
    for key in keys:
        by_shard.setdefault(key.shard, []).append(key)
    for shard, wanted in by_shard.items():
        rows = {k.row: k for k in wanted}
        reader = ShardReader(root / shard)
        for index, row in enumerate(reader.iter_rows(["utt_id", "audio", "sample_rate"])):
            key = rows.get(index)
            if key is None:
                continue
            if row["utt_id"] != key.utt_id:
                raise ValueError(f"{root / shard} row {index} is {row['utt_id']}, expected {key.utt_id}: the roi shards changed")
            yield Utterance(key, unpack(row, "audio").astype(np.float32), int(row["sample_rate"]))


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most `size` items."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def guarded(fn: Callable[[Utterance], dict[str, Any]], utt: Utterance) -> Result:
    """`fn(utt)`, or a `Failure` naming the utterance's problem."""
    try:
        return fn(utt)
    except Exception as exc:  # noqa: BLE001 - recorded per utterance, never dropped
        return Failure(f"{type(exc).__name__}: {exc}".splitlines()[0], traceback.format_exc())


def _each(fn: Callable[[Utterance], dict[str, Any]], batch: list[Utterance]) -> list[Result]:
    return [guarded(fn, u) for u in batch]


def per_utterance(fn: Callable[[Utterance], dict[str, Any]]) -> BatchFn:
    """A batch function applying `fn` to each utterance, each failing on its own (picklable)."""
    return functools.partial(_each, fn)


def map_batches(fn: BatchFn, root: str | Path, keys: Sequence[UttKey], executor: Executor,
                batch_size: int = 1, desc: str = "") -> Iterator[tuple[UttKey, Result]]:
    """`(key, result)` for every key, shard by shard; a batch that raises fails each of its utterances."""
    sent: deque[list[UttKey]] = deque()

    def batches() -> Iterator[list[Utterance]]:
        for batch in batched(iter_utterances(root, keys), batch_size):
            sent.append([u.key for u in batch])
            yield batch

    for out in executor.imap(fn, batches(), desc=desc, total=ceil(len(keys) / batch_size)):
        batch_keys = sent.popleft()
        if isinstance(out, Failure):
            out = [out] * len(batch_keys)
        if len(out) != len(batch_keys):
            raise RuntimeError(f"{desc}: a batch of {len(batch_keys)} utterances returned {len(out)} results")
        yield from zip(batch_keys, out)


def fit_frames(x: np.ndarray, n: int) -> np.ndarray:
    """Trim `x` to `n` frames along axis 0, or pad it by repeating its last frame."""
    if len(x) >= n:
        return x[:n]
    if len(x) == 0:
        raise ValueError(f"no frames to pad to {n}")
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)])


@dataclass
class Outcome:
    """How many utterances a stage processed, and why each failure failed."""

    name: str
    ok: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def summary(self) -> dict[str, Any]:
        return {"utterances": self.total, "ok": self.ok, "failed": len(self.failures), "failures": self.failures}

    def line(self) -> str:
        first = f"; first: {self.failures[0]['utt_id']}: {self.failures[0]['reason']}" if self.failures else ""
        return f"{self.name}: {self.ok}/{self.total} utterances ok, {len(self.failures)} failed{first}"

    def check(self, max_failed_fraction: float = MAX_FAILED_FRACTION) -> None:
        """Raise when more than `max_failed_fraction` of the utterances failed."""
        if self.total and len(self.failures) / self.total > max_failed_fraction:
            raise RuntimeError(f"{self.line()} (more than {max_failed_fraction:.0%} failed)")


def write_aligned(out_root: str | Path, results: Iterable[tuple[UttKey, Result]], name: str) -> Outcome:
    """Write results (in roi order) as shards mirroring the roi shards; return the outcome."""
    out_root = Path(out_root)
    outcome = Outcome(name)
    done: set[str] = set()
    shard: str | None = None
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        if shard is None:
            return
        columns: dict[str, None] = {}
        for r in rows:
            columns.update(dict.fromkeys(r))
        write_shard(out_root / shard, [{c: r.get(c) for c in columns} for r in rows])
        done.add(shard)

    for key, result in results:
        if key.shard != shard:
            flush()
            if key.shard in done:
                raise RuntimeError(f"{name}: results for {key.shard} are not contiguous")
            shard, rows = key.shard, []
        if len(rows) != key.row:
            raise RuntimeError(f"{name}: {key.shard} row {key.row} arrived after {len(rows)} rows")
        if isinstance(result, Failure):
            outcome.failures.append({"utt_id": key.utt_id, "shard": key.shard, "reason": result.message})
            rows.append({"utt_id": key.utt_id, "status": "failed", "reason": result.message})
        else:
            outcome.ok += 1
            rows.append({"utt_id": key.utt_id, "status": "ok", "reason": None, **result})
    flush()
    return outcome
