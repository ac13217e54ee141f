"""Training data: aligned streams windowed at their own rates, joined by shard path; conditioning; data order."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from model_world import AUDIO, MEL

from pipeline.audio.mel import LogMel
from pipeline.layout import Layout
from pipeline.shards import ShardReader, pack, unpack, write_shard
from pipeline.streams import AudioDirSource, Catalog, ConcatSource, StreamSource
from pipeline.training.synthetic import write_synthetic_corpus
from pipeline.training.windows import ResumableSampler, WindowDataset

SPF = 640
VIDEO_AUDIO_SPK = ["video", "audio", "spk"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Layout:
    layout = Layout(tmp_path_factory.mktemp("corpus"))
    write_synthetic_corpus(layout, {"train": ["s1", "s2"], "val": ["s1"]}, utts_per_speaker=3, n_frames=30)
    # the feature stages' and synthesis's shards, aligned with the roi shards: every value says
    # which utterance and which video frame it belongs to, so a window's alignment can be read off
    for path in sorted((layout.roi / "shards").rglob("*.parquet")):
        rel = path.relative_to(layout.roi / "shards")
        rows = pq.read_table(path, columns=["utt_id", "n_frames"]).to_pylist()
        units, prosody, synth = [], [], []
        for k, r in enumerate(rows):
            n = r["n_frames"]
            frame = np.arange(n, dtype=np.float32) + 1000 * k
            units.append({"utt_id": r["utt_id"], "status": "ok", "reason": None,
                          **pack("units", (np.repeat(np.arange(n), 2) % 200).astype(np.int16))})
            prosody.append({"utt_id": r["utt_id"], "status": "ok", "reason": None, **pack("f0", np.repeat(frame, 4)),
                            **pack("voiced", np.repeat(frame, 4) % 2 == 0), **pack("energy", -np.repeat(frame, 4))})
            synth.append({"utt_id": r["utt_id"], **pack("audio", np.repeat(frame, SPF)), "sample_rate": 16000})
        write_shard(layout.features("units") / rel, units)
        write_shard(layout.features("prosody") / rel, prosody)
        write_shard(layout.synth("base") / rel, synth)
    return layout


def _source(layout: Layout, keys, splits=("train",), min_frames=1, synth=False) -> StreamSource:
    catalog = Catalog(layout, AUDIO)
    streams = catalog.get(*keys) + ((catalog.synth("base"),) if synth else ())
    return StreamSource(layout.roi / "shards", streams, list(splits), min_frames)


def test_windows_align_video_audio_mel_and_conditioning(corpus):
    source = _source(corpus, ["video", "audio", "spk"])
    assert len(source) == 6 and {u.split for u in source.utts} == {"train"}
    ds = WindowDataset(source, window_frames=8, keys=VIDEO_AUDIO_SPK)
    mel = LogMel(MEL)
    for index in range(len(source)):
        item = ds[(index, 1234 + index)]
        u = source.utts[index]
        row = ShardReader(corpus.roi / "shards" / u.shard).read(u.row)
        video, audio = unpack(row, "video"), unpack(row, "audio")
        # find the window's start from the video and check the audio is the same span
        start = next(s for s in range(u.n_frames - 7)
                     if np.array_equal(video[s : s + 8].transpose(0, 3, 1, 2), item["video"].numpy()))
        assert item["video"].shape == (8, 1, 24, 24) and item["video"].dtype == torch.uint8
        assert item["audio"].shape == (8 * SPF,)
        np.testing.assert_array_equal(item["audio"].numpy(), audio[start * SPF : (start + 8) * SPF])
        assert mel(item["audio"]).shape == (80, 4 * 8)
        spk_row = pq.read_table(corpus.speakers / u.shard).to_pylist()[u.row]
        assert spk_row["utt_id"] == u.utt_id
        np.testing.assert_array_equal(item["spk"].numpy(), unpack(spk_row, "conditioning"))
        assert not np.array_equal(item["spk"].numpy(), unpack(spk_row, "embedding"))


def test_every_stream_is_windowed_at_its_own_rate(corpus):
    keys = ["video", "audio", "spk", "units", "f0", "voiced", "energy"]
    source = _source(corpus, keys, synth=True)
    assert {k: s.per_frame for k, s in source.streams.items()} == {
        "video": 1, "audio": 640, "spk": None, "units": 2, "f0": 4, "voiced": 4, "energy": 4, "synth": 640}
    ds = WindowDataset(source, 7, [*keys, "synth"])
    for index in range(len(source)):
        item = ds[(index, 99 + index)]
        u = source.utts[index]
        video = unpack(ShardReader(corpus.roi / "shards" / u.shard).read(u.row), "video")
        start = next(s for s in range(u.n_frames - 6)
                     if np.array_equal(video[s : s + 7].transpose(0, 3, 1, 2), item["video"].numpy()))
        frame = np.arange(start, start + 7, dtype=np.float32) + 1000 * u.row  # the values the fixture wrote
        assert item["units"].shape == (14,) and item["units"].dtype == torch.int16
        np.testing.assert_array_equal(item["units"].numpy(), np.repeat(np.arange(start, start + 7), 2) % 200)
        np.testing.assert_array_equal(item["f0"].numpy(), np.repeat(frame, 4))
        np.testing.assert_array_equal(item["energy"].numpy(), -np.repeat(frame, 4))
        assert item["voiced"].dtype == torch.bool and item["voiced"].shape == (28,)
        np.testing.assert_array_equal(item["synth"].numpy(), np.repeat(frame, SPF))
    # whole utterances: exact lengths at every rate, no off-by-one at the ends
    whole = WindowDataset(source, None, [*keys, "synth"])[0]
    n = source.utts[0].n_frames
    assert {k: len(v) for k, v in whole.items() if k != "spk"} == {
        "video": n, "audio": 640 * n, "units": 2 * n, "f0": 4 * n, "voiced": 4 * n, "energy": 4 * n, "synth": 640 * n}


def test_the_memory_cache_serves_the_same_windows_within_its_budget(corpus):
    plain = WindowDataset(_source(corpus, ["video", "audio", "spk"]), 8, VIDEO_AUDIO_SPK)
    one = sum(a.nbytes for a in plain.source.read(0, ["video", "audio"]).values())
    budget = 3 * one + 1  # three utterances of six
    cached = WindowDataset(StreamSource(corpus.roi / "shards", list(plain.source.streams.values()), ["train"],
                                        cache_bytes=budget), 8, VIDEO_AUDIO_SPK)
    for epoch in range(2):
        for index in range(len(plain)):
            a, b = plain[(index, epoch * 100 + index)], cached[(index, epoch * 100 + index)]
            assert all(torch.equal(a[k], b[k]) for k in a)
    assert cached.source._cache_bytes == 3 * one and len(cached.source._cache) == 3


def test_window_offsets_depend_only_on_the_seed(corpus):
    ds = WindowDataset(_source(corpus, VIDEO_AUDIO_SPK), 8, VIDEO_AUDIO_SPK)
    assert torch.equal(ds[(0, 7)]["audio"], ds[(0, 7)]["audio"])
    offsets = {ds[(0, s)]["audio"][:10].sum().item() for s in range(8)}
    assert len(offsets) > 1


def test_whole_utterances_and_audio_only(corpus):
    item = WindowDataset(_source(corpus, ["audio", "spk"], ["val"]), None, ["audio", "spk"])[0]
    assert set(item) == {"audio", "spk"} and item["audio"].shape == (30 * SPF,)
    with pytest.raises(ValueError, match="no stream"):
        WindowDataset(_source(corpus, ["audio", "spk"], ["val"]), None, ["video"])


def _beside(corpus: Layout, root, replaced: str) -> Layout:
    """A layout under `root` sharing `corpus`'s shards but for feature `replaced`, left empty to be written."""
    layout = Layout(root)
    (layout.root / "data" / "features").mkdir(parents=True)
    (layout.root / "data" / "roi").symlink_to(corpus.roi)
    for name in ("speakers", "units", "prosody"):
        if name != replaced:
            layout.features(name).symlink_to(corpus.features(name))
    return layout


def test_a_shard_out_of_sync_is_an_error(tmp_path, corpus):
    for name, keys in (("speakers", ["audio", "spk"]), ("units", ["audio", "spk", "units"])):
        bad = _beside(corpus, tmp_path / name, name)
        for path in sorted(corpus.features(name).rglob("*.parquet")):
            write_shard(bad.features(name) / path.relative_to(corpus.features(name)), pq.read_table(path).to_pylist()[::-1])
        with pytest.raises(ValueError, match="out of sync"):
            _source(bad, keys)


def test_utterances_lacking_a_stream_or_too_short_are_left_out(tmp_path, corpus):
    failed = _beside(corpus, tmp_path / "a", "speakers")
    for path in sorted(corpus.speakers.rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        rows[0] = {**{k: None for k in rows[0]}, "utt_id": rows[0]["utt_id"]}  # the speakers stage's failure row
        write_shard(failed.speakers / path.relative_to(corpus.speakers), rows)
    source = _source(failed, ["audio", "spk"])
    assert len(source) == 4 and source.skipped == {"too_short": 0, "no_conditioning": 2}
    assert _source(corpus, ["audio", "spk"], min_frames=31).skipped["too_short"] == 6
    no_prosody = _beside(corpus, tmp_path / "b", "prosody")
    for path in sorted(corpus.features("prosody").rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        rows[1] = {**{k: None for k in rows[1]}, "utt_id": rows[1]["utt_id"], "status": "failed"}
        write_shard(no_prosody.features("prosody") / path.relative_to(corpus.features("prosody")), rows)
    source = _source(no_prosody, ["audio", "spk", "f0"], min_frames=31)
    assert len(source) == 0 and source.skipped == {"too_short": 4, "no_conditioning": 0, "no_prosody": 2}


def test_sampler_order_is_seeded_and_resumes_mid_epoch(corpus):
    ds = WindowDataset(_source(corpus, VIDEO_AUDIO_SPK), 8, VIDEO_AUDIO_SPK)
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
    for speaker, f0, files in (("19", 120.0, 3), ("26", 220.0, 2), ("40", 180.0, 1)):
        for k in range(files):
            t = np.arange(int(22050 * 1.2)) / 22050
            # gated noise plus a tone: pure tones are trimmed away by the GE2E voice-activity detector
            gate = np.sin(2 * np.pi * (3 + k) * t) > 0
            wav = 0.3 * gate * rng.standard_normal(t.size) + 0.1 * np.sin(2 * np.pi * f0 * t)
            (root / speaker / "chapter").mkdir(parents=True, exist_ok=True)
            sf.write(root / speaker / "chapter" / f"{speaker}_{k}.wav", wav, 22050)
    src = AudioDirSource(root, 16000, SPF, min_frames=10, cache_dir=tmp_path / "cache", references=1, seed=0)
    # speaker 40 has one file: nothing but its own audio could condition it, so it is left out
    assert len(src) == 5 and src.speakers == ["19", "19", "19", "26", "26"] and src.skipped == {"no_conditioning": 1}
    assert src.n_frames(0) == int(22050 * 1.2 * 16000 / 22050) // SPF
    assert abs(len(src.read(0, ["audio"])["audio"]) - 1.2 * 16000) <= 1
    # each file's identity comes from another file of its speaker (the speakers stage's rule), never its own audio
    from pipeline.features.speakers import embed

    own = [embed(src.read(i, ["audio"])["audio"], 16000) for i in range(len(src))]
    others = {0: [1, 2], 1: [0, 2], 2: [0, 1], 3: [4], 4: [3]}
    for i, cands in others.items():
        assert not np.allclose(src.conditioning[i], own[i] / np.linalg.norm(own[i]), atol=1e-4)
        assert any(np.allclose(src.conditioning[i], own[j] / np.linalg.norm(own[j]), atol=1e-4) for j in cands)
    again = AudioDirSource(root, 16000, SPF, 10, tmp_path / "cache", 1, 0)
    np.testing.assert_array_equal(src.conditioning, again.conditioning)
    both = ConcatSource([_source(corpus, ["audio", "spk"]), src])
    ds = WindowDataset(both, 8, ["audio", "spk"])
    assert len(ds) == 11 and ds[(10, 0)]["audio"].shape == (8 * SPF,)
    np.testing.assert_array_equal(ds[(10, 0)]["spk"].numpy(), src.conditioning[4])
    with pytest.raises(ValueError, match="audio-only"):
        src.read(0, ["video"])
