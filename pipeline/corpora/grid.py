"""The GRID audio-visual sentence corpus (Cooke et al. 2006): download, extract, list clips.

`corpus.grid.source` chooses where the clips come from:
- `sheffield`: the official server, per speaker `sN/video/sN.mpg_vcd.zip` (videos, each with its
  own audio track) and `sN/align/sN.tar` (word alignments);
- `zenodo`: record 3625687 for the videos (`sN.zip`). Its `alignments.zip` assigns alignment
  folders to the wrong speakers (lhotse had to remap them), so alignments still come from
  Sheffield;
- a local directory with an existing copy, used in place (nothing is copied or fetched):
  `sN/**/*.mpg` per speaker, or `*.mpg` directly in it. Alignments are looked for beside each
  video, then in `sN/align/`. Clips lying directly in the directory have no speaker label;
  they get speaker `unknown` (kept whatever `speakers` says) and each protocol decides how
  to place them (see `pipeline.splits`).
Downloads land in `data/downloads/` (outside DVC, so an interrupted transfer resumes on the
next run) with their sha256 pinned in `downloads.lock.json`; archives are extracted into
`data/raw/grid/sN/`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.corpora.archive import extract
from pipeline.corpora.config import GridConfig
from pipeline.corpora.fetch import ChecksumLock, fetch
from pipeline.splits import UNKNOWN_SPEAKER

SPEAKERS = tuple(f"s{i}" for i in range(1, 35) if i != 21)
NO_VIDEO = {"s21": "GRID talker s21 has no video (the corpus distributes only its audio)"}
COLUMNS = ["utt_id", "speaker", "video_path", "align_path"]


def download(raw_dir: Path, cfg: GridConfig, downloads: Path, lock_file: Path) -> pd.DataFrame:
    """Fetch (or find) the GRID clips `cfg` asks for; one row per clip, sorted by utt_id.

    Archives go to `downloads` (outside DVC, so transfers resume), their sha256 to `lock_file`.
    """
    source = cfg.source
    speakers = resolve_speakers(cfg.speakers)
    sheffield = cfg.sheffield_url.rstrip("/")
    if source in ("sheffield", "zenodo"):
        zenodo = cfg.zenodo_url.rstrip("/")
        video_base = sheffield if source == "sheffield" else zenodo
        if source == "zenodo":
            print("grid: videos from Zenodo, alignments from Sheffield (Zenodo's alignments.zip files them under the wrong speakers)")
        lock = ChecksumLock(lock_file)
        frames, failures = [], []
        for speaker in speakers:
            # One speaker's failure must not waste the others' transfers: finish them, then report.
            try:
                frames.append(_download_speaker(speaker, source, video_base, sheffield, raw_dir, downloads, lock))
            except (OSError, RuntimeError, ValueError) as exc:
                failures.append(f"{speaker}: {exc}")
        if failures:
            raise RuntimeError(
                f"GRID download failed for {len(failures)} of {len(speakers)} speaker(s); finished archives stay in "
                f"{downloads} and the next run resumes.\n" + "\n".join(failures)
            )
        return _sorted(pd.concat(frames, ignore_index=True))
    return scan_local(Path(source), speakers)


def resolve_speakers(value: tuple[str, ...] | str) -> list[str]:
    """`all` or a list of GRID speaker ids, checked; s21 and unknown ids raise a `ValueError`."""
    if value == "all":
        return list(SPEAKERS)
    wanted = [str(s) for s in ([value] if isinstance(value, str) else value)]
    for speaker in wanted:
        if speaker in NO_VIDEO:
            raise ValueError(f"{NO_VIDEO[speaker]}: remove {speaker} from corpus.grid.speakers")
        if speaker not in SPEAKERS:
            raise ValueError(f"{speaker!r} is not a GRID speaker (s1..s34 without s21)")
    return sorted(set(wanted), key=SPEAKERS.index)


def video_url(speaker: str, source: str, base: str) -> str:
    """URL of a speaker's video archive on `source` (`sheffield` or `zenodo`)."""
    if source == "zenodo":
        return f"{base}/{speaker}.zip"
    return f"{base}/{speaker}/video/{speaker}.mpg_vcd.zip"


def align_url(speaker: str, sheffield: str) -> str:
    """URL of a speaker's alignment tar on the Sheffield server."""
    return f"{sheffield}/{speaker}/align/{speaker}.tar"


def scan_local(root: Path, speakers: list[str]) -> pd.DataFrame:
    """Clips of an existing GRID copy at `root`, in place (absolute paths)."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(
            f"corpus.grid.source {str(root)!r} is neither `sheffield`, `zenodo` nor an existing directory"
        )
    rows = [_row(UNKNOWN_SPEAKER, video, _alignment_beside(video)) for video in sorted(root.glob("*.mpg"))]
    for speaker in speakers:
        folder = root / speaker
        if folder.is_dir():
            for video in _videos(folder):
                align = _alignment_beside(video) or _existing(folder / "align" / f"{video.stem}.align")
                rows.append(_row(speaker, video, align))
    if not rows:
        raise FileNotFoundError(f"no .mpg videos in {root} (looked for *.mpg and {{{','.join(speakers[:3])},...}}/**/*.mpg)")
    found = {r["speaker"] for r in rows}
    missing = [s for s in speakers if s not in found]
    if missing and found - {UNKNOWN_SPEAKER}:
        print(f"grid: no videos for {len(missing)} requested speaker(s) in {root}: {' '.join(missing)}")
    return _sorted(pd.DataFrame(rows, columns=COLUMNS))


def _download_speaker(
    speaker: str, source: str, video_base: str, sheffield: str, raw_dir: Path, downloads: Path, lock: ChecksumLock
) -> pd.DataFrame:
    video, align = video_url(speaker, source, video_base), align_url(speaker, sheffield)
    video_zip = fetch(video, downloads / "grid" / source / video.rsplit("/", 1)[-1], lock)
    align_tar = fetch(align, downloads / "grid" / "sheffield" / align.rsplit("/", 1)[-1], lock)
    target = raw_dir / "grid" / speaker
    video_dir = extract(video_zip, target / "video")
    align_dir = extract(align_tar, target / "align")
    videos = _videos(video_dir)
    if not videos:
        raise ValueError(f"{video_zip} holds no .mpg videos (extracted to {video_dir}); this pipeline needs the videos")
    aligns = {p.stem: p for p in sorted(align_dir.rglob("*.align"))}
    return pd.DataFrame([_row(speaker, v, aligns.get(v.stem)) for v in videos], columns=COLUMNS)


def _videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.mpg") if p.is_file())


def _alignment_beside(video: Path) -> Path | None:
    return _existing(video.with_suffix(".align"))


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _row(speaker: str, video: Path, align: Path | None) -> dict[str, Any]:
    return {
        "utt_id": f"{speaker}_{video.stem}",
        "speaker": speaker,
        "video_path": os.fspath(video),
        "align_path": os.fspath(align) if align else None,
    }


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    duplicated = frame["utt_id"][frame["utt_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"the same clip appears more than once: {', '.join(duplicated[:5])}")
    return frame.sort_values("utt_id", kind="stable").reset_index(drop=True)
