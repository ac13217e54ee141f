"""The two tables that start the pipeline: `data/raw/sources.parquet` and `data/manifest.parquet`.

Both have fixed Arrow schemas (so an all-null column keeps its type) and rows sorted by
`utt_id`, and carry no timestamps: the same inputs and params give the same bytes.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.atomic import atomic_path
from pipeline.corpora.alignments import read_align, transcript, transcript_from_name
from pipeline.executor import Executor, Failure
from pipeline.splits import SPLITS, Protocol, assign
from pipeline.video.probe import ProbeError, ffmpeg_exe, probe

SOURCES_SCHEMA = pa.schema(
    [("utt_id", pa.string()), ("speaker", pa.string()), ("video_path", pa.string()), ("align_path", pa.string())]
)
WORD = pa.struct([("word", pa.string()), ("start", pa.float64()), ("end", pa.float64())])
MANIFEST_SCHEMA = pa.schema(
    [
        ("utt_id", pa.string()),
        ("corpus", pa.string()),
        ("speaker", pa.string()),
        ("split", pa.string()),
        ("source", pa.string()),
        ("transcript", pa.string()),
        ("words", pa.list_(WORD)),
        ("duration", pa.float64()),
        ("fps", pa.float64()),
        ("n_frames", pa.int64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("audio_sr", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)
_PROBED = ("transcript", "words", "duration", "fps", "n_frames", "width", "height", "audio_sr")
_FRAME_COUNT = re.compile(r"frame=\s*(\d+)")


def write_sources(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write the download stage's clip list atomically, sorted by utt_id (ids must be unique)."""
    missing = [c for c in SOURCES_SCHEMA.names if c not in frame.columns]
    if missing:
        raise ValueError(f"sources table lacks columns {missing}")
    if frame["utt_id"].duplicated().any():
        raise ValueError(f"duplicate utt_id in sources: {frame['utt_id'][frame['utt_id'].duplicated()].tolist()[:5]}")
    rows = frame[SOURCES_SCHEMA.names].sort_values("utt_id", kind="stable")
    records = [{k: (None if pd.isna(v) else str(v)) for k, v in r.items()} for r in rows.to_dict("records")]
    _write(pa.Table.from_pylist(records, schema=SOURCES_SCHEMA), path)


def read_sources(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The sources table as a DataFrame."""
    return pq.read_table(path, schema=SOURCES_SCHEMA).to_pandas()


def inspect_clip(item: tuple[str, str | None]) -> dict[str, Any]:
    """Probe one `(video_path, align_path)` and read its transcript; never raises for bad input.

    Nothing is decoded: streams come from the container header, `n_frames` from counting the
    video packets (GRID's MPEG headers say 2.98 s for clips of 75 frames at 25 fps).
    """
    video, align = item
    out: dict[str, Any] = dict.fromkeys(_PROBED)
    try:
        info = probe(video)
    except ProbeError as exc:
        return {**out, "status": "rejected", "reason": f"unreadable media: {exc}"}
    out.update(duration=info.duration, fps=info.fps, width=info.width, height=info.height, audio_sr=info.audio_sr)
    reason = None
    if not info.has_video:
        reason = "no video stream"
    elif not info.has_audio:
        reason = "no audio stream"
    elif not info.fps or not info.duration:
        reason = f"no frame rate or duration in the container (fps={info.fps}, duration={info.duration})"
    elif not (n_frames := count_frames(video)):
        reason = "no video frames could be read"
    else:
        out["n_frames"] = n_frames
        try:
            if align:
                words = read_align(align)
                out.update(words=[vars(w) for w in words], transcript=transcript(words))
            else:
                out["transcript"] = transcript_from_name(video)
        except (OSError, ValueError) as exc:  # AlignmentError is a ValueError
            reason = f"no transcript: {exc}"
    return {**out, "status": "rejected" if reason else "ok", "reason": reason}


def count_frames(video: str | os.PathLike[str]) -> int | None:
    """Frames in the first video stream, counted by copying its packets to a null muxer (no decoding)."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", os.fspath(video), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    report = subprocess.run(command, capture_output=True, text=True, check=False).stderr
    counts = _FRAME_COUNT.findall(report)
    return int(counts[-1]) if counts else None


def build_manifest(sources: pd.DataFrame, corpus: str, protocol: Protocol, seed: int, executor: Executor) -> pa.Table:
    """Probe every source through `executor`, assign splits to the usable clips, return the table."""
    sources = sources.sort_values("utt_id", kind="stable").reset_index(drop=True)
    items = [(str(v), None if pd.isna(a) else str(a)) for v, a in zip(sources["video_path"], sources["align_path"])]
    rows = []
    for src, result in zip(sources.itertuples(index=False), executor.imap(inspect_clip, items, desc="probe")):
        if isinstance(result, Failure):  # a crash in our own code, not bad media: still recorded per clip
            result = {**dict.fromkeys(_PROBED), "status": "rejected", "reason": f"probe failed: {result.message}"}
        rows.append(
            {"utt_id": src.utt_id, "corpus": corpus, "speaker": src.speaker, "split": None, "source": src.video_path, **result}
        )
    usable = [r for r in rows if r["status"] == "ok"]
    for row, placed in zip(usable, assign([(r["utt_id"], r["speaker"]) for r in usable], protocol, seed)):
        row["split"] = placed.split
        if placed.reason:
            row.update(status="rejected", reason=placed.reason)
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def write_manifest(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Write the manifest atomically."""
    _write(table.cast(MANIFEST_SCHEMA), path)


def split_counts(table: pa.Table) -> Counter[str]:
    """Usable (status ok) clips per split."""
    status = table.column("status").to_pylist()
    return Counter(s for s, st in zip(table.column("split").to_pylist(), status) if st == "ok")


def summary(table: pa.Table, protocol: Protocol) -> str:
    """One line: clip counts per split and rejections by reason."""
    status = table.column("status").to_pylist()
    splits = split_counts(table)
    reasons = Counter(_reason_kind(r) for r, st in zip(table.column("reason").to_pylist(), status) if st == "rejected")
    per_split = ", ".join(f"{s} {splits.get(s, 0)}" for s in SPLITS)
    rejected = sum(reasons.values())
    detail = f" ({'; '.join(f'{k}: {n}' for k, n in reasons.most_common())})" if rejected else ""
    return f"{len(status)} clips, protocol {protocol.name}: {sum(splits.values())} ok ({per_split}), {rejected} rejected{detail}"


def _reason_kind(reason: str) -> str:
    # Group "unreadable media: ffmpeg cannot read /x/y.mpg: ..." under its first clause.
    return reason.split(":")[0]


def _write(table: pa.Table, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
