"""Stage `prepare`: probe every clip, read transcripts, assign splits -> `data/manifest.parquet`."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import get, load_params
from pipeline.executor import Executor
from pipeline.manifest import build_manifest, read_sources, split_counts, summary, write_manifest
from pipeline.splits import Protocol

SOURCES = Path("data/raw/sources.parquet")
MANIFEST = Path("data/manifest.parquet")


def main() -> None:
    params = load_params()
    corpus = get(params, "corpus.name")
    protocol_name = get(params, f"corpus.{corpus}.protocol")
    if not protocol_name:
        raise SystemExit(f"set corpus.{corpus}.protocol to one of the protocols in params.yaml")
    protocol = Protocol.from_params(params, protocol_name)
    table = build_manifest(read_sources(SOURCES), corpus, protocol, int(params.get("seed", 0)), Executor.from_params(params))
    write_manifest(table, MANIFEST)
    print(f"prepare: {summary(table, protocol)} -> {MANIFEST}")
    if not split_counts(table)["train"]:
        raise SystemExit(f"prepare: no usable training clip (see the `reason` column of {MANIFEST})")


if __name__ == "__main__":
    main()
