"""Sharded Parquet storage for per-utterance arrays.

A stage writes a handful of shard files (per split and speaker, at most `max_rows` utterances
each) instead of one file per utterance: DVC hashes every output file, and GRID alone has
33,000 utterances. Each row is one utterance; an array column `x` is stored as raw bytes in
`x` with its shape in `x_shape` and dtype in `x_dtype`. Small row groups let a reader fetch
one utterance without reading the whole shard.
"""
from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.atomic import atomic_path

ROW_GROUP_SIZE = 8


def pack(name: str, array: np.ndarray) -> dict[str, Any]:
    """Columns holding `array` under `name`: bytes, shape and dtype."""
    a = np.ascontiguousarray(array)
    return {name: a.tobytes(), f"{name}_shape": list(a.shape), f"{name}_dtype": a.dtype.str}


def unpack(row: dict[str, Any], name: str) -> np.ndarray:
    """Inverse of `pack` for one row (a dict as read from a shard)."""
    shape = tuple(int(s) for s in row[f"{name}_shape"])
    return np.frombuffer(row[name], dtype=np.dtype(row[f"{name}_dtype"])).reshape(shape)


def shard_relpath(split: str, speaker: str, index: int) -> str:
    """Relative path of a shard: `<split>/<speaker>-<index>.parquet`."""
    return f"{split}/{speaker}-{index:03d}.parquet"


def plan_shards(keys: Iterable[tuple[str, str, str]], max_rows: int) -> dict[str, list[str]]:
    """Group `(split, speaker, utt_id)` keys into shards, deterministically.

    Returns `{relpath: [utt_id, ...]}` with utterances sorted by id inside each
    (split, speaker) group and cut into runs of at most `max_rows`.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for split, speaker, utt in keys:
        groups.setdefault((split, speaker), []).append(utt)
    plan: dict[str, list[str]] = {}
    for (split, speaker), utts in sorted(groups.items()):
        utts = sorted(utts)
        for i in range(0, len(utts), max_rows):
            plan[shard_relpath(split, speaker, i // max_rows)] = utts[i : i + max_rows]
    return plan


def write_shard(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write `rows` (dicts with identical keys) to one Parquet shard, atomically."""
    if not rows:
        raise ValueError(f"refusing to write an empty shard: {path}")
    table = pa.Table.from_pylist(list(rows))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")


class ShardReader:
    """Random and sequential access to one shard without loading it whole."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._file = pq.ParquetFile(self.path)
        meta = self._file.metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self._starts = np.cumsum([0] + sizes[:-1]).tolist()
        self._len = int(sum(sizes))
        self.utt_ids: list[str] = self._file.read(columns=["utt_id"]).column(0).to_pylist()

    def __len__(self) -> int:
        return self._len

    @property
    def columns(self) -> list[str]:
        return self._file.schema_arrow.names

    def read(self, index: int, columns: Sequence[str] | None = None) -> dict[str, Any]:
        """Row `index` as a dict (only `columns` when given)."""
        if not 0 <= index < self._len:
            raise IndexError(f"{self.path}: row {index} out of range ({self._len} rows)")
        group = bisect_right(self._starts, index) - 1
        table = self._file.read_row_group(group, columns=_with_arrays(columns, self.columns))
        return table.slice(index - self._starts[group], 1).to_pylist()[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_rows()

    def iter_rows(self, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """All rows in order, one row group in memory at a time."""
        cols = _with_arrays(columns, self.columns)
        for group in range(self._file.metadata.num_row_groups):
            yield from self._file.read_row_group(group, columns=cols).to_pylist()


def _with_arrays(columns: Sequence[str] | None, available: Sequence[str]) -> list[str] | None:
    """Expand array column names to include their `_shape`/`_dtype` companions."""
    if columns is None:
        return None
    out: list[str] = []
    for c in columns:
        out.append(c)
        out.extend(x for x in (f"{c}_shape", f"{c}_dtype") if x in available)
    return out


def list_shards(root: str | os.PathLike[str]) -> list[Path]:
    """Every shard under `root`, sorted (temporary `.partial` files excluded)."""
    return sorted(p for p in Path(root).rglob("*.parquet") if ".partial" not in p.name and not p.name.startswith("."))
