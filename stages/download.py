"""Stage `download`: fetch or generate the corpus named by `corpus.name`, list its clips."""
from __future__ import annotations

import importlib
from pathlib import Path

from pipeline.config import get, load_params
from pipeline.corpora.fetch import LOCK_FILE, ChecksumLock
from pipeline.manifest import write_sources

CORPORA = ("demo", "grid")
RAW = Path("data/raw")


def main() -> None:
    params = load_params()
    name = get(params, "corpus.name")
    if name not in CORPORA:
        raise SystemExit(f"corpus.name must be one of {', '.join(CORPORA)}, got {name!r}")
    corpus = importlib.import_module(f"pipeline.corpora.{name}")
    sources = corpus.download(RAW, params)
    write_sources(sources, RAW / "sources.parquet")
    if not LOCK_FILE.exists():  # a DVC output of this stage, so it exists even when nothing was fetched
        ChecksumLock(LOCK_FILE).save()
    aligned = int(sources["align_path"].notna().sum())
    print(
        f"download: {name}: {len(sources)} clips from {sources['speaker'].nunique()} speaker(s), "
        f"{aligned} with alignments -> {RAW / 'sources.parquet'}"
    )


if __name__ == "__main__":
    main()
