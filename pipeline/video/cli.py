"""`v2s crop VIDEO -o OUT.npz [--preview OUT.mp4]`: the roi stage's mouth crop on any video."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import ffmpeg
import numpy as np

from pipeline.atomic import atomic_path, check_output
from pipeline.audio.io import write_wav
from pipeline.config import PARAMS_FILE, Params, load_params
from pipeline.video.decode import ClipError
from pipeline.video.faces import choice_note, face_number
from pipeline.video.landmarks import check_backend
from pipeline.video.probe import ffmpeg_exe
from pipeline.video.roi import ClipCrop, crop_clip, roi_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `v2s crop`."""
    parser.add_argument("video", type=Path, help="any video ffmpeg reads; silent videos are fine")
    parser.add_argument("-o", "--output", type=Path, required=True, help="OUT.npz: video, audio, transforms, missing")
    parser.add_argument("--preview", type=Path, help="also write the crops (with the audio, if any) as an mp4")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help=f"roi/audio settings (default: {PARAMS_FILE})")
    parser.add_argument("--face", type=face_number, default=1,
                        help="which face to crop when several are in view: 1 (default) is the one found in the most "
                             "frames, then the largest; the summary lists them all")


def run(args: argparse.Namespace) -> int:
    """Crop one video; print a one-line JSON summary, or a one-line reason and exit 1."""
    start = time.perf_counter()
    try:
        check_output(args.output, ".npz")
        if args.preview is not None:
            check_output(args.preview, ".mp4")
    except ValueError as exc:
        print(f"v2s crop: {exc}", file=sys.stderr)
        return 1
    try:
        cfg = roi_config(Params(load_params(args.params)))
    except (OSError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"v2s crop: {args.params}: {exc}", file=sys.stderr)
        return 1
    try:
        check_backend(cfg.backend)
        result = crop_clip(args.video, cfg, require_audio=False, face=args.face)
    except (ClipError, OSError, RuntimeError, ValueError) as exc:
        print(f"v2s crop: {args.video}: {exc}", file=sys.stderr)
        return 1
    if note := choice_note(result.faces, result.face, result.clip.n_frames):
        print(f"v2s crop: {note}", file=sys.stderr)
    save_npz(result, args.output)
    if args.preview:
        try:
            write_preview(result, args.preview)
        except ffmpeg.Error as exc:
            reason = (exc.stderr or b"").decode(errors="replace").strip().splitlines() or ["ffmpeg failed"]
            print(f"v2s crop: cannot write preview {args.preview}: {reason[-1]}", file=sys.stderr)
            return 1
    clip, mouth = result.clip, result.mouth
    print(json.dumps({
        "frames": clip.n_frames, "frames_with_face": int((~mouth.missing).sum()), "fps": clip.fps,
        "seconds": round(clip.n_frames / clip.fps, 3), "audio": clip.audio is not None,
        "faces": len(result.faces), "face": result.face.number if result.face else None,
        "output": str(args.output), "elapsed_s": round(time.perf_counter() - start, 2),
    }))
    return 0


def save_npz(result: ClipCrop, path: Path) -> None:
    """Crops, audio (empty for a silent video), per-frame transforms and missing-face mask."""
    clip, mouth = result.clip, result.mouth
    audio = clip.audio if clip.audio is not None else np.zeros(0, dtype=np.float32)
    with atomic_path(path) as tmp:
        np.savez(
            tmp, video=mouth.video, audio=audio, sample_rate=clip.sample_rate, fps=clip.fps,
            audio_pad=clip.audio_pad, transforms=mouth.transforms, missing=mouth.missing,
        )


def write_preview(result: ClipCrop, path: Path) -> None:
    """H.264 mp4 of the crops at the clip's frame rate, with its audio when it has one."""
    clip, video = result.clip, result.mouth.video
    height, width, channels = video.shape[1:]
    frames = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="gray" if channels == 1 else "rgb24",
                          s=f"{width}x{height}", r=clip.fps).video
    frames = frames.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")  # yuv420p needs even sides
    with tempfile.TemporaryDirectory() as scratch, atomic_path(path) as tmp:
        streams = [frames]
        if clip.audio is not None:
            wav = write_wav(Path(scratch) / "audio.wav", clip.audio, clip.sample_rate)
            streams.append(ffmpeg.input(str(wav)).audio)
        out = ffmpeg.output(*streams, str(tmp), vcodec="libx264", pix_fmt="yuv420p", acodec="aac", shortest=None)
        out.global_args("-nostdin", "-loglevel", "error").overwrite_output().run(
            cmd=ffmpeg_exe(), input=np.ascontiguousarray(video).tobytes(), capture_stdout=True, capture_stderr=True
        )
