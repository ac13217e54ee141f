"""Model families as plugins: the registry, model cards, and a toy family (defined here, registered by this
test alone) trained, loaded and synthesised through the generic stage code without any other module knowing it."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from model_world import TREE
from torch import Tensor, nn

from pipeline.audio.mel import LogMel, MelConfig
from pipeline.config import ConfigError, Params, parse
from pipeline.evaluation.config import evaluation_config
from pipeline.evaluation.stage import evaluate_system
from pipeline.families import Family, family_names, get_family, register, unregister
from pipeline.inference.card import ModelCard, load_card, save_card
from pipeline.inference.load import load_model
from pipeline.inference.synthesis import synthesize_config, synthesize_system
from pipeline.layout import Layout
from pipeline.shards import ShardReader, unpack
from pipeline.training.runs import train_v2a, v2a_config
from pipeline.training.synthetic import write_synthetic_corpus
from pipeline.training.task import Task, Validation, adamw, schedule


# -- a toy family: a linear map from 4x4-pooled mouth crops to the log-mel frames of each video frame --------
@dataclass(frozen=True)
class ToyConfig:
    profile: str
    mel: MelConfig
    n_mels: int
    samples_per_frame: int
    mels_per_frame: int
    in_channels: int = 1


@dataclass(frozen=True)
class ToyLoss:
    mel_l1: float


@dataclass(frozen=True)
class ToyVariant:
    family: str


class ToyModel(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.linear = nn.Linear(cfg.in_channels * 16, cfg.n_mels * cfg.mels_per_frame)

    def forward(self, video: Tensor) -> Tensor:  # (B, T, C, H, W) in [0, 1] -> (B, n_mels, 4T)
        b, t = video.shape[:2]
        pooled = F.adaptive_avg_pool2d(video.flatten(0, 1), 4).reshape(b, t, -1)
        return self.linear(pooled).reshape(b, t * self.cfg.mels_per_frame, self.cfg.n_mels).transpose(1, 2)


class ToyTask(Task):
    def __init__(self, ctx, train, cfg: ToyConfig, loss: ToyLoss):
        self.ctx, self.loss = ctx, loss
        self.nets = {"g": ToyModel(cfg).to(ctx.device)}
        self.optimizers = {"g": adamw(self.nets["g"].parameters(), train.lr, train.betas, train.weight_decay)}
        self.schedulers = {"g": schedule(self.optimizers["g"], train)}
        self.logmel = LogMel(cfg.mel).to(ctx.device)

    def train_step(self, batch):
        l1 = F.l1_loss(self.nets["g"](batch["video"].float() / 255), self.logmel(batch["audio"]))
        return {"g": self.optimize("g", self.loss.mel_l1 * l1)}

    def validate(self, batches):
        errors = [float(F.l1_loss(self.net("g")(b["video"].float() / 255), self.logmel(b["audio"]))) for b in batches]
        return Validation({"mel_l1": float(np.mean(errors))})

    def export(self):
        return self.net("g").state_dict(), {"pooling": "4x4 mean"}


class Toy(Family):
    name = "toy"
    config_class = ToyConfig
    presets = {"demo": {}, "paper": {}}
    loss_class = ToyLoss
    variant_class = ToyVariant
    kinds = ("v2a",)
    reads = {"v2a": ("video", "audio", "spk")}
    inputs = {"v2a": ("video", "spk")}
    vocoded = True

    def build(self, kind: str, cfg: Any) -> nn.Module:
        return ToyModel(cfg)

    def task(self, kind, ctx, train, cfg, loss, variant=None, init=None) -> Task:
        return ToyTask(ctx, train, cfg, loss)

    def load(self, card: ModelCard, state) -> nn.Module:
        model = ToyModel(parse(ToyConfig, card.model))
        model.load_state_dict(state)
        return model.eval()

    def speak(self, model, card, batch, vocoder) -> list[np.ndarray]:
        with torch.no_grad():
            mel = model(batch["video"].float() / 255).numpy()
        return [vocoder(m).astype(np.float32) for m in mel]


@pytest.fixture
def toy():
    family = register(Toy())
    yield family
    unregister("toy")


def _tree(**variants: Any) -> dict[str, Any]:
    tree = copy.deepcopy(TREE)
    tree["train"].update(batch_size=2, window_frames=3, val_every=100, log_every=1, checkpoint_every=100)
    tree["v2a"]["variants"].update(variants)
    tree["v2a"]["steps"]["toy"] = 3
    tree["model"]["overrides"]["toy"] = {}
    tree["loss"]["toy"] = {"mel_l1": 1.0}
    tree["synthesize"].update(vocoder="griffin_lim", batch_size=2, device="cpu", workers=1)
    return tree


def test_the_built_in_families_are_registered_and_lookups_are_strict():
    assert {"wavegan", "melspec"} <= set(family_names())
    assert get_family("melspec").vocoded and not get_family("wavegan").vocoded
    with pytest.raises(ConfigError, match="no model family 'melspek' .did you mean 'melspec'"):
        get_family("melspek")
    with pytest.raises(ValueError, match="already registered"):
        register(type(get_family("wavegan"))())


def test_a_family_nobody_registered_never_falls_back_to_another(toy):
    # a variant naming a family nobody registered stops at configuration, never trains as melspec
    with pytest.raises(ConfigError, match="no model family 'unitspeech'"):
        v2a_config(Params(_tree(us={"family": "unitspeech"})), "us")
    with pytest.raises(ConfigError, match="family 'lts' makes no v2a models"):  # nor as another kind's family
        v2a_config(Params(_tree(lts_full={"family": "lts"})), "lts_full")

    class Half(Family):  # a family that forgot how to speak cannot even be made
        name = "half"

        def build(self, kind, cfg):
            return nn.Identity()

    with pytest.raises(TypeError, match="abstract"):
        Half()
    with pytest.raises(ConfigError, match="family 'toy' makes no a2a models"):
        toy.check_kind("a2a")
    with pytest.raises(ConfigError, match=r"unknown key v2a\.variants\.toy_v\.decoder"):
        v2a_config(Params(_tree(toy_v={"family": "toy", "decoder": "scratch"})), "toy_v")


def test_cards_round_trip(tmp_path):
    card = ModelCard("v2a", "toy", "toy_v", ("video", "spk"), {"frame": {"height": 8}}, {"steps": 3}, {"x": "ab"},
                     {"mel_l1": 1.5}, {"mean_speaker_embedding": [0.5, 0.5]}, {"n_mels": 80})
    path = save_card(card, tmp_path)
    assert path == tmp_path / "card.json" and load_card(tmp_path) == card == load_card(path)
    assert json.loads(path.read_text())["inputs"] == ["video", "spk"]
    with pytest.raises(FileNotFoundError, match="no model card"):
        load_card(tmp_path / "nothing")


def test_a_toy_family_trains_and_speaks_through_the_generic_stage_code(toy, tmp_path):
    layout = write_synthetic_corpus(Layout(tmp_path), {"train": ["s1", "s2"], "val": ["s1"], "test": ["s2"]},
                                    utts_per_speaker=2, n_frames=8, size=16)
    params = Params(_tree(toy_v={"family": "toy"}))
    cfg = v2a_config(params, "toy_v")
    assert isinstance(cfg.model, ToyConfig) and cfg.loss == ToyLoss(1.0) and cfg.train.steps == 3
    model_dir = train_v2a(cfg, layout)
    card = load_card(model_dir)
    assert (card.kind, card.family, card.inputs, card.train["steps"]) == ("v2a", "toy", ("video", "spk"), 3)
    assert card.crop["frame"] == {"height": 16, "width": 16, "channels": 1} and card.extra["pooling"] == "4x4 mean"
    assert (layout.train_reports("train_v2a", "toy_v") / "metrics.json").is_file()
    assert isinstance(load_model(model_dir).model, ToyModel)

    info = synthesize_system(synthesize_config(params, "v2a", "toy_v"), layout)
    assert info["family"] == "toy" and info["vocoder"] == "griffin_lim"
    assert info["utterances"] == {"train": 4, "val": 2, "test": 2, "unseen": 0}
    assert load_card(layout.synth("toy_v")) == card
    for shard in (layout.roi / "shards").rglob("*.parquet"):
        rows = pq.read_table(layout.synth("toy_v") / shard.relative_to(layout.roi / "shards")).to_pylist()
        assert [r["utt_id"] for r in rows] == ShardReader(shard).utt_ids
        assert all(unpack(r, "audio").shape == (8 * 640,) for r in rows)
        # the evaluated split is also spoken from another utterance's video (the toy ignores the speaker, so
        # utterance i from j's video is j's own speech); the training splits are not
        assert ("deranged_audio" in rows[0]) == (shard.parent.name == "test"), shard
    test_rows = pq.read_table(layout.synth("toy_v") / "test" / "s2-000.parquet").to_pylist()
    assert [r["deranged_from"] for r in test_rows] == [r["utt_id"] for r in reversed(test_rows)]
    assert all(np.array_equal(unpack(r, "deranged_audio"), unpack(o, "audio")) for r, o in zip(test_rows, test_rows[::-1]))
    assert info["deranged_splits"] == ["test", "unseen"]

    # evaluation learns kind and family from the card the synthesis carries; no code names the toy
    tree = _tree(toy_v={"family": "toy"})
    tree["asr"]["sphinx"]["enabled"] = tree["asr"]["ctc"]["enabled"] = False  # no ASR trained in this world
    tree["evaluate"]["splits"] = ["test"]
    tree["evaluate"]["checks"]["min_seconds"] = 0.1  # the synthetic clips last 0.32 s
    metrics = evaluate_system("toy_v", evaluation_config(Params(tree), references=False), layout)
    assert (metrics["kind"], metrics["family"]) == ("v2a", "toy")
    scores = pd.read_parquet(layout.eval("toy_v"))
    assert len(scores) == 2 and scores["stoi"].notna().all(), scores.T.to_string() and json.loads(layout.metrics("toy_v").read_text())
    # the video-use check: each utterance scored again on the speech from the other one's video
    assert scores["estoi_deranged"].notna().all() and scores["stoi_deranged"].notna().all()
    use = json.loads(layout.metrics_details("toy_v").read_text())["test"]["video_use"]
    assert set(use) == {"stoi", "estoi"} and use["estoi"]["n"] == 2
    assert use["estoi"]["difference"] == pytest.approx((scores["estoi"] - scores["estoi_deranged"]).mean(), abs=1e-4)
    assert "video_use" not in json.loads(layout.metrics("toy_v").read_text())["test"]  # not a DVC metric
