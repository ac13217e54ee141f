"""Face landmarks per frame, reduced to the few points the mouth crop needs.

Two backends give the same `KEYPOINTS` in pixel coordinates (pixel centres at integers):
- `mediapipe`: face mesh (468 points) in tracking mode, each frame's search seeded by the
  previous frame's landmarks; the model ships in the `mediapipe==0.10.21` wheel.
- `face_alignment`: S3FD face detector + 2D-FAN (68 iBUG points) per frame; its weights
  come from the torch hub cache, downloaded on first use.
A frame without a face gives NaN rows.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from typing import IO, Protocol
from urllib.error import URLError

import numpy as np

BACKENDS = ("mediapipe", "face_alignment")

# The crop's points, named from the subject's side, and their index in each landmark scheme.
KEYPOINTS = (
    "right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer",
    "nose_base", "mouth_right", "mouth_left", "lip_top", "lip_bottom",
)
MEDIAPIPE_INDEX = (33, 133, 362, 263, 2, 61, 291, 0, 17)
IBUG68_INDEX = (36, 39, 42, 45, 33, 48, 54, 51, 57)


# mediapipe's C++ (absl logging, TFLite) writes INFO and WARNING lines straight to file descriptor 2,
# out of reach of Python's logging and of environment variables such as GLOG_minloglevel: a few
# per graph start, so hundreds per stage run. These patterns are those lines; errors (`E...`,
# `F...`, TFLite's `ERROR:`) and anything else written meanwhile still reach stderr.
_NATIVE_NOISE = re.compile(
    rb"^(?:[IW]\d{4} \S+ +\d+ \S+:\d+\] |INFO: |WARNING: All log messages before absl::InitializeLog\(\) )"
)
_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_state: tuple[int, IO[bytes]] | None = None


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Hold back mediapipe's native INFO/WARNING lines while the block runs; pass on the rest at its end.

    File descriptor 2 is process-wide, so overlapping blocks (threads) share one redirection,
    undone when the last of them ends.
    """
    global _quiet_depth, _quiet_state
    with _quiet_lock:
        if _quiet_depth == 0:
            sys.stderr.flush()
            sink = tempfile.TemporaryFile()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            _quiet_state = (saved, sink)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_state is not None:
                saved, sink = _quiet_state
                _quiet_state = None
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                kept = b"".join(line for line in sink.read().splitlines(keepends=True) if not _NATIVE_NOISE.match(line))
                sink.close()
                if kept:
                    os.write(2, kept)


class ModelUnavailable(RuntimeError):
    """A backend's model files are missing and cannot be fetched; the message says what to place where."""


class LandmarkDetector(Protocol):
    """Detects `KEYPOINTS` in every frame of one clip."""

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """(T, len(KEYPOINTS), 2) float64 pixel coordinates of one face; NaN where no face was found."""
        ...

    def detect_all(self, frames: Iterable[np.ndarray]) -> list[list[np.ndarray]]:
        """Per frame (any iterable of H x W x 3 frames, e.g. a stream), the (len(KEYPOINTS), 2) pixel
        coordinates of every face found (up to the detector's `max_faces`), in no particular order."""
        ...


class MediaPipeMesh:
    """MediaPipe face mesh; `static=True` detects every frame afresh (no tracking)."""

    def __init__(self, static: bool = False, min_confidence: float = 0.5, max_faces: int = 1):
        from mediapipe.python.solutions.face_mesh import FaceMesh

        with quiet_native_logs():
            self._mesh = FaceMesh(
                static_image_mode=static, max_num_faces=max_faces, refine_landmarks=False,
                min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence,
            )

    def detect_all(self, frames: Iterable[np.ndarray]) -> list[list[np.ndarray]]:
        out: list[list[np.ndarray]] = []
        with quiet_native_logs():
            # A fresh graph per clip: tracking state must not leak from the clip this worker did
            # before, or a clip's crop would depend on which worker ran it.
            self._mesh.reset()
            for frame in frames:
                height, width = frame.shape[:2]
                faces = self._mesh.process(frame).multi_face_landmarks or []
                # Normalised [0, 1] spans the image's edges; pixel i's centre is (i + 0.5) / size.
                out.append([np.array([(f.landmark[i].x * width - 0.5, f.landmark[i].y * height - 0.5)
                                      for i in MEDIAPIPE_INDEX]) for f in faces])
        return out

    def detect(self, frames: np.ndarray) -> np.ndarray:
        out = np.full((len(frames), len(KEYPOINTS), 2), np.nan)
        for t, faces in enumerate(self.detect_all(frames)):
            if faces:
                out[t] = faces[0]
        return out


class FanLandmarks:
    """face-alignment's 2D-FAN with the S3FD detector, on CPU; the largest face per frame."""

    def __init__(self, max_faces: int = 1) -> None:
        import face_alignment

        ensure_fan_weights()
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device="cpu", flip_input=False, compile=False
        )
        self._max_faces = max_faces

    def _faces(self, frame: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(box area, keypoints) of every face found in `frame`, largest first."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No faces were detected." on every empty frame
            marks, _, boxes = self._fa.get_landmarks_from_image(frame, return_bboxes=True)
        found = [((b[2] - b[0]) * (b[3] - b[1]), np.asarray(m)[list(IBUG68_INDEX), :2]) for m, b in zip(marks or [], boxes or [])]
        return sorted(found, key=lambda f: -f[0])

    def detect_all(self, frames: Iterable[np.ndarray]) -> list[list[np.ndarray]]:
        return [[points for _, points in self._faces(frame)[: self._max_faces]] for frame in frames]

    def detect(self, frames: np.ndarray) -> np.ndarray:
        out = np.full((len(frames), len(KEYPOINTS), 2), np.nan)
        for t, frame in enumerate(frames):
            faces = self._faces(frame)
            if faces:
                out[t] = faces[0][1]
        return out


def fan_weight_urls() -> list[str]:
    """The files face-alignment fetches for 2D landmarks: the S3FD detector and 2D-FAN-4."""
    from face_alignment.api import models_urls
    from face_alignment.detection.sfd.sfd_detector import models_urls as detector_urls

    return [detector_urls["s3fd"], models_urls["2DFAN-4"]]


def ensure_fan_weights() -> None:
    """Download face-alignment's weights into the torch hub cache, or say exactly what to place where."""
    import torch.hub

    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    missing, error = [], None
    for url in fan_weight_urls():
        target = os.path.join(folder, os.path.basename(url))
        if os.path.isfile(target):
            continue
        os.makedirs(folder, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, target, progress=False)
        except (URLError, OSError) as exc:
            missing.append(url)
            error = exc
    if missing:
        names = " and ".join(os.path.basename(u) for u in missing)
        raise ModelUnavailable(
            f"face_alignment weights missing and not downloadable ({error}): place {names} "
            f"(from {' and '.join(missing)}) in {folder}"
        )


_CACHE: dict[tuple[str, bool, int], LandmarkDetector] = {}


def get_detector(backend: str, static: bool = False, max_faces: int = 1) -> LandmarkDetector:
    """This process's detector for `backend` finding up to `max_faces` faces a frame, built once (loading a
    model costs more than a clip)."""
    check_name(backend)
    key = (backend, static, max_faces)
    if key not in _CACHE:
        _CACHE[key] = (MediaPipeMesh(static=static, max_faces=max_faces) if backend == "mediapipe"
                       else FanLandmarks(max_faces=max_faces))
    return _CACHE[key]


def check_name(backend: str) -> None:
    """A `ValueError` naming the choices unless `backend` is one of BACKENDS."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown roi.backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def check_backend(backend: str) -> None:
    """Fail before any work starts if `backend` is unknown or its model files are unavailable."""
    check_name(backend)
    if backend == "face_alignment":
        ensure_fan_weights()
