"""Mouth crops from per-frame keypoints: fill gaps, smooth, align to a reference face, warp.

The alignment is a similarity transform (rotation, uniform scale, translation) per frame:
- rotation and scale: the least-squares fit (2-D Procrustes/Umeyama, no reflection) of the
  five most rigid keypoints, the four eye corners and the base of the nose, to the same points
  of MediaPipe's canonical face model. The lips are left out of this fit because speech moves them.
- scale: the reference face is drawn so its mouth is `mouth_width` of the crop side wide,
  so every talker's mouth has the same size in pixels whatever the camera distance.
- translation: the frame's mouth centre (mean of the mouth corners and the top and bottom of
  the lips) lands exactly on the crop centre.
Every step is closed-form numpy plus one OpenCV bilinear warp, so a clip gives the same bytes.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.video.decode import ClipError
from pipeline.video.landmarks import KEYPOINTS

# MediaPipe canonical_face_model.obj (modules/face_geometry/data), vertices 33, 133, 362, 263, 2,
# 61, 291, 0, 17 in cm, y flipped to point down like image rows; ordered as KEYPOINTS.
REFERENCE = np.array([
    (-4.445859, -2.663991), (-1.856432, -2.585245), (1.856432, -2.585245), (4.445859, -2.663991),
    (0.0, 2.089024), (-2.456206, 4.342621), (2.456206, 4.342621), (0.0, 3.406404), (0.0, 5.365123),
])
RIGID = [KEYPOINTS.index(k) for k in ("right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer",
                                      "nose_base")]
MOUTH = [KEYPOINTS.index(k) for k in ("mouth_right", "mouth_left", "lip_top", "lip_bottom")]
REFERENCE_MOUTH_WIDTH = float(np.linalg.norm(
    REFERENCE[KEYPOINTS.index("mouth_left")] - REFERENCE[KEYPOINTS.index("mouth_right")]))


@dataclass(frozen=True)
class CropConfig:
    """How a mouth crop is made: the crop's part of `RoiConfig` (`roi:` in params.yaml)."""

    size: int  # crop side in pixels
    gray: bool  # one channel, or RGB
    mouth_width: float  # the reference face's mouth width as a fraction of the crop side
    smooth_window: int  # frames in the centred moving average over landmark tracks
    max_missing: float  # largest fraction of frames without a face


class FrameFile:
    """Equal-shaped frames (crops, or a waveform's samples per video frame) appended to a temporary
    file and read back a slice at a time, so a long video's never sit in memory whole (a memory map
    would keep every page it read resident)."""

    def __init__(self, frame_shape: tuple[int, ...], dtype: np.dtype | type = np.uint8):
        self.frame_shape, self.dtype = tuple(frame_shape), np.dtype(dtype)
        self._frame_bytes = int(np.prod(frame_shape)) * self.dtype.itemsize
        self._file = tempfile.TemporaryFile()
        self._n = 0

    def append(self, frames: np.ndarray) -> None:
        if frames.shape[1:] != self.frame_shape or frames.dtype != self.dtype:
            raise ValueError(f"frames of {frames.shape[1:]} {frames.dtype}, the file holds {self.frame_shape} {self.dtype}")
        self._file.seek(0, 2)
        self._file.write(np.ascontiguousarray(frames).tobytes())
        self._n += len(frames)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._n, *self.frame_shape)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, frames: slice) -> np.ndarray:
        start, stop, step = frames.indices(self._n)
        if step != 1:
            raise IndexError("a FrameFile reads contiguous frames only")
        self._file.seek(start * self._frame_bytes)
        data = self._file.read(max(0, stop - start) * self._frame_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(-1, *self.frame_shape)

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class MouthCrop:
    """Crops (T x size x size x C, uint8, or a `FrameFile` of them), the image-to-crop affine maps
    (T x 2 x 3) and missing frames."""

    video: np.ndarray | FrameFile
    transforms: np.ndarray
    missing: np.ndarray


def fill_missing(points: np.ndarray, max_missing: float) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate frames without a face (NaN) linearly from neighbours, copying at the ends.

    Returns the filled points and the boolean mask of frames that were missing; raises
    `ClipError` when no frame, or more than `max_missing` of them, has a face.
    """
    missing = np.isnan(points).any(axis=(1, 2))
    n = len(points)
    if missing.all():
        raise ClipError(f"no face: none of {n} frames has a detected face")
    if missing.mean() > max_missing:
        raise ClipError(
            f"face missing: {int(missing.sum())} of {n} frames without a face (more than roi.max_missing={max_missing})"
        )
    if not missing.any():
        return points, missing
    t, found = np.arange(n), np.flatnonzero(~missing)
    filled = points.copy()
    for k in range(points.shape[1]):
        for c in range(2):
            filled[:, k, c] = np.interp(t, found, points[found, k, c])  # holds the end values outside
    return filled, missing


def smooth(points: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` frames; the window shrinks at the clip's ends."""
    if window <= 1:
        return points
    half = window // 2
    padded = np.concatenate([np.zeros_like(points[:1]), points]).cumsum(axis=0)
    idx = np.arange(len(points))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(points))
    return (padded[hi] - padded[lo]) / (hi - lo)[:, None, None]


def transforms(points: np.ndarray, cfg: CropConfig) -> np.ndarray:
    """Per-frame 2 x 3 affine maps from image pixels to crop pixels (see the module docstring)."""
    src = points[:, RIGID, 0] + 1j * points[:, RIGID, 1]
    dst = REFERENCE[RIGID, 0] + 1j * REFERENCE[RIGID, 1]
    src_c = src - src.mean(axis=1, keepdims=True)
    dst_c = dst - dst.mean()
    # A similarity is multiplication by one complex number; this is its least-squares value.
    a = (np.conj(src_c) * dst_c).sum(axis=1) / (np.abs(src_c) ** 2).sum(axis=1)
    a = a * (cfg.mouth_width * cfg.size / REFERENCE_MOUTH_WIDTH)
    mouth = (points[:, MOUTH, 0] + 1j * points[:, MOUTH, 1]).mean(axis=1)
    centre = (cfg.size - 1) / 2 * (1 + 1j)
    b = centre - a * mouth
    return np.stack([
        np.stack([a.real, -a.imag, b.real], axis=1),
        np.stack([a.imag, a.real, b.imag], axis=1),
    ], axis=1)


def warp(frames: np.ndarray, maps: np.ndarray, cfg: CropConfig) -> np.ndarray:
    """Apply each frame's map; gray crops keep a channel axis of 1."""
    out = np.empty((len(frames), cfg.size, cfg.size, 1 if cfg.gray else 3), dtype=np.uint8)
    for t, (frame, m) in enumerate(zip(frames, maps)):
        crop = cv2.warpAffine(frame, m, (cfg.size, cfg.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        out[t] = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[:, :, None] if cfg.gray else crop
    return out


def mouth_maps(points: np.ndarray, cfg: CropConfig) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's crop map from a clip's raw per-frame keypoints (NaN where no face), and the
    frames that had no face."""
    filled, missing = fill_missing(points, cfg.max_missing)
    return transforms(smooth(filled, cfg.smooth_window), cfg), missing


def crop_mouth(frames: np.ndarray, points: np.ndarray, cfg: CropConfig) -> MouthCrop:
    """Mouth crops of a clip from its raw per-frame keypoints (NaN where no face)."""
    maps, missing = mouth_maps(points, cfg)
    return MouthCrop(warp(frames, maps, cfg), maps, missing)

