"""Stage `report`: the evaluation results as one self-contained page -> reports/report.html."""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import get, load_params
from pipeline.report.build import ReportInputs, write_report

OUT = Path("reports/report.html")


def main() -> int:
    params = load_params()
    roots = tuple(Path(p) for p in get(params, "report.curve_roots", ["reports/train", "reports/train_asr"]))
    inputs = ReportInputs(Path("data/eval"), Path("reports/metrics"), tuple(p for p in roots if p.exists()))
    out = write_report(params, inputs, OUT)
    print(f"report: {out} ({out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
