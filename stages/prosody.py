"""DVC stage `prosody`: F0, voicing and energy per mel frame, with train-only speaker statistics."""
from __future__ import annotations

from pipeline.audio.mel import MelConfig
from pipeline.config import load_params
from pipeline.executor import Executor
from pipeline.features.prosody import ProsodyConfig, run_prosody


def main() -> None:
    params = load_params()
    outcome = run_prosody(MelConfig.from_params(params), ProsodyConfig.from_params(params), Executor.from_params(params))
    print(outcome.line())
    outcome.check()


if __name__ == "__main__":
    main()
