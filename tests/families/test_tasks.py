"""The families' tasks: decoder initialisation (frozen, fine-tuned, batch-norm statistics), paper-size
models, exact resume of a real GAN task, the training stages' export with model cards, synthesis of every split."""
from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from model_world import AUDIO, MEL, TREE, loss, model_cfg, train_cfg, vocoder_loss

from pipeline.config import Params, to_plain
from pipeline.executor import Executor
from pipeline.families import get_family
from pipeline.families.base import Init
from pipeline.inference.card import load_card
from pipeline.inference.load import load_model
from pipeline.inference.model_dir import sha256_file
from pipeline.inference.synthesis import run_synthesis
from pipeline.inference.vocoder import load_vocoder
from pipeline.layout import Layout
from pipeline.models.config import hifigan_config
from pipeline.shards import ShardReader, unpack, write_shard
from pipeline.streams import Catalog, StreamSource
from pipeline.training.loop import Trainer, WindowFeed
from pipeline.training.runs import train_v2a, train_vocoder, v2a_config, vocoder_config
from pipeline.training.synthetic import write_synthetic_corpus
from pipeline.training.task import Context
from pipeline.training.vocoder import VocoderTask
from pipeline.training.windows import WindowDataset
from pipeline.video.roi import roi_config

SPLITS = {"train": ["s1", "s2"], "val": ["s1"], "test": ["s2"], "unseen": ["s3"]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Layout:
    return write_synthetic_corpus(Layout(tmp_path_factory.mktemp("corpus")), SPLITS, utts_per_speaker=3, n_frames=12,
                                  size=24)


def _batch(frames: int = 3, size: int = 24, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randint(0, 256, (batch, frames, 1, size, size), dtype=torch.uint8, generator=g),
            "audio": 0.1 * torch.randn(batch, frames * 640, generator=g), "spk": torch.randn(batch, 256, generator=g)}


def _steps(task, n: int = 2) -> list[dict[str, float]]:
    task.train(True)
    out = []
    for i in range(n):
        task.ctx.step = i + 1
        out.append(task.train_step(_batch(seed=i)))
    return out


def _variant(family: str, decoder: str, separate_bn: bool = True) -> Any:
    return get_family(family).variant_class(family, decoder, separate_bn)


def _v2a(family: str, decoder: str, separate_bn: bool = True, init: Init | None = None, profile: str = "demo",
         lr: float = 1e-3):
    return get_family(family).task("v2a", Context(), train_cfg(lr=lr), model_cfg(family, profile), loss(family),
                                   _variant(family, decoder, separate_bn), init)


def _a2a_state(family: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    a2a = get_family(family).task("a2a", Context(), train_cfg(lr=1e-3), model_cfg(family), loss(family))
    _steps(a2a)  # moves the audio statistics away from their initial values
    return a2a.export()[0]


@pytest.mark.parametrize("family,separate_bn", [("wavegan", True), ("melspec", True), ("melspec", False)])
def test_frozen_pretrained_decoder_is_unchanged_by_v2a_training(family, separate_bn):
    a2a = _a2a_state(family)
    task = _v2a(family, "pretrained_frozen", separate_bn, Init(a2a, {}))
    before = {k: v.clone() for k, v in task.net("g").state_dict().items()}
    for k, v in before.items():
        if k.startswith("decoder.") and ".stats.video." not in k:
            assert torch.equal(v, a2a[k]), k  # loaded from the A2A
    _steps(task)
    after = task.net("g").state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    weights = [k for k, _ in task.net("g").named_parameters() if k.startswith("decoder.")]
    assert weights and not changed & set(weights)
    assert not {k for k in changed if k.startswith("decoder.") and ".stats.audio." in k}
    video_stats = {k for k in changed if k.startswith("decoder.") and ".stats.video." in k}
    assert bool(video_stats) == separate_bn  # separate: re-estimated from video; shared: the A2A's, fixed
    assert any(k.startswith("encoder.") for k in changed)


def test_finetuned_decoder_trains_and_batch_norm_statistics_stay_separate():
    a2a = _a2a_state("melspec")
    separate = _v2a("melspec", "pretrained_finetuned", True, Init(a2a, {}))
    shared = _v2a("melspec", "pretrained_finetuned", False, Init(a2a, {}))
    for task in (separate, shared):
        _steps(task)
    stats = lambda task, which: {k: v for k, v in task.net("g").state_dict().items()  # noqa: E731
                                 if k.startswith("decoder.") and f".stats.{which}.running_mean" in k}
    assert stats(separate, "audio") and all(torch.equal(v, a2a[k]) for k, v in stats(separate, "audio").items())
    assert any(not torch.equal(v, a2a[k]) for k, v in stats(separate, "video").items())
    assert any(not torch.equal(v, a2a[k]) for k, v in stats(shared, "audio").items())
    weights = [k for k in a2a if k.startswith("decoder.") and k.endswith("weight") and ".stats." not in k]
    assert any(not torch.equal(separate.net("g").state_dict()[k], a2a[k]) for k in weights)
    assert separate.export()[1]["norm_stats"] == "video" and shared.export()[1]["norm_stats"] == "audio"


def test_pretrained_variant_needs_an_a2a_state():
    with pytest.raises(ValueError, match="needs an A2A state dict"):
        _v2a("melspec", "pretrained_frozen")
    with pytest.raises(ValueError, match="needs no A2A state dict"):
        _v2a("melspec", "scratch", init=Init(_a2a_state("melspec"), {}))


@pytest.mark.slow
def test_paper_profile_tasks_build_and_step():
    for family in ("wavegan", "melspec"):
        a2a = get_family(family).task("a2a", Context(), train_cfg(lr=1e-4), model_cfg(family, "paper"), loss(family))
        v2a = _v2a(family, "pretrained_finetuned", True, Init(a2a.export()[0], {}), "paper", 1e-4)
        for task in (a2a, v2a):
            logs = _steps(task, 1)[0]
            assert np.isfinite(list(logs.values())).all() and "g" in logs
    assert sum(p.numel() for p in v2a.net("g").parameters()) > 10_000_000  # ResNet-18 + conformer, not a demo net
    vocoder = VocoderTask(Context(), train_cfg(lr=1e-4), hifigan_config("paper", MEL), MEL, vocoder_loss())
    assert np.isfinite(list(_steps(vocoder, 1)[0].values())).all()


def test_real_gan_task_resumes_to_the_same_weights(corpus, tmp_path):
    cfg = train_cfg(4, batch_size=2, window_frames=3, checkpoint_every=2, val_every=100, log_every=100, seed=3)
    mcfg = model_cfg("wavegan")
    keys = ["video", "audio", "spk"]
    data = WindowDataset(StreamSource(corpus.roi / "shards", Catalog(corpus, AUDIO).get(*keys), ["train"]), 3, keys)

    def run(directory, stop_at=None):
        feed = WindowFeed(data, None, cfg.batch_size, cfg.num_workers, cfg.val_utterances, cfg.seed)
        factory = lambda ctx: get_family("wavegan").task("v2a", ctx, cfg, mcfg, loss("wavegan"),  # noqa: E731
                                                         _variant("wavegan", "scratch"))
        return Trainer(factory, cfg.loop(), feed, directory, None, "fp").fit(stop_at).net("g").state_dict()

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_at=3)
    resumed = run(tmp_path / "b")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def _stage_params() -> Params:
    """The real params with a tiny run's steps and batch (what a stage entry would be handed)."""
    tree = copy.deepcopy(TREE)
    tree["train"].update(batch_size=2, window_frames=3, val_every=100, log_every=100, checkpoint_every=100)
    tree["v2a"]["steps"] = {"wavegan": 1, "melspec": 1}
    tree["vocoder"]["steps"] = 1
    return Params(tree)


def test_stages_export_cards_and_synthesis_speaks_every_split(corpus, tmp_path):
    layout = Layout(tmp_path)
    (tmp_path / "data" / "features").mkdir(parents=True)
    (tmp_path / "data" / "roi").symlink_to(corpus.roi)
    # the speakers stage failed on one utterance: it is still synthesised, with the mean voice
    for path in sorted(corpus.speakers.rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        if path.parent.name == "unseen":
            rows[1] = {**{k: None for k in rows[1]}, "utt_id": rows[1]["utt_id"]}
        write_shard(layout.speakers / path.relative_to(corpus.speakers), rows)
    params = _stage_params()
    cfg = v2a_config(params, "melspec_scratch")
    model_dir = train_v2a(cfg, layout)
    vocoder_dir = train_vocoder(vocoder_config(params), layout)

    card = load_card(model_dir)
    assert (card.kind, card.family, card.name, card.inputs) == ("v2a", "melspec", "melspec_scratch", ("video", "spk"))
    assert card.crop["roi"] == to_plain(roi_config(params)) and card.crop["frame"] == {"height": 24, "width": 24, "channels": 1}
    assert card.train["steps"] == 1 and card.extra["norm_stats"] == "video" and card.extra["decoder"] == "scratch"
    assert card.data["init"] is None and len(card.data["train+val"]) == 64 and "mel_l1" in card.validation
    assert load_card(vocoder_dir).kind == "vocoder" and load_card(vocoder_dir).family is None

    loaded = load_model(model_dir)
    batch = _batch(frames=5)
    hifigan = load_vocoder(vocoder_dir, loaded.audio.mel)
    wavs = loaded.speak({"video": batch["video"], "spk": batch["spk"]}, hifigan)
    with torch.no_grad():
        mel = loaded.model(batch["video"].float() / 255, batch["spk"])
    np.testing.assert_allclose(wavs[0], hifigan(mel[0].numpy()), atol=1e-5)
    assert hifigan.name.startswith("hifigan") and hifigan.sha256 == sha256_file(vocoder_dir / "model.pt")

    out = layout.synth("melspec_scratch")
    info = run_synthesis(model_dir, vocoder_dir, layout, out, Executor(workers=1), batch_size=2)
    assert info["mean_embedding_for"] == ["s3_unseen001"]
    assert info["model_sha256"] == sha256_file(model_dir / "model.pt") == loaded.sha256
    assert info["utterances"] == {"train": 6, "val": 3, "test": 3, "unseen": 3}
    assert json.loads((out / "info.json").read_text())["vocoder_sha256"] == hifigan.sha256
    assert load_card(out) == card  # the synthesis carries the card of the model that spoke
    for shard in (corpus.roi / "shards").rglob("*.parquet"):
        rel = shard.relative_to(corpus.roi / "shards")
        rows = pq.read_table(out / rel).to_pylist()
        assert [r["utt_id"] for r in rows] == ShardReader(shard).utt_ids
        assert all(unpack(r, "audio").shape == (12 * 640,) and r["sample_rate"] == 16000 for r in rows)

