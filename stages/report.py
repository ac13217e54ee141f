"""Stage `report`: the evaluation results as one self-contained page -> reports/report.html."""
from __future__ import annotations

import sys

from pipeline.config import ConfigError, Params
from pipeline.evaluation.asr_whisper import WhisperConfig
from pipeline.evaluation.config import mel_config, splits
from pipeline.layout import Layout
from pipeline.report.build import ReportInputs, report_warnings, write_report
from pipeline.report.config import ReportConfig, ReportStageConfig
from pipeline.splits import ProtocolConfig
from stages import load_config

STAGE = "report"


def configure(params: Params, key: str | None = None) -> ReportStageConfig:
    """`report`, `evaluate.splits`, `seed`, `audio`, `protocols` and `asr.whisper`, parsed strictly."""
    seed = params.raw("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")
    # every protocol, not only today's: the metrics files name the protocol their run used
    protocols = {name: params.parse(f"protocols.{name}", ProtocolConfig) for name in params.raw("protocols")}
    return ReportStageConfig(params.parse("report", ReportConfig), splits(params), seed, mel_config(params), protocols,
                             params.parse("asr.whisper", WhisperConfig))


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    layout = Layout()
    roots = tuple(p for p in (layout.root / r for r in cfg.report.curve_roots) if p.exists())
    inputs = ReportInputs(layout, roots)
    out = write_report(cfg, inputs, layout.report)
    print(f"report: {out} ({out.stat().st_size / 1e6:.2f} MB), {len(cfg.report.systems)} systems and the reference "
          f"rows, {len(cfg.report.questions)} questions answered", file=sys.stderr)
    for warning in report_warnings(cfg, inputs):
        print(f"report: WARNING: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
