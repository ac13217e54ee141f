"""Face landmarks per frame, reduced to the few points the mouth crop needs.

Two backends give the same `KEYPOINTS` in pixel coordinates (pixel centres at integers):
- `mediapipe`: face mesh (468 points) in tracking mode, each frame's search seeded by the
  previous frame's landmarks; the model ships in the `mediapipe==0.10.21` wheel.
- `face_alignment`: S3FD face detector + 2D-FAN (68 iBUG points) per frame; its weights
  come from the torch hub cache, downloaded on first use.
A frame without a face gives NaN rows.
"""
from __future__ import annotations

import os
import warnings
from typing import Protocol
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


class ModelUnavailable(RuntimeError):
    """A backend's model files are missing and cannot be fetched; the message says what to place where."""


class LandmarkDetector(Protocol):
    """Detects `KEYPOINTS` in every frame of one clip."""

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """(T, len(KEYPOINTS), 2) float64 pixel coordinates; NaN where no face was found."""
        ...


class MediaPipeMesh:
    """MediaPipe face mesh; `static=True` detects every frame afresh (no tracking)."""

    def __init__(self, static: bool = False, min_confidence: float = 0.5):
        from mediapipe.python.solutions.face_mesh import FaceMesh

        self._mesh = FaceMesh(
            static_image_mode=static, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence,
        )

    def detect(self, frames: np.ndarray) -> np.ndarray:
        # A fresh graph per clip: tracking state must not leak from the clip this worker did
        # before, or a clip's crop would depend on which worker ran it.
        self._mesh.reset()
        height, width = frames.shape[1:3]
        out = np.full((len(frames), len(KEYPOINTS), 2), np.nan)
        for t, frame in enumerate(frames):
            faces = self._mesh.process(frame).multi_face_landmarks
            if faces:
                marks = faces[0].landmark
                # Normalised [0, 1] spans the image's edges; pixel i's centre is (i + 0.5) / size.
                out[t] = [(marks[i].x * width - 0.5, marks[i].y * height - 0.5) for i in MEDIAPIPE_INDEX]
        return out


class FanLandmarks:
    """face-alignment's 2D-FAN with the S3FD detector, on CPU; the largest face per frame."""

    def __init__(self) -> None:
        import face_alignment

        ensure_fan_weights()
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device="cpu", flip_input=False, compile=False
        )

    def detect(self, frames: np.ndarray) -> np.ndarray:
        out = np.full((len(frames), len(KEYPOINTS), 2), np.nan)
        for t, frame in enumerate(frames):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "No faces were detected." on every empty frame
                marks, _, boxes = self._fa.get_landmarks_from_image(frame, return_bboxes=True)
            if marks:
                areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
                out[t] = np.asarray(marks[int(np.argmax(areas))])[list(IBUG68_INDEX), :2]
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


_CACHE: dict[tuple[str, bool], LandmarkDetector] = {}


def get_detector(backend: str, static: bool = False) -> LandmarkDetector:
    """This process's detector for `backend`, built once (loading a model costs more than a clip)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown roi.backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    key = (backend, static)
    if key not in _CACHE:
        _CACHE[key] = MediaPipeMesh(static=static) if backend == "mediapipe" else FanLandmarks()
    return _CACHE[key]


def check_backend(backend: str) -> None:
    """Fail before any work starts if `backend` is unknown or its model files are unavailable."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown roi.backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "face_alignment":
        ensure_fan_weights()
