"""Several faces in view (`v2s crop` and `v2s speak` on anyone's video): the faces of each frame
linked into tracks, ranked, and one chosen.

Face 1 is the face found in the most frames, then the largest (median distance between the outer
eye corners); `--face N` takes another. Corpus clips have one talker: the roi stage tracks one face.
"""
from __future__ import annotations

from argparse import ArgumentTypeError
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.video.landmarks import KEYPOINTS

MAX_FACES = 4  # our choice: faces searched for per frame by the command line (more only slow the search)
_EYES = (KEYPOINTS.index("right_eye_outer"), KEYPOINTS.index("left_eye_outer"))


@dataclass(frozen=True)
class Face:
    """One tracked face: its rank, where it was found and its keypoints per frame (NaN where not found)."""

    number: int  # 1: found in the most frames, then the largest
    frames: int  # frames it was found in
    width: float  # median distance between the outer eye corners, px of the decoded frames
    x: float  # median centre as a fraction of the frame's width (0: left edge) ...
    y: float  # ... and of its height (0: top edge)
    points: np.ndarray  # (T, len(KEYPOINTS), 2)

    def describe(self, n_frames: int) -> str:
        return (f"face {self.number} (in {self.frames} of {n_frames} frames, {self.width:.0f} px between the eyes, "
                f"centred {self.x:.0%} across and {self.y:.0%} down)")


def _width(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[_EYES[0]] - points[_EYES[1]]))


def link(per_frame: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Tracks from each frame's detections (each (len(KEYPOINTS), 2)), in the order they first appear.

    A detection joins the track whose last position is nearest, if within one eye distance of it
    (a face moves far less between two frames); otherwise it starts a track. The detector's order
    within a frame carries no identity.
    """
    n = len(per_frame)
    tracks: list[np.ndarray] = []
    last: list[np.ndarray] = []  # each track's latest keypoints
    for t, faces in enumerate(per_frame):
        taken: set[int] = set()
        centres = [np.asarray(f).mean(axis=0) for f in faces]
        # nearest pairs first, so two faces never swap tracks because of the detector's order
        pairs = sorted((float(np.linalg.norm(c - last[k].mean(axis=0))), i, k)
                       for i, c in enumerate(centres) for k in range(len(tracks)))
        placed: dict[int, int] = {}
        for dist, i, k in pairs:
            if i in placed or k in taken or dist > max(_width(last[k]), 1.0):
                continue
            placed[i] = k
            taken.add(k)
        for i, face in enumerate(faces):
            k = placed.get(i)
            if k is None:
                tracks.append(np.full((n, len(KEYPOINTS), 2), np.nan))
                last.append(np.asarray(face))
                k = len(tracks) - 1
            tracks[k][t] = face
            last[k] = np.asarray(face)
    return tracks


def rank(tracks: Sequence[np.ndarray], frame_size: tuple[int, int]) -> list[Face]:
    """The tracks as faces, numbered: most frames first, then largest (ties: leftmost, topmost).
    `frame_size`: the frames' (height, width)."""
    height, width = frame_size
    faces = []
    for points in tracks:
        found = ~np.isnan(points).any(axis=(1, 2))
        widths = np.linalg.norm(points[found, _EYES[0]] - points[found, _EYES[1]], axis=-1)
        centre = np.median(points[found].mean(axis=1), axis=0)
        faces.append((int(found.sum()), float(np.median(widths)), float(centre[0] + 0.5) / width,
                      float(centre[1] + 0.5) / height, points))
    faces.sort(key=lambda f: (-f[0], -f[1], f[2], f[3]))
    return [Face(i + 1, *f) for i, f in enumerate(faces)]


def choose(faces: Sequence[Face], number: int) -> Face:
    """Face `number` (1-based) of `faces`; a `ValueError` saying how many there are."""
    if not 1 <= number <= len(faces):
        found = f"{len(faces)} face{'s' * (len(faces) != 1)}" if faces else "no face"
        raise ValueError(f"--face {number}: {found} found in the video")
    return faces[number - 1]


def face_number(text: str) -> int:
    """argparse type of `--face N`: a face number, checked before any work."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"expected a face number from 1, got {text!r}")
    return number


def choice_note(faces: Sequence[Face], chosen: Face | None, n_frames: int) -> str | None:
    """With several faces in view, the sentence saying which one was cropped and how to take another."""
    if chosen is None or len(faces) < 2:
        return None
    others = ", ".join(str(f.number) for f in faces if f is not chosen)
    return (f"{len(faces)} faces in view; cropped {chosen.describe(n_frames)}; "
            f"--face {others} takes {'another' if len(faces) > 2 else 'the other'}: "
            + "; ".join(f.describe(n_frames) for f in faces if f is not chosen))
