"""DVC stage `speakers`: GE2E embeddings and leakage-free conditioning embeddings per utterance."""
from __future__ import annotations

from pipeline.config import get, load_params
from pipeline.executor import Executor
from pipeline.features.speakers import run_speakers


def main() -> None:
    params = load_params()
    outcome = run_speakers(Executor.from_params(params), references=int(get(params, "speakers.references", 5)),
                           seed=int(get(params, "seed", 0)))
    print(outcome.line())
    outcome.check()


if __name__ == "__main__":
    main()
