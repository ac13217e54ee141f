"""Speaker embeddings: GE2E on real GRID talkers, the leakage rule, the stage and `v2s embed`."""
from __future__ import annotations

import itertools

import numpy as np
import paths
import pytest
from roi_samples import GRID, GRID_CLIPS, grid_audio, one_torch_thread, write_roi  # noqa: F401 - autouse fixture

from pipeline.audio.io import read_media_audio
from pipeline.cli import main as v2s
from pipeline.executor import Executor
from pipeline.features.speakers import SpeakersConfig, conditioning, embed, run_speakers
from pipeline.features.stage import UttKey
from pipeline.shards import ShardReader, list_shards, unpack


@pytest.fixture(scope="module")
def halves():
    """Embeddings of the first and second half of each real GRID clip (five talkers)."""
    first, second = [], []
    for clip in GRID_CLIPS:
        audio = grid_audio(clip)
        first.append(embed(audio[: len(audio) // 2], 16000))
        second.append(embed(audio[len(audio) // 2 :], 16000))
    return np.stack(first), np.stack(second)


def test_embeddings_are_256d_unit_norm(halves):
    first, _ = halves
    assert first.shape == (5, 256) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_halves_of_a_clip_pair_up_by_talker(halves):
    first, second = halves
    sim = first @ second.T  # sim[i, j]: first half of clip i against second half of clip j
    for i, j in itertools.combinations(range(5), 2):
        # For every two talkers, pairing each half with its own talker beats the swapped pairing.
        assert sim[i, i] + sim[j, j] > sim[i, j] + sim[j, i] + 0.05, (GRID_CLIPS[i], GRID_CLIPS[j])
    assert np.diag(sim).mean() > sim[~np.eye(5, dtype=bool)].mean() + 0.05


def test_sample_rate_is_passed_to_the_encoder():
    clip = GRID / "bbaf2n.mpg"
    at_16k = embed(grid_audio("bbaf2n"), 16000)
    at_44k = read_media_audio(clip, 44100)
    assert float(embed(at_44k, 44100) @ at_16k) > 0.99
    assert float(embed(at_44k, 16000) @ at_16k) < 0.8  # the same samples read at the wrong rate are another voice


def test_silent_audio_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="silent"):
        embed(np.zeros(16000, np.float32), 16000)


def _key(utt: str, speaker: str, split: str) -> UttKey:
    return UttKey(utt, speaker, split, f"{split}/{speaker}-000.parquet", 0, 25, 25.0)


KEYS = [_key("a1", "a", "train"), _key("a2", "a", "train"), _key("a3", "a", "train"), _key("a4", "a", "test"),
        _key("b1", "b", "unseen"), _key("b2", "b", "unseen"), _key("b3", "b", "unseen"), _key("b4", "b", "unseen"),
        _key("c1", "c", "train"), _key("c2", "c", "val"), _key("d1", "d", "unseen")]


def _vectors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = {k.utt_id: rng.standard_normal(256) for k in KEYS}
    return {u: (v / np.linalg.norm(v)).astype(np.float32) for u, v in vectors.items()}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_conditioning_excludes_the_target():
    e = _vectors()
    cond = conditioning(KEYS, e, references=2, seed=0)
    a1 = cond["a1"]
    assert a1.rule == "train_mean_excluding_target"
    np.testing.assert_allclose(a1.vector, _unit(e["a2"] + e["a3"]), atol=1e-6)
    assert float(a1.vector @ e["a1"]) < 0.2  # random 256-d vectors: the target's own direction is absent
    assert cond["a4"].rule == "train_mean"
    np.testing.assert_allclose(cond["a4"].vector, _unit(e["a1"] + e["a2"] + e["a3"]), atol=1e-6)
    for target in ("b1", "b2", "b3", "b4"):
        c = cond[target]
        assert c.rule == "references" and len(c.references) == 2 and target not in c.references
        assert set(c.references) <= {"b1", "b2", "b3", "b4"}
        np.testing.assert_allclose(c.vector, _unit(sum(e[u] for u in c.references)), atol=1e-6)
    assert len({cond[t].references for t in ("b1", "b2", "b3", "b4")}) > 1  # chosen per target, not one fixed set
    assert cond["c1"] == "speaker c has no other train utterance to condition on"
    assert cond["d1"] == "speaker d has no train utterance and no other utterance to use as reference"


def test_changing_only_the_target_leaves_its_conditioning_unchanged():
    e = _vectors()
    before = conditioning(KEYS, e, references=2, seed=0)
    for target in ("a1", "a2", "a4", "b2"):
        changed = {**e, target: _vectors(seed=1)[target]}
        after = conditioning(KEYS, changed, references=2, seed=0)
        assert after[target].vector.tobytes() == before[target].vector.tobytes()
        assert after[target].references == before[target].references
    assert not np.array_equal(conditioning(KEYS, {**e, "a1": e["a4"]}, 2, 0)["a2"].vector, before["a2"].vector)
    assert conditioning(KEYS, e, references=2, seed=0)["b1"].references == before["b1"].references
    assert any(conditioning(KEYS, e, references=2, seed=s)["b1"].references != before["b1"].references for s in range(1, 6))


def _pieces(clip: str) -> list[np.ndarray]:
    audio = grid_audio(clip)
    return [audio[4800 + i * 12800 : 4800 + (i + 1) * 12800] for i in range(3)]  # three 0.8 s pieces of the speech


def _corpus(first_piece: np.ndarray | None = None) -> list[tuple[str, str, str, np.ndarray]]:
    s0, s1, s4 = _pieces("lbax4n"), _pieces("brbk7n"), _pieces("lrwp9a")
    if first_piece is not None:
        s0[0] = first_piece
    return ([("s0_0", "s0", "train", s0[0]), ("s0_1", "s0", "train", s0[1]), ("s0_2", "s0", "test", s0[2])]
            + [(f"s1_{i}", "s1", "train", a) for i, a in enumerate(s1)]
            + [(f"s4_{i}", "s4", "unseen", a) for i, a in enumerate(s4)])


def _read(root) -> dict[str, dict]:
    return {r["utt_id"]: r for p in list_shards(root) for r in ShardReader(p)}


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speakers")
    roi = write_roi(tmp / "roi", _corpus())
    outcome = run_speakers(SpeakersConfig(references=2), 0, Executor(workers=1), roi, tmp / "speakers")
    return tmp, roi, outcome


def test_stage_writes_aligned_shards_with_both_embeddings(stage):
    tmp, roi, outcome = stage
    assert (outcome.ok, outcome.failures) == (9, [])
    for path in list_shards(roi):
        out = ShardReader(tmp / "speakers" / path.relative_to(roi))
        assert out.utt_ids == ShardReader(path).utt_ids and out.columns[0] == "utt_id"
    rows = _read(tmp / "speakers")
    for row in rows.values():
        for col in ("embedding", "conditioning"):
            v = unpack(row, col)
            assert v.shape == (256,) and v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-5
        assert not np.array_equal(unpack(row, "embedding"), unpack(row, "conditioning"))
    assert {u: r["conditioning_rule"] for u, r in rows.items()} == {
        "s0_0": "train_mean_excluding_target", "s0_1": "train_mean_excluding_target", "s0_2": "train_mean",
        "s1_0": "train_mean_excluding_target", "s1_1": "train_mean_excluding_target", "s1_2": "train_mean_excluding_target",
        "s4_0": "references", "s4_1": "references", "s4_2": "references"}
    for u in ("s4_0", "s4_1", "s4_2"):
        assert len(rows[u]["references"]) == 2 and u not in rows[u]["references"]
    # s0_0 is conditioned on s0_1 alone: exactly s0_1's own embedding.
    np.testing.assert_allclose(unpack(rows["s0_0"], "conditioning"), unpack(rows["s0_1"], "embedding"), atol=1e-6)


def test_stage_conditioning_ignores_the_targets_own_audio(stage):
    tmp, _, _ = stage
    other_voice = _pieces("lbbc2a")[1]
    roi = write_roi(tmp / "roi-changed", _corpus(first_piece=other_voice))
    run_speakers(SpeakersConfig(references=2), 0, Executor(workers=1), roi, tmp / "changed")
    before, after = _read(tmp / "speakers"), _read(tmp / "changed")
    assert after["s0_0"]["conditioning"] == before["s0_0"]["conditioning"]
    assert after["s0_0"]["embedding"] != before["s0_0"]["embedding"]
    assert after["s0_1"]["conditioning"] != before["s0_1"]["conditioning"]  # s0_0 is one of s0_1's references
    assert all(after[u]["conditioning"] == before[u]["conditioning"] for u in ("s1_0", "s4_0", "s4_1"))


def test_embed_cli_on_a_video_file(tmp_path, capsys):
    clip = GRID / "lbbc2a.mpg"
    if not clip.is_file():
        paths.missing_grid()
    assert v2s(["embed", str(clip), "-o", str(tmp_path / "e.npy")]) == 0
    saved = np.load(tmp_path / "e.npy")
    np.testing.assert_allclose(saved, embed(read_media_audio(clip, 16000), 16000), atol=1e-6)
    assert "256-d speaker embedding" in capsys.readouterr().out
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert v2s(["embed", str(tmp_path / "broken.mp4"), "-o", str(tmp_path / "x.npy")]) == 1
    assert "cannot read audio" in capsys.readouterr().err and not (tmp_path / "x.npy").exists()
    # an output name that would not hold .npy bytes is refused before reading anything
    assert v2s(["embed", str(tmp_path / "broken.mp4"), "-o", str(tmp_path / "x.txt")]) == 1
    assert "written as .npy; name it *.npy" in capsys.readouterr().err and not (tmp_path / "x.txt").exists()
