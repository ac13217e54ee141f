"""Stage `download`: fetch or generate the corpus named by `corpus.name`, list its clips."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from pipeline.config import Params, parse
from pipeline.corpora import demo, grid
from pipeline.corpora.config import CorpusDownloadConfig, DemoConfig, GridConfig
from pipeline.corpora.fetch import ChecksumLock
from pipeline.executor import Executor, ExecutorConfig
from pipeline.layout import Layout
from pipeline.manifest import write_sources
from stages import load_config

STAGE = "download"


@dataclass(frozen=True)
class DownloadConfig:
    corpus: CorpusDownloadConfig
    executor: ExecutorConfig


def _keys(params: Params, dotted: str, cls: type) -> dict[str, Any]:
    # dvc.yaml declares each key of a corpus but `protocol` (prepare's: a new protocol must not
    # regenerate the corpus), so the keys are read one by one instead of the whole block.
    return {f.name: params.raw(f"{dotted}.{f.name}") for f in fields(cls)}


def configure(params: Params, key: str | None = None) -> DownloadConfig:
    corpus = {"name": params.raw("corpus.name"), "demo": _keys(params, "corpus.demo", DemoConfig),
              "grid": _keys(params, "corpus.grid", GridConfig)}
    return parse(DownloadConfig, {"corpus": corpus, "executor": params.raw("executor")})


def download(cfg: DownloadConfig, layout: Layout) -> pd.DataFrame:
    """The clip table of the chosen corpus, its clips fetched or generated under `layout.raw`."""
    if cfg.corpus.name == "demo":
        return demo.download(layout.raw, cfg.corpus.demo, Executor.from_config(cfg.executor))
    return grid.download(layout.raw, cfg.corpus.grid, layout.downloads, layout.downloads_lock)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog=f"python -m stages.{STAGE}", description=__doc__).parse_args(argv)
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    layout = Layout()
    sources = download(cfg, layout)
    write_sources(sources, layout.raw / "sources.parquet")
    if not layout.downloads_lock.exists():  # a DVC output of this stage, so it exists even when nothing was fetched
        ChecksumLock(layout.downloads_lock).save()
    aligned = int(sources["align_path"].notna().sum())
    print(
        f"download: {cfg.corpus.name}: {len(sources)} clips from {sources['speaker'].nunique()} speaker(s), "
        f"{aligned} with alignments -> {layout.raw / 'sources.parquet'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
