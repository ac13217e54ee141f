"""Training configuration: params.yaml is the one source of `train:` values; overrides are strict."""
from __future__ import annotations

import copy
import dataclasses

import pytest
from model_world import TREE

from pipeline.config import ConfigError, Params
from pipeline.training.config import TrainConfig, train_config
from pipeline.training.runs import pretrain_config, v2a_config, vocoder_config


def _params(**sections) -> Params:
    tree = copy.deepcopy(TREE)
    for dotted, value in sections.items():
        node = tree
        *head, last = dotted.split("__")
        for part in head:
            node = node[part]
        node[last] = value
    return Params(tree)


def test_train_config_is_params_yaml_and_has_no_defaults_of_its_own():
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(TrainConfig))
    cfg = train_config(Params(TREE), 7)
    assert (cfg.steps, cfg.seed) == (7, TREE["seed"])
    assert {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("steps", "seed")} == {
        k: tuple(v) if isinstance(v, list) else v for k, v in TREE["train"].items()}


def test_stage_overrides_apply_and_are_strict():
    params = _params(v2a__train={"batch_size": 2, "lr": 1e-3})
    cfg = v2a_config(params, "melspec_scratch").train
    assert (cfg.batch_size, cfg.lr, cfg.steps) == (2, 1e-3, TREE["v2a"]["steps"]["melspec"])
    assert vocoder_config(params).train.batch_size == TREE["train"]["batch_size"]  # v2a.train is V2A's alone
    with pytest.raises(ConfigError, match=r"unknown key v2a\.train\.bath_size .did you mean 'batch_size'"):
        v2a_config(_params(v2a__train={"bath_size": 2}), "melspec_scratch")
    with pytest.raises(ConfigError, match=r"unknown key vocoder\.train\.steps"):
        vocoder_config(_params(vocoder__train={"steps": 2}))
    with pytest.raises(ConfigError, match=r"unknown key pretrain\.families\.wavegan\.train\.lrr"):
        pretrain_config(_params(pretrain__families__wavegan={"steps": 3, "train": {"lrr": 1.0}}), "wavegan")
    assert pretrain_config(_params(pretrain__families__wavegan={"steps": 3, "train": {"lr": 1.0}}), "wavegan").train.lr == 1.0
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected an integer"):
        v2a_config(_params(v2a__train={"batch_size": "four"}), "melspec_scratch")


def test_model_and_loss_sections_parse_into_the_families_typed_classes():
    cfg = v2a_config(Params(TREE), "wavegan_pretrained_frozen")
    assert type(cfg.model).__name__ == "WaveGANConfig" and type(cfg.loss).__name__ == "WaveGANLoss"
    assert cfg.loss.adversarial_start == TREE["loss"]["wavegan"]["adversarial_start"]
    assert (cfg.variant.decoder, cfg.variant.separate_bn) == ("pretrained_frozen", True)
    with pytest.raises(ConfigError, match=r"loss\.wavegan\.stft_weight .valid: adversarial, .*stft"):
        v2a_config(_params(loss__wavegan={**TREE["loss"]["wavegan"], "stft_weight": 1.0}), "wavegan_scratch")
    with pytest.raises(ConfigError, match=r"missing key loss\.melspec\.spectral_convergence"):
        v2a_config(_params(loss__melspec={"mel_l1": 1.0}), "melspec_scratch")
    with pytest.raises(ConfigError, match=r"v2a\.variants\.melspec_scratch\.decoder: 'pretrained' is not one of"):
        v2a_config(_params(v2a__variants__melspec_scratch={"family": "melspec", "decoder": "pretrained",
                                                           "separate_bn": True}), "melspec_scratch")
