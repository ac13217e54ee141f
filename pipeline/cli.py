"""`v2s` command line: each subcommand lives in its own module and is imported only when used.

A subcommand module provides `add_arguments(parser)` and `run(args) -> int` (the exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "crop": ("pipeline.video.cli", "mouth-ROI crop of any video, the same as the roi stage"),
    "embed": ("pipeline.features.cli", "speaker embedding of an audio or video file"),
    "speak": ("pipeline.inference.speak", "synthesise speech for a silent video with a trained model"),
    "score": ("pipeline.evaluation.cli", "objective metrics of a synthesised wav against a reference"),
    "evaluate": ("pipeline.evaluation.external", "score a folder of WAVs named by utterance id, as a system of the report"),
    "export": ("pipeline.inference.export", "a trained model as a folder with its base, vocoder and model card"),
    "timed": ("pipeline.report.timed", "run a dvc command and record every stage's wall time"),
    "results": ("pipeline.report.results", "docs/RESULTS.md from finished runs"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="v2s", description="Video-to-speech pipeline tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    module_name, help_text = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    cmd_parser = argparse.ArgumentParser(prog=f"v2s {argv[0]}", description=help_text)
    module.add_arguments(cmd_parser)
    return int(module.run(cmd_parser.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
