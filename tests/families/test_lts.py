"""LTS through the generic stage code: frame alignment of every stream it reads, the variants' parts, resume,
the paper profile, the exported card, synthesis of every split from video alone (never the ground-truth
units or prosody) and the scoring of what it predicted."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from model_world import AUDIO, MEL, TREE, loss, model_cfg, train_cfg
from sklearn.cluster import KMeans

from pipeline.audio.mel import log_mel
from pipeline.config import ConfigError, Params
from pipeline.evaluation.config import evaluation_config
from pipeline.evaluation.evaluate import Settings, score, tasks
from pipeline.evaluation.summary import summarize
from pipeline.executor import Executor
from pipeline.families import get_family
from pipeline.features import mfcc
from pipeline.features.prosody import ProsodyConfig, prosody
from pipeline.features.stage import Utterance, UttKey, fit_frames
from pipeline.features.units import unit_count
from pipeline.inference.card import load_card
from pipeline.inference.synthesis import run_synthesis
from pipeline.layout import Layout
from pipeline.shards import pack, unpack, write_shard
from pipeline.streams import Catalog, StreamSource
from pipeline.training.loop import Trainer, WindowFeed
from pipeline.training.runs import lts_config, train_lts
from pipeline.training.synthetic import write_synthetic_corpus
from pipeline.training.task import Context
from pipeline.training.windows import WindowDataset
from stages import synthesize_lts

SPLITS = {"train": ["s1", "s2"], "val": ["s1"], "test": ["s2"], "unseen": ["s3"]}
CLUSTERS = 6
STREAMS = ("video", "audio", "spk", "units", "f0", "voiced", "energy")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Layout:
    return write_synthetic_corpus(Layout(tmp_path_factory.mktemp("corpus")), SPLITS, utts_per_speaker=3, n_frames=12,
                                  size=24, clusters=CLUSTERS)


# -- alignment -----------------------------------------------------------------------------------
def _burst_clip(n_frames: int, frame: int) -> np.ndarray:
    """Silence with a loud 300 Hz tone in video frame `frame` only (640 samples per frame at 16 kHz)."""
    audio = 1e-4 * np.random.default_rng(0).standard_normal(n_frames * 640).astype(np.float32)
    t = np.arange(640) / 16000
    audio[frame * 640:(frame + 1) * 640] += (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    return audio


@pytest.mark.parametrize("n_frames,frame", [(1, 0), (2, 0), (2, 1), (7, 0), (7, 6), (75, 0), (75, 74), (75, 30)])
def test_units_prosody_mel_and_video_stay_aligned(n_frames, frame):
    """The feature stages' own functions: exact counts per video frame at any length, and a sound in one video
    frame lands in that frame's units and mel frames, the first and the last frame included."""
    audio = _burst_clip(n_frames, frame)
    key = UttKey("u", "s", "train", "train/s-000.parquet", 0, n_frames, 25.0)
    utt = Utterance(key, audio, 16000)
    feats = prosody(utt, MEL, ProsodyConfig(60.0, 400.0, 1024, 35.0))
    energy, f0, voiced = (unpack(feats, k) for k in ("energy", "f0", "voiced"))
    frames = mfcc.mfcc_features(audio)
    labels = KMeans(2, n_init=3, random_state=0).fit_predict(frames) if len(frames) > 1 else np.zeros(1, int)
    units = fit_frames(labels, unit_count(key))
    mel = log_mel(audio, MEL)
    assert units.shape == (2 * n_frames,) and energy.shape == f0.shape == voiced.shape == (4 * n_frames,)
    assert mel.shape == (80, 4 * n_frames)
    assert frame * 4 <= int(np.argmax(energy)) < frame * 4 + 4
    far = np.abs(np.arange(4 * n_frames) // 4 - frame) >= 2  # mel windows reach half a video frame out
    assert not far.any() or energy[far].max() < 0.01 * energy.max()
    if n_frames > 3:
        burst = units[2 * frame: 2 * frame + 2]
        assert len(set(burst)) == 1
        unit_far = np.abs(np.arange(2 * n_frames) // 2 - frame) >= 2
        assert burst[0] not in set(units[unit_far])


@pytest.mark.parametrize("window", [1, 5, 12])
def test_training_windows_cut_every_stream_at_its_rate(corpus, window):
    source = StreamSource(corpus.roi / "shards", Catalog(corpus, AUDIO).get(*STREAMS), ["train"], window)
    data = WindowDataset(source, window, STREAMS)
    whole = source.read(0, [k for k in STREAMS if k != "spk"])
    for seed in range(6):
        item = data[(0, seed)]
        start = int(np.random.default_rng(seed).integers(0, 12 - window + 1))
        rates = {"video": 1, "audio": 640, "units": 2, "f0": 4, "voiced": 4, "energy": 4}
        for key, rate in rates.items():
            assert item[key].shape[0] == window * rate
            expected = whole[key][start * rate:(start + window) * rate]
            got = item[key].numpy().transpose(0, 2, 3, 1) if key == "video" else item[key].numpy()
            assert np.array_equal(got, expected), key


# -- the variants and their training -----------------------------------------------------------
def _variant(prosody: bool = True, postnet: bool = True):
    return get_family("lts").variant_class(prosody, postnet, 0.667)


def _task(variant, profile: str = "demo", **train):
    cfg = model_cfg("lts", profile, prosody=variant.prosody, postnet=variant.postnet)
    return get_family("lts").task("lts", Context(), train_cfg(**{"lr": 1e-3, **train}), cfg, loss("lts"), variant)


def _batch(frames: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randint(0, 256, (2, frames, 1, 24, 24), dtype=torch.uint8, generator=g),
            "audio": 0.1 * torch.randn(2, frames * 640, generator=g), "spk": torch.randn(2, 256, generator=g),
            "units": torch.randint(0, 200, (2, 2 * frames), generator=g),
            "f0": 100 + 100 * torch.rand(2, 4 * frames, generator=g), "voiced": torch.rand(2, 4 * frames, generator=g) > 0.3,
            "energy": torch.rand(2, 4 * frames, generator=g)}


def test_each_variant_has_its_parts_and_losses():
    logs = {}
    for pitch in (True, False):
        for postnet in (True, False):
            task = _task(_variant(pitch, postnet))
            task.train(True)
            logs[pitch, postnet] = set(task.train_step(_batch()))
            model = task.model
            assert hasattr(model.coarse, "pitch_predictor") == pitch and (model.postnet is not None) == postnet
            assert set(task.optimizers) == ({"g", "postnet"} if postnet else {"g"})
    assert logs[True, True] == {"g", "postnet", "mel_l1", "unit_ce", "pitch_l1", "voicing_bce", "energy_l1", "flow_nll"}
    assert logs[False, False] == {"g", "mel_l1", "unit_ce"}
    with pytest.raises(ValueError, match="do not fit the variant"):
        get_family("lts").task("lts", Context(), train_cfg(), model_cfg("lts", prosody=False), loss("lts"), _variant())


def test_the_post_net_never_changes_the_coarse_model():
    """Detached and on its own optimiser, the post-net leaves the coarse model exactly as a run without it:
    the post-net ablation compares the same coarse model with and without its refinement."""
    coarse = []
    for postnet in (True, False):
        torch.manual_seed(0)
        task = _task(_variant(postnet=postnet))
        torch.manual_seed(1)  # as the loop reseeds after building: the same dropout noise with or without it
        task.train(True)
        for step in range(3):
            task.ctx.step = step + 1
            task.train_step(_batch(seed=step))
        coarse.append(task.model.coarse.state_dict())
    assert all(torch.equal(coarse[0][k], coarse[1][k]) for k in coarse[0])


@pytest.mark.slow
def test_paper_profile_builds_and_steps():
    task = _task(_variant(), "paper", lr=1e-4)
    task.train(True)
    logs = task.train_step(_batch(frames=3))
    assert np.isfinite(list(logs.values())).all()
    assert sum(p.numel() for p in task.model.parameters()) > 50_000_000  # ResNet-18, 8 x 512 conformer, 12 flow blocks


def test_resumed_run_ends_with_the_same_weights(corpus, tmp_path):
    cfg = train_cfg(4, batch_size=2, window_frames=3, checkpoint_every=2, val_every=100, log_every=100, seed=3)
    mcfg = model_cfg("lts", n_units=CLUSTERS)
    source = StreamSource(corpus.roi / "shards", Catalog(corpus, AUDIO).get(*STREAMS), ["train"])
    data = WindowDataset(source, 3, STREAMS)

    def run(directory, stop_at=None):
        feed = WindowFeed(data, None, cfg.batch_size, cfg.num_workers, cfg.val_utterances, cfg.seed)
        factory = lambda ctx: get_family("lts").task("lts", ctx, cfg, mcfg, loss("lts"), _variant())  # noqa: E731
        return Trainer(factory, cfg.loop(), feed, directory, None, "fp").fit(stop_at).model.state_dict()

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_at=3)
    resumed = run(tmp_path / "b")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert any(k.startswith("postnet.") for k in straight)


# -- the stages ----------------------------------------------------------------------------------
def _stage_params() -> Params:
    tree = copy.deepcopy(TREE)
    tree["train"].update(batch_size=2, window_frames=3, val_every=100, log_every=100, checkpoint_every=100)
    tree["lts"]["steps"] = 2
    return Params(tree)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Layout:
    """The full variant trained by the stage's code, in a layout of its own over the corpus."""
    root = tmp_path_factory.mktemp("lts")
    (root / "data").mkdir()
    (root / "data" / "roi").symlink_to(corpus.roi)
    (root / "data" / "features").symlink_to(corpus.root / "data" / "features")
    layout = Layout(root)
    train_lts(lts_config(_stage_params(), "lts_full"), layout)
    return layout


def test_stage_exports_a_card_naming_the_unit_source(trained):
    card = load_card(trained.model("lts", "lts_full"))
    assert (card.kind, card.family, card.name, card.inputs) == ("lts", "lts", "lts_full", ("video", "spk"))
    assert card.extra["units_source"] == "mfcc" and card.model["units_source"] == "mfcc"
    assert card.model["n_units"] == CLUSTERS and card.extra["temperature"] == 0.667
    assert card.model["log_f0_std"] > 0 and card.extra["variant"] == {"prosody": True, "postnet": True, "temperature": 0.667}
    assert {"unit_accuracy", "f0_rmse", "voicing_error", "energy_mae", "flow_nll", "mel_l1"} <= set(card.validation)


def _synthesis(layout: Layout, out) -> dict[str, list[dict]]:
    run_synthesis(layout.model("lts", "lts_full"), None, layout, out, Executor(workers=1), batch_size=2)
    return {p.relative_to(out).as_posix(): pq.read_table(p).to_pylist() for p in sorted(out.rglob("*.parquet"))}


def test_synthesis_never_reads_ground_truth_units_or_prosody(trained, tmp_path):
    before = _synthesis(trained, tmp_path / "a")
    assert len(before) == 5 and all(r["pred_units_shape"] == [24] and r["pred_f0_shape"] == [48]
                                    for rows in before.values() for r in rows)
    # the features replaced by noise: same audio, same predictions
    noisy = Layout(tmp_path / "noisy")
    (noisy.root / "data").mkdir(parents=True)
    (noisy.root / "data" / "roi").symlink_to(trained.roi.resolve())
    (noisy.root / "models").symlink_to((trained.root / "models").resolve())
    (noisy.root / "data" / "features").mkdir()
    (noisy.speakers).symlink_to(trained.speakers.resolve())
    rng = np.random.default_rng(1)
    for name, columns in (("units", ("units",)), ("prosody", ("f0", "voiced", "energy"))):
        for path in sorted(trained.features(name).rglob("*.parquet")):
            rows = [{"utt_id": r["utt_id"], **{k: v for c in columns
                                               for k, v in pack(c, rng.permutation(unpack(r, c))).items()}}
                    for r in pq.read_table(path).to_pylist()]
            write_shard(noisy.features(name) / path.relative_to(trained.features(name)), rows)
    after = _synthesis(noisy, tmp_path / "b")
    assert before == after


def test_predictions_are_scored_against_the_feature_stages(trained, tmp_path):
    out = tmp_path / "synth"
    _synthesis(trained, out)
    checks = evaluation_config(Params(TREE), references=False).scoring.checks
    settings = Settings(MEL, checks, None, None, None, 0.2)  # no ASR: the feature scores need none
    shards = {s: sorted((trained.roi / "shards" / s).rglob("*.parquet")) for s in ("test", "unseen")}
    rows = [score(t) for t in tasks("lts_full", shards, out, settings, set(), None, Catalog(trained, AUDIO))]
    assert len(rows) == 6
    for r in rows:
        assert 0 <= r["unit_accuracy"] <= 1 and 0 <= r["voicing_error"] <= 1 and r["energy_mae"] >= 0
    summary = summarize(pd.DataFrame(rows), ["test", "unseen"], ())
    assert {"unit_accuracy", "f0_rmse", "voicing_error", "energy_mae"} <= set(summary["test"])


def test_synthesize_stage_configures_the_lts_models():
    cfg = synthesize_lts.configure(Params(TREE), "lts_full")
    assert (cfg.kind, cfg.system, cfg.model) == ("lts", "lts_full", "lts_full")
    with pytest.raises(ConfigError, match="lts.variants"):
        synthesize_lts.configure(Params(TREE), None)
