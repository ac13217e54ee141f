"""The offline `demo` corpus: GRID-grammar sentences spoken by espeak-ng voices over a talking face.

Each clip is made like a GRID one: a GRID sentence, a 25 fps 360x288 MPEG-1 video with its MP2
audio track in one `.mpg`, and a GRID `.align` file of word timings (1/25000 s, `sil` at both
ends). The face is scikit-image's public-domain astronaut portrait; its mouth is re-drawn per
frame, the jaw dropping with the speech's energy, closing on p/b/m and narrowing on rounded
vowels, so a lip-reading model has real audio-visual correlation to learn. Everything is
generated from params with fixed seeds and bit-exact encoders: same params, same bytes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.atomic import atomic_dir, atomic_path, write_text
from pipeline.corpora import espeak, grammar
from pipeline.corpora.alignments import TICKS_PER_SECOND
from pipeline.corpora.config import MP2_DELAY, DemoConfig, DemoVideoConfig
from pipeline.executor import Executor, Failure
from pipeline.video.landmarks import quiet_native_logs
from pipeline.video.probe import ffmpeg_exe

# espeak reads a lone "a" as the article (schwa) and merges it into the next word.
SPOKEN = {"a": "[['eI]]"}
BILABIALS = frozenset({"p", "b", "m"})  # espeak mnemonics spoken with closed lips
ROUNDED = frozenset({"u:", "U", "w", "oU", "O:", "O", "OI", "aU", "U@", "O@", "0"})
# MediaPipe face-mesh landmarks: inner lip contours from one mouth corner (78) to the other (308).
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
NOSE_TIP, CHIN, LEFT_CHEEK, RIGHT_CHEEK = 1, 152, 234, 454
MOUTH_INTERIOR = np.array([52, 18, 24], np.float32)  # RGB of the dark oral cavity


@dataclass(frozen=True)
class Face:
    """The still frame and the mouth geometry face mesh found in it (frame pixels)."""

    image: np.ndarray  # H x W x 3 uint8
    upper_lip: np.ndarray  # (11, 2) inner-lip contour x, y, corner to corner
    lower_lip: np.ndarray
    chin_y: float
    face_width: float


def make_face(cfg: DemoVideoConfig) -> Face:
    """Place the astronaut portrait in the frame (GRID-like face size) and locate its lips."""
    import mediapipe as mp  # imported here: only the main process needs these, workers get the `Face`
    from skimage.data import astronaut

    photo = astronaut()
    with quiet_native_logs(), mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        found = mesh.process(photo).multi_face_landmarks
    if not found:
        raise RuntimeError("face mesh found no face in skimage.data.astronaut()")
    h, w = photo.shape[:2]
    # Snapped to 1/16 px: float noise in the detector (another CPU, another BLAS) then almost
    # never moves a landmark, so the frames stay byte-identical across machines.
    points = np.round(np.array([(p.x * w, p.y * h) for p in found[0].landmark]) * 16) / 16
    scale = cfg.face_width / np.linalg.norm(points[LEFT_CHEEK] - points[RIGHT_CHEEK])
    shift = np.array([cfg.nose_x, cfg.nose_y]) - scale * points[NOSE_TIP]
    matrix = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]])
    image = cv2.warpAffine(photo, matrix, (cfg.width, cfg.height), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT_101)
    placed = points * scale + shift
    return Face(image, placed[list(UPPER_INNER_LIP)], placed[list(LOWER_INNER_LIP)],
                float(placed[CHIN, 1]), float(cfg.face_width))


class MouthAnimator:
    """Redraws the lower face for a given inner-lip gap and mouth width.

    Everything below the line between the teeth (midway between the inner lips) is the jaw: it
    is moved down (or up, to close the lips) by a displacement that equals the change of gap at
    the lips and fades out below the chin; the opening it leaves is the dark oral cavity.
    """

    def __init__(self, face: Face) -> None:
        self.face = face
        left, right = face.upper_lip[0, 0], face.upper_lip[-1, 0]
        self.mouth_width = float(right - left)
        mw, cx = self.mouth_width, (left + right) / 2
        falloff = 0.35 * face.face_width
        line_y = (face.upper_lip[5, 1] + face.lower_lip[5, 1]) / 2  # index 5: landmarks 13 and 14, the centre
        h, w = face.image.shape[:2]
        # Only this box changes: the jaw is twice the mouth wide, narrowing reaches half a mouth up.
        self.x0, self.x1 = int(max(0, cx - 1.1 * mw)), int(min(w, cx + 1.1 * mw + 1))
        self.y0, self.y1 = int(max(0, line_y - 0.5 * mw)), int(min(h, face.chin_y + falloff + 1))
        xs = np.arange(self.x0, self.x1, dtype=np.float32)
        ys = np.arange(self.y0, self.y1, dtype=np.float32)
        self.X, self.Y = np.meshgrid(xs, ys)
        upper = np.interp(xs, face.upper_lip[:, 0], face.upper_lip[:, 1])
        lower = np.interp(xs, face.lower_lip[:, 0], face.lower_lip[:, 1])
        self.line = ((upper + lower) / 2).astype(np.float32)[None, :]  # between the teeth; flat beyond the corners
        self.lower = lower.astype(np.float32)[None, :]
        rest = np.clip(lower - upper, 0, None)
        self.rest_gap = float(rest.max())
        lens = rest / self.rest_gap  # the shape of the lip gap across the mouth
        blend = np.clip((self.Y - self.line) / (0.5 * mw), 0, 1)  # from the lips' shape to the jaw's
        fade = _window(np.maximum(ys - face.chin_y, 0), falloff)[:, None]  # the jaw ends below the chin
        self.jaw = (((1 - blend) * lens + blend * _window(xs - cx, mw)) * fade).astype(np.float32)
        self.narrow = _window(xs - cx, 1.1 * mw)[None, :] * _window(ys - line_y, 0.5 * mw)[:, None] * (xs - cx)[None, :]
        self.still = face.image[self.y0 : self.y1, self.x0 : self.x1].astype(np.float32)

    def render(self, gap: float, width: float = 1.0) -> np.ndarray:
        """The frame with an inner-lip gap of `gap` px at its widest and the mouth `width` times as wide."""
        drop = (gap - self.rest_gap) * self.jaw
        src_y = self.Y - drop
        jaw = cv2.remap(self.face.image, self.X, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        # Layers back to front over the still face, each edge anti-aliased by its pixel coverage:
        # the oral cavity the dropped jaw opens below the line between the teeth; the jaw with the
        # lower teeth; the still upper face (upper teeth in front of the lower ones); the lower
        # lip and everything below it, which covers the teeth when the lips close. Weights of
        # the three sources are tracked instead of blending images layer by layer (cheaper).
        cavity = np.clip(np.minimum(self.Y + 0.5, self.line + drop) - np.maximum(self.Y - 0.5, self.line), 0, 1)
        w_still, w_jaw = 1 - cavity, np.zeros_like(cavity)
        for is_jaw, cover in ((True, src_y - self.line), (False, self.line - self.Y), (True, src_y - self.lower)):
            alpha = np.clip(cover + 0.5, 0, 1)
            keep = 1 - alpha
            w_still, w_jaw, cavity = w_still * keep, w_jaw * keep, cavity * keep
            if is_jaw:
                w_jaw += alpha
            else:
                w_still += alpha
        roi = self.still * w_still[..., None] + jaw * w_jaw[..., None] + MOUTH_INTERIOR * cavity[..., None]
        if width != 1.0:
            src_x = self.X - (1 - 1 / width) * self.narrow
            roi = cv2.remap(roi, src_x - self.x0, self.Y - self.y0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        frame = self.face.image.copy()
        frame[self.y0 : self.y1, self.x0 : self.x1] = np.clip(np.rint(roi), 0, 255).astype(np.uint8)
        return frame


def _window(d: np.ndarray, half: float) -> np.ndarray:
    """Raised cosine: 1 at d = 0, falling smoothly to 0 at |d| >= half."""
    return (0.5 * (1 + np.cos(np.pi * np.clip(d / half, -1, 1)))).astype(np.float32)


def mouth_track(audio: np.ndarray, phonemes: tuple[espeak.Segment, ...], spf: int,
                cfg: DemoVideoConfig, mouth_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame inner-lip gap (px) and width factor from the audio energy and the phonemes."""
    frames = audio.reshape(-1, spf)
    db = 20 * np.log10(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-5)
    level = np.clip((db - db.max() + cfg.dynamic_range_db) / cfg.dynamic_range_db, 0, 1)
    width = np.ones(len(frames))
    centres = (np.arange(len(frames)) + 0.5) * spf
    for p in phonemes:
        during = (centres >= p.start - spf / 2) & (centres < p.end)
        if p.label in BILABIALS:
            level[during] = 0.0
        elif p.label.lstrip("',") in ROUNDED:  # stress marks prefix the vowel
            width[during] = 1 - cfg.rounding
    # Lips and jaw cannot jump within one frame: a short smoothing kernel models their inertia.
    return _smooth(level) * cfg.mouth_open * mouth_width, _smooth(width)


def _smooth(x: np.ndarray) -> np.ndarray:
    return np.convolve(np.pad(x, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")


def align_text(words: tuple[espeak.Segment, ...], n_samples: int, sample_rate: int) -> str:
    """A GRID `.align` file: `start end word` per line in 1/25000 s, `sil` before and after."""
    spans = [("sil", 0, words[0].start), *((w.label, w.start, w.end) for w in words),
             ("sil", words[-1].end, n_samples)]
    return "".join(f"{_ticks(a, sample_rate)} {_ticks(b, sample_rate)} {label}\n" for label, a, b in spans)


def _ticks(samples: int, sample_rate: int) -> int:
    return round(samples * TICKS_PER_SECOND / sample_rate)


def encode(path: Path, frames: Iterator[np.ndarray], audio: np.ndarray, sample_rate: int, cfg: DemoVideoConfig) -> None:
    """Mux RGB frames and mono audio into an MPEG-1 video + MP2 audio `.mpg`, bit-exactly."""
    # The MP2 decoder delays by MP2_DELAY samples; starting the input that much later makes the
    # decoded track line up with frame 0 and the .align times (the cut is lead silence).
    pcm = np.concatenate([audio[MP2_DELAY:], np.zeros(MP2_DELAY, np.float32)])
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "audio.s16le"
        np.round(np.clip(pcm, -1, 1) * 32767).astype("<i2").tofile(raw)
        cmd = [ffmpeg_exe(), "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{cfg.width}x{cfg.height}", "-framerate", str(cfg.fps),
               "-i", "pipe:0",
               "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", str(raw),
               "-map", "0:v", "-map", "1:a", "-threads", "1", "-filter_threads", "1",
               "-sws_flags", "bicubic+accurate_rnd+bitexact", "-pix_fmt", "yuv420p",
               "-c:v", "mpeg1video", "-q:v", str(cfg.qscale), "-c:a", "mp2", "-b:a", cfg.audio_bitrate,
               "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1",
               "-f", "mpeg", str(path)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stderr is not None
        try:
            for frame in frames:
                proc.stdin.write(frame.tobytes())
        except BrokenPipeError:
            pass  # ffmpeg stopped reading; its own message follows
        finally:
            proc.stdin.close()
        error = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg could not encode {path.name}: {error.splitlines()[0] if error else 'failed'}")


@dataclass(frozen=True)
class Utterance:
    """A sentence as spoken in a clip: audio padded to whole frames, word and phoneme spans in it."""

    audio: np.ndarray  # float32, n_frames * samples_per_frame
    sample_rate: int
    word_spans: tuple[espeak.Segment, ...]  # labelled with the GRID words, samples in `audio`
    phonemes: tuple[espeak.Segment, ...]


def speak(code: str, voice: espeak.Voice, cfg: DemoConfig) -> Utterance:
    """Synthesise the sentence `code` and place it after the lead silence in a whole number of frames."""
    words = grammar.decode(code)
    speech = espeak.synthesize([SPOKEN.get(w, w) for w in words], voice, seed=cfg.seed)
    sr = speech.sample_rate
    spf = sr // cfg.video.fps
    lead = round(cfg.lead_silence * sr)
    n_frames = -(-(lead + len(speech.audio) + round(cfg.trail_silence * sr)) // spf)
    audio = np.zeros(n_frames * spf, np.float32)
    audio[lead : lead + len(speech.audio)] = speech.audio
    words_in_clip = tuple(espeak.Segment(w, s.start + lead, s.end + lead) for w, s in zip(words, speech.words))
    phonemes_in_clip = tuple(espeak.Segment(p.label, p.start + lead, p.end + lead) for p in speech.phonemes)
    return Utterance(audio, sr, words_in_clip, phonemes_in_clip)


@dataclass(frozen=True)
class ClipJob:
    """Everything a worker needs to make one clip."""

    code: str
    speaker: str
    folder: str  # where the .mpg and .align go
    face: Face
    cfg: DemoConfig


def make_clip(job: ClipJob) -> None:
    """Synthesise, time, animate and encode one clip into `job.folder`."""
    video = job.cfg.video
    utt = speak(job.code, job.cfg.speakers[job.speaker].espeak_voice, job.cfg)
    animator = MouthAnimator(job.face)
    gaps, widths = mouth_track(utt.audio, utt.phonemes, utt.sample_rate // video.fps, video, animator.mouth_width)
    folder = Path(job.folder)
    frames = (animator.render(g, w) for g, w in zip(gaps, widths))
    with atomic_path(folder / f"{job.code}.mpg") as partial:  # a failed clip leaves no file behind
        encode(partial, frames, utt.audio, utt.sample_rate, video)
    write_text(folder / f"{job.code}.align", align_text(utt.word_spans, len(utt.audio), utt.sample_rate))


def speaker_codes(speaker: str, n: int, seed: int) -> list[str]:
    """The speaker's `n` distinct sentences; keyed by the speaker id, so adding a speaker changes no other."""
    return sorted(grammar.sample_codes(n, [seed, zlib.crc32(speaker.encode())]))


def download(raw_dir: Path, cfg: DemoConfig, executor: Executor) -> pd.DataFrame:
    """Generate the demo corpus into `raw_dir/demo/<speaker>/<code>.{mpg,align}`; one row per clip."""
    for voice in cfg.voices.values():  # a bad voice fails here, once, not in every clip
        espeak.synthesize(["bin"], voice)
    face = make_face(cfg.video)
    final = Path(raw_dir) / "demo"
    rows, failures = [], []
    with atomic_dir(final) as staging:
        jobs = [ClipJob(code, speaker, os.fspath(staging / speaker), face, cfg)
                for speaker in cfg.speakers
                for code in speaker_codes(speaker, cfg.utterances_per_speaker, cfg.seed)]
        results = executor.imap(make_clip, jobs, desc="demo clips")
        for job, result in zip(jobs, results):
            utt_id = f"{job.speaker}_{job.code}"
            if isinstance(result, Failure):
                failures.append(result.message)
                print(f"demo: {utt_id} not generated: {result.message}", file=sys.stderr)
                continue
            rows.append({"utt_id": utt_id, "speaker": job.speaker,
                         "video_path": os.fspath(final / job.speaker / f"{job.code}.mpg"),
                         "align_path": os.fspath(final / job.speaker / f"{job.code}.align")})
        if not rows:
            raise RuntimeError(f"demo: none of the {len(jobs)} clips could be generated; the first: {failures[0]}")
    table = pd.DataFrame(rows, columns=["utt_id", "speaker", "video_path", "align_path"])
    return table.sort_values("utt_id", ignore_index=True)
