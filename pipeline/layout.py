"""Where every stage reads and writes: one object for all the paths of docs/DATA.md."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Paths of the pipeline's inputs and outputs, relative to `root` (the repository by default)."""

    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def downloads(self) -> Path:
        return self.root / "data" / "downloads"

    @property
    def downloads_lock(self) -> Path:
        return self.root / "downloads.lock.json"

    @property
    def manifest(self) -> Path:
        return self.root / "data" / "manifest.parquet"

    @property
    def roi(self) -> Path:
        return self.root / "data" / "roi"

    def features(self, name: str) -> Path:
        """`units`, `speakers` or `prosody`."""
        return self.root / "data" / "features" / name

    @property
    def speakers(self) -> Path:
        return self.features("speakers")

    def model(self, kind: str, name: str) -> Path:
        """An exported model directory: `models/<kind>/<name>` (kind: a2a, v2a, av2a, lts, ...)."""
        return self.root / "models" / kind / name

    @property
    def vocoder(self) -> Path:
        return self.root / "models" / "vocoder"

    @property
    def asr(self) -> Path:
        return self.root / "models" / "asr"

    def checkpoints(self, stage: str, name: str) -> Path:
        return self.root / "models" / "checkpoints" / stage / name

    def train_reports(self, stage: str, name: str) -> Path:
        return self.root / "reports" / "train" / stage / name

    def synth(self, system: str) -> Path:
        return self.root / "data" / "synth" / system

    def eval(self, system: str) -> Path:
        return self.root / "data" / "eval" / f"{system}.parquet"

    def eval_samples(self, system: str) -> Path:
        return self.root / "data" / "eval" / "samples" / f"{system}.parquet"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "reports" / "metrics"

    def metrics(self, system: str) -> Path:
        """The DVC metric: headline numbers only (evaluation.summary.METRICS_FILE_KEYS)."""
        return self.metrics_dir / f"{system}.json"

    def metrics_details(self, system: str) -> Path:
        """Beside it, not a DVC metric: every number, counts, versions and provenance."""
        return self.metrics_dir / f"{system}.details.json"

    def plots(self, system: str) -> Path:
        return self.root / "reports" / "plots" / system

    @property
    def asr_reports(self) -> Path:
        return self.root / "reports" / "train_asr"

    @property
    def report(self) -> Path:
        return self.root / "reports" / "report.html"
