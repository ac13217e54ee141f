"""Stage `roi`: mouth crops and aligned audio of every usable clip -> `data/roi/`."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import load_params
from pipeline.video.landmarks import ModelUnavailable
from pipeline.video.roi import run

MANIFEST = Path("data/manifest.parquet")
OUT = Path("data/roi")


def main() -> None:
    try:
        summary = run(load_params(), MANIFEST, OUT)
    except ModelUnavailable as exc:
        raise SystemExit(f"roi: {exc}") from None
    print(f"{summary.line()} -> {OUT}")
    if not summary.clips:
        raise SystemExit(f"roi: no clip with status ok in {MANIFEST}")
    if summary.failed:
        raise SystemExit(
            f"roi: {summary.rejected} of {summary.clips} clips rejected, more than roi.max_reject_fraction="
            f"{summary.max_reject_fraction} (reasons in the `reason` column of {OUT / 'manifest.parquet'})"
        )


if __name__ == "__main__":
    main()
