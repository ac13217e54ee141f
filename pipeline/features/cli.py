"""`v2s embed FILE -o OUT.npy`: the GE2E speaker embedding of any audio or video file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_path, check_output
from pipeline.audio.io import read_media_audio
from pipeline.features.speakers import ENCODER_SAMPLE_RATE, embed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="audio or video file (the audio track is used)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the embedding (.npy, float32, 256)")


def run(args: argparse.Namespace) -> int:
    """Embed `args.file` and save the vector; exit code 1 with a message when that is impossible."""
    try:
        check_output(args.output, ".npy")
    except ValueError as exc:
        print(f"v2s embed: {exc}", file=sys.stderr)
        return 1
    try:
        vector = embed(read_media_audio(args.file, ENCODER_SAMPLE_RATE), ENCODER_SAMPLE_RATE)
    except (RuntimeError, ValueError) as exc:
        print(f"v2s embed: {args.file}: {exc}", file=sys.stderr)
        return 1
    with atomic_path(args.output) as tmp, open(tmp, "wb") as f:
        np.save(f, vector)
    print(f"{args.file}: {vector.shape[0]}-d speaker embedding -> {args.output}")
    return 0
