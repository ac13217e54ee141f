"""Training data: windows aligned across video, audio and mel; conditioning joined by utterance; data order."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from pipeline.audio.mel import LogMel, MelConfig
from pipeline.shards import ShardReader, unpack, write_shard
from pipeline.training.data import (
    AudioDirSource, ConcatSource, ResumableSampler, RoiSource, WindowDataset, write_synthetic_corpus,
)

SPF = 640


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return write_synthetic_corpus(root, {"train": ["s1", "s2"], "val": ["s1"]}, utts_per_speaker=3, n_frames=30)


def test_windows_align_video_audio_mel_and_conditioning(corpus):
    roi, spk = corpus
    source = RoiSource(roi, spk, ["train"])
    assert len(source) == 6 and {u.split for u in source.utts} == {"train"}
    ds = WindowDataset(source, window_frames=8, samples_per_frame=SPF)
    mel = LogMel(MelConfig())
    for index in range(len(source)):
        item = ds[(index, 1234 + index)]
        u = source.utts[index]
        row = ShardReader(roi / "shards" / u.shard).read(u.row)
        video, audio = unpack(row, "video"), unpack(row, "audio")
        # find the window's start from the video and check the audio is the same span
        start = next(s for s in range(u.n_frames - 7)
                     if np.array_equal(video[s : s + 8].transpose(0, 3, 1, 2), item["video"].numpy()))
        assert item["video"].shape == (8, 1, 24, 24) and item["video"].dtype == torch.uint8
        assert item["audio"].shape == (8 * SPF,)
        np.testing.assert_array_equal(item["audio"].numpy(), audio[start * SPF : (start + 8) * SPF])
        assert mel(item["audio"]).shape == (80, 4 * 8)
        spk_row = pq.read_table(spk / u.shard).to_pylist()[u.row]
        assert spk_row["utt_id"] == u.utt_id
        np.testing.assert_array_equal(item["spk"].numpy(), unpack(spk_row, "conditioning"))
        assert not np.array_equal(item["spk"].numpy(), unpack(spk_row, "embedding"))


def test_window_offsets_depend_only_on_the_seed(corpus):
    roi, spk = corpus
    ds = WindowDataset(RoiSource(roi, spk, ["train"]), 8, SPF)
    assert torch.equal(ds[(0, 7)]["audio"], ds[(0, 7)]["audio"])
    offsets = {ds[(0, s)]["audio"][:10].sum().item() for s in range(8)}
    assert len(offsets) > 1


def test_whole_utterances_and_audio_only(corpus):
    roi, spk = corpus
    item = WindowDataset(RoiSource(roi, spk, ["val"]), None, SPF, with_video=False)[0]
    assert set(item) == {"audio", "spk"} and item["audio"].shape == (30 * SPF,)


def test_speaker_shard_out_of_sync_is_an_error(tmp_path, corpus):
    roi, spk = corpus
    bad = tmp_path / "speakers"
    for path in sorted(spk.rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()[::-1]
        write_shard(bad / path.relative_to(spk), rows)
    with pytest.raises(ValueError, match="out of sync"):
        RoiSource(roi, bad, ["train"])


def test_utterances_without_conditioning_or_too_short_are_left_out(tmp_path, corpus):
    roi, spk = corpus
    failed = tmp_path / "speakers"
    for path in sorted(spk.rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        rows[0] = {**{k: None for k in rows[0]}, "utt_id": rows[0]["utt_id"]}  # the speakers stage's failure row
        write_shard(failed / path.relative_to(spk), rows)
    source = RoiSource(roi, failed, ["train"])
    assert len(source) == 4 and source.skipped == {"too_short": 0, "no_conditioning": 2}
    assert RoiSource(roi, spk, ["train"], min_frames=31).skipped["too_short"] == 6


def test_sampler_order_is_seeded_and_resumes_mid_epoch(corpus):
    roi, spk = corpus
    ds = WindowDataset(RoiSource(roi, spk, ["train"]), 8, SPF)
    full = ResumableSampler(ds, 1, 0, seed=3)
    full.set_epoch(2)
    order = list(full)
    tail = ResumableSampler(ds, 1, 0, seed=3)
    tail.set_epoch(2)
    tail.start = 4
    assert list(tail) == order[4:] and len(tail) == len(order) - 4
    other = ResumableSampler(ds, 1, 0, seed=3)
    other.set_epoch(3)
    assert [i for i, _ in other] != [i for i, _ in order] or [s for _, s in other] != [s for _, s in order]
    ranks = [ResumableSampler(ds, 2, r, seed=3) for r in range(2)]
    for r in ranks:
        r.set_epoch(2)
    assert sorted(i for r in ranks for i, _ in r) == list(range(len(ds)))


def test_audio_dir_source_resamples_and_conditions_on_other_files(tmp_path, corpus):
    root = tmp_path / "libri"
    rng = np.random.default_rng(0)
    for speaker, f0 in (("19", 120.0), ("26", 220.0)):
        for k in range(2):
            t = np.arange(int(22050 * 1.2)) / 22050
            # gated noise plus a tone: pure tones are trimmed away by the GE2E voice-activity detector
            gate = np.sin(2 * np.pi * (3 + k) * t) > 0
            wav = 0.3 * gate * rng.standard_normal(t.size) + 0.1 * np.sin(2 * np.pi * f0 * t)
            (root / speaker / "chapter").mkdir(parents=True, exist_ok=True)
            sf.write(root / speaker / "chapter" / f"{speaker}_{k}.wav", wav, 22050)
    src = AudioDirSource(root, 16000, SPF, min_frames=10, cache_dir=tmp_path / "cache", per_speaker=1)
    assert len(src) == 4 and src.speakers == ["19", "19", "26", "26"]
    assert src.n_frames(0) == int(22050 * 1.2 * 16000 / 22050) // SPF
    assert abs(len(src.read(0, ["audio"])["audio"]) - 1.2 * 16000) <= 1
    # each file's identity comes from the other file of its speaker, never its own audio
    assert not np.allclose(src.conditioning[0], src.conditioning[1])
    np.testing.assert_allclose(src.conditioning[0], AudioDirSource(root, 16000, SPF, 10, tmp_path / "cache", 1).conditioning[0])
    roi, spk = corpus
    both = ConcatSource([RoiSource(roi, spk, ["train"]), src])
    ds = WindowDataset(both, 8, SPF, with_video=False)
    assert len(ds) == 10 and ds[(9, 0)]["audio"].shape == (8 * SPF,)
    np.testing.assert_array_equal(ds[(9, 0)]["spk"].numpy(), src.conditioning[3])
    with pytest.raises(ValueError, match="audio-only"):
        src.read(0, ["video"])

