"""The offline demo corpus: GRID grammar, generated clips, alignments, determinism, moving lips."""
from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import paths
import pytest
from scipy.signal import correlate

from pipeline.audio.io import read_media_audio
from pipeline.config import ConfigError, Params, load_params, parse
from pipeline.corpora import demo, grammar
from pipeline.corpora.alignments import TICKS_PER_SECOND, read_align
from pipeline.corpora.config import DemoConfig, DemoCorpusConfig
from pipeline.corpora.espeak import EspeakError, synthesize
from pipeline.executor import Executor
from pipeline.video.probe import ffmpeg_exe, probe

REPO = paths.REPO
PARAMS = Params(load_params(REPO / "params.yaml"))
GRID_SAMPLES = {  # shared/grid_samples/SOURCE.md
    "bbaf2n": "bin blue at f two now",
    "brbk7n": "bin red by k seven now",
    "lbax4n": "lay blue at x four now",
    "lbbc2a": "lay blue by c two again",
    "lrwp9a": "lay red with p nine again",
}


def tiny(**video: object) -> DemoConfig:
    """Two voices, two sentences each; the shipped video settings with `video` changed."""
    shipped = PARAMS.raw("corpus.demo.video")
    return parse(DemoConfig, {
        "seed": 7, "utterances_per_speaker": 2, "lead_silence": 0.2, "trail_silence": 0.2,
        "speakers": {"d1": {"voice": "en+m3", "rate": 165, "pitch": 40, "range": 50},
                     "d2": {"voice": "en-us+f4", "rate": 160, "pitch": 55, "range": 70}},
        "video": {**shipped, **video},
    }, "corpus.demo")


def generate(root: Path, cfg: DemoConfig, workers: int = 1) -> pd.DataFrame:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # stages run from the repo root and pass a relative raw_dir
        return demo.download(Path("raw"), cfg, Executor(workers=workers))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("demo")
    return root, generate(root, tiny())


def decode_frames(path: Path) -> np.ndarray:
    info = probe(path)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


# --- grammar -----------------------------------------------------------------------------

def test_codes_name_grid_sentences():
    for code, text in GRID_SAMPLES.items():
        assert grammar.decode(code) == tuple(text.split())
        assert grammar.encode(text.split()) == code
    assert grammar.decode("sgizzs") == ("set", "green", "in", "z", "zero", "soon")  # letter z, digit zero


def test_every_sentence_has_its_own_code():
    codes = {grammar.encode(grammar.sentence(i)) for i in range(grammar.N_SENTENCES)}
    assert grammar.N_SENTENCES == 4 * 4 * 4 * 25 * 10 * 4 == len(codes)


def test_bad_codes_and_words_say_which_slot():
    with pytest.raises(ValueError, match="not a GRID letter"):
        grammar.decode("bbaw2n")  # GRID has no letter w
    with pytest.raises(ValueError, match="not a GRID colour"):
        grammar.encode(["bin", "pink", "at", "f", "two", "now"])
    with pytest.raises(ValueError, match="6 characters"):
        grammar.decode("bba")


def test_sampling_is_seeded_and_without_repeats():
    codes = grammar.sample_codes(500, seed=[0, 1])
    assert len(set(codes)) == 500
    assert codes == grammar.sample_codes(500, seed=[0, 1])
    assert codes != grammar.sample_codes(500, seed=[0, 2])
    assert all(grammar.encode(grammar.decode(c)) == c for c in codes)
    with pytest.raises(ValueError, match="distinct"):
        grammar.sample_codes(grammar.N_SENTENCES + 1, seed=0)


def test_every_grid_word_is_spoken_as_one_word():
    # One sentence per letter cycles through every other slot's words as well.
    slots = list(grammar.WORDS.values())
    voice = tiny().voices["d1"]
    for i, letter in enumerate(grammar.WORDS["letter"]):
        words = [s[i % len(s)] for s in slots[:3]] + [letter] + [s[i % len(s)] for s in slots[4:]]
        speech = synthesize([demo.SPOKEN.get(w, w) for w in words], voice)
        assert len(speech.words) == 6, words


# --- config ------------------------------------------------------------------------------

def test_shipped_params_describe_five_working_voices():
    cfg = PARAMS.parse("corpus.demo", DemoCorpusConfig)
    assert sorted(cfg.speakers) == ["d1", "d2", "d3", "d4", "d5"]
    assert len({v.name for v in cfg.voices.values()}) == 5
    for voice in cfg.voices.values():
        assert len(synthesize(["bin"], voice).audio) > 0


def test_bad_config_is_refused_before_anything_is_written(tmp_path):
    cfg = tiny()
    bad_voice = replace(cfg, speakers={**cfg.speakers, "d2": replace(cfg.speakers["d2"], voice="en+nosuchvariant")})
    with pytest.raises(EspeakError, match="nosuchvariant"):
        generate(tmp_path, bad_voice)
    with pytest.raises(ConfigError, match="unknown key corpus.demo.video.colour"):
        tiny(colour="red")
    with pytest.raises(ConfigError, match="fps=24 must divide"):
        tiny(fps=24)
    assert not (tmp_path / "raw" / "demo").exists()


def test_clips_that_fail_are_reported_and_nothing_half_made_is_left(tmp_path, capsys):
    with pytest.raises(RuntimeError, match="none of the 4 clips.*bitrate 1 is not allowed in mp2"):
        generate(tmp_path, tiny(audio_bitrate="1k"))
    assert capsys.readouterr().err.count("not generated") == 4
    assert not (tmp_path / "raw" / "demo").exists()


# --- generated corpus --------------------------------------------------------------------

def test_table_follows_the_sources_contract(corpus):
    root, table = corpus
    assert list(table.columns) == ["utt_id", "speaker", "video_path", "align_path"]
    assert table["utt_id"].is_unique and list(table["utt_id"]) == sorted(table["utt_id"])
    assert table.groupby("speaker").size().to_dict() == {"d1": 2, "d2": 2}
    for row in table.itertuples():
        code = row.utt_id.split("_", 1)[1]
        assert row.utt_id == f"{row.speaker}_{code}"
        assert row.video_path == f"raw/demo/{row.speaker}/{code}.mpg"  # relative, built from raw_dir
        assert row.align_path == f"raw/demo/{row.speaker}/{code}.align"
        assert (root / row.video_path).is_file() and (root / row.align_path).is_file()
    assert sorted(p.name for p in (root / "raw" / "demo").iterdir()) == ["d1", "d2"]  # no leftovers


def test_clips_are_grid_like_media(corpus):
    root, table = corpus
    for path in table["video_path"]:
        info = probe(root / path)
        assert (info.width, info.height, info.fps) == (360, 288, 25.0)
        assert info.audio_sr == 22050 and info.audio_channels == 1
        assert 1.5 <= info.duration <= 2.8


def test_align_files_match_transcript_and_clip(corpus):
    root, table = corpus
    for row in table.itertuples():
        code = row.utt_id.split("_", 1)[1]
        words = read_align(root / row.align_path)
        assert tuple(w.word for w in words) == grammar.decode(code)
        lines = [line.split() for line in (root / row.align_path).read_text().splitlines()]
        assert lines[0][0] == "0" and lines[0][2] == "sil" and lines[-1][2] == "sil"
        assert all(a[1] == b[0] for a, b in zip(lines, lines[1:]))  # contiguous
        n_frames = len(decode_frames(root / row.video_path))
        assert int(lines[-1][1]) == n_frames * TICKS_PER_SECOND // 25  # ends with the last frame
        assert abs(words[0].start - 0.2) < 0.06  # lead_silence


def test_decoded_audio_is_the_speech_at_the_aligned_time(corpus):
    root, table = corpus
    cfg = tiny()
    row = table.iloc[0]
    utt = demo.speak(row.utt_id.split("_", 1)[1], cfg.voices[row.speaker], cfg)
    decoded = read_media_audio(root / row.video_path, utt.sample_rate)
    n = min(len(decoded), len(utt.audio))
    assert n == len(utt.audio)  # the container holds the whole clip's audio
    lag = int(np.argmax(correlate(decoded[:n], utt.audio, mode="full", method="fft"))) - (n - 1)
    assert abs(lag) <= 2  # the MP2 decoder delay is compensated: audio, frames and .align agree
    error = decoded[:n] - utt.audio
    assert 10 * np.log10(np.sum(utt.audio**2) / np.sum(error**2)) > 15  # dB, MP2 at 96 kb/s


def test_generation_is_bit_exact_across_runs_and_worker_counts(corpus, tmp_path):
    root, table = corpus
    again = generate(tmp_path, tiny(), workers=2)
    pd.testing.assert_frame_equal(table, again)
    files = sorted(p.relative_to(root) for p in (root / "raw").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in (tmp_path / "raw").rglob("*") if p.is_file())
    for name in files:
        assert (root / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_face_mesh_tracks_a_mouth_that_moves_with_the_audio(corpus):
    mp = pytest.importorskip("mediapipe")
    root, table = corpus
    for path in table["video_path"]:
        frames = decode_frames(root / path)
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1) as mesh:
            found = [mesh.process(f).multi_face_landmarks for f in frames]
        assert all(found), f"{path}: no face in {sum(f is None for f in found)} of {len(frames)} frames"
        opening = np.array([(f[0].landmark[14].y - f[0].landmark[13].y) * frames.shape[1] for f in found])
        audio = read_media_audio(root / path, 16000)
        audio = np.pad(audio, (0, max(0, len(frames) * 640 - len(audio))))[: len(frames) * 640]
        energy = 10 * np.log10(np.mean(audio.reshape(len(frames), 640) ** 2, axis=1) + 1e-10)
        # Measured on the default 120-clip corpus: opening ranges 2.5-13 px, correlation 0.81-0.97.
        assert opening.max() - opening.min() > 5.0, path
        assert np.corrcoef(opening, energy)[0, 1] > 0.6, path
