"""Stage `prepare`: probe every clip, read transcripts, assign splits -> `data/manifest.parquet`."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.config import ConfigError, Params
from pipeline.corpora.config import CorpusConfig
from pipeline.executor import Executor, ExecutorConfig
from pipeline.layout import Layout
from pipeline.manifest import build_manifest, read_sources, split_counts, summary, write_manifest
from pipeline.splits import Protocol, ProtocolConfig
from stages import load_config

STAGE = "prepare"


@dataclass(frozen=True)
class PrepareConfig:
    seed: int
    corpus: CorpusConfig
    protocols: Mapping[str, ProtocolConfig]  # all checked, not only the chosen one: a typo must not wait for its day
    executor: ExecutorConfig

    @property
    def protocol(self) -> Protocol:
        """The chosen corpus's protocol."""
        return Protocol.named(self.protocols, self.corpus.protocol)


def configure(params: Params, key: str | None = None) -> PrepareConfig:
    cfg = params.sections(PrepareConfig)
    try:
        Protocol.named(cfg.protocols, cfg.corpus.protocol)
    except ValueError as exc:
        raise ConfigError(f"corpus.{cfg.corpus.name}.protocol: {exc}") from None
    return cfg


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog=f"python -m stages.{STAGE}", description=__doc__).parse_args(argv)
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    layout = Layout()
    sources = read_sources(layout.raw / "sources.parquet")
    protocol = cfg.protocol
    table = build_manifest(sources, cfg.corpus.name, protocol, cfg.seed, Executor.from_config(cfg.executor))
    write_manifest(table, layout.manifest)
    print(f"prepare: {summary(table, protocol)} -> {layout.manifest}")
    if not split_counts(table)["train"]:
        print(f"prepare: no usable training clip (see the `reason` column of {layout.manifest})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
