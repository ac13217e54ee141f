"""AV2A models: shapes, starting as the base V2A, one statistics set per modality combination, learning one batch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_world import MEL, model_cfg

from pipeline.audio.mel import LogMel
from pipeline.families import get_family
from pipeline.families.speech import AV2AModelConfig
from pipeline.models.av2a import AV2A, MODALITIES, load_base
from pipeline.models.losses import mel_l1_loss
from pipeline.models.norm import multi_stat_norms, set_norm_stats

T = 6
SIZE = 32


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def _trained(model: torch.nn.Module, call, steps: int = 3) -> torch.nn.Module:
    """A few steps on random targets, so weights and running statistics differ from their initial values."""
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(steps):
        loss = call(model).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, T, 1, SIZE, SIZE, generator=g), 0.1 * torch.randn(2, T * 640, generator=g),
            F.normalize(torch.randn(2, 256, generator=g), dim=-1))


def _base_and_av2a(family: str, fusion: str = "concat", base_set: str = "video") -> tuple[torch.nn.Module, AV2A]:
    fam = get_family(family)
    cfg = model_cfg(family)
    video, wav, spk = _inputs()
    a2a = _trained(fam.build("a2a", cfg), lambda m: m(wav, spk))
    v2a = fam.build("v2a", cfg)
    set_norm_stats(v2a, base_set)
    v2a = _trained(v2a, lambda m: m(video, spk))
    av2a = fam.build("av2a", AV2AModelConfig(cfg, fusion))
    load_base(av2a, v2a.state_dict(), base_set, a2a.state_dict())
    return v2a.eval(), av2a.eval()


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_output_shapes_for_every_modality(family, fusion):
    av2a = get_family(family).build("av2a", AV2AModelConfig(model_cfg(family), fusion))
    video, wav, spk = _inputs()
    expected = (2, T * 640) if family == "wavegan" else (2, 80, 4 * T)
    for modality in MODALITIES:
        assert av2a(video, wav, spk, modality).shape == expected


def test_rejects_audio_not_aligned_to_video():
    av2a = get_family("melspec").build("av2a", AV2AModelConfig(model_cfg("melspec"), "concat"))
    video, wav, spk = _inputs()
    with pytest.raises(ValueError, match="video frames"):
        av2a(video, wav[:, :-640], spk)


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
@pytest.mark.parametrize("fusion", ["concat", "sum"])
@pytest.mark.parametrize("base_set", ["video", "audio"])  # separate or shared statistics in the base
def test_with_audio_zeroed_an_untrained_av2a_is_its_base(family, fusion, base_set):
    v2a, av2a = _base_and_av2a(family, fusion, base_set)
    video, wav, spk = _inputs(seed=1)
    with torch.no_grad():
        base = v2a(video, spk)
        assert torch.equal(av2a(video, wav, spk, "video"), base)
        assert torch.equal(av2a(video, torch.zeros_like(wav), spk, "audio_video"), base)
        # zero-initialised fusion: even real audio leaves the fresh AV2A equal to its base (up to float order)
        torch.testing.assert_close(av2a(video, wav, spk, "audio_video"), base)


def test_audio_encoder_starts_from_the_a2a():
    fam = get_family("melspec")
    cfg = model_cfg("melspec")
    a2a = fam.build("a2a", cfg)
    av2a = fam.build("av2a", AV2AModelConfig(cfg, "sum"))
    load_base(av2a, fam.build("v2a", cfg).state_dict(), "video", a2a.state_dict())
    for name, value in av2a.audio_encoder.state_dict().items():
        assert torch.equal(value, a2a.state_dict()[f"encoder.{name}"]), name


def test_base_weights_that_do_not_fit_are_refused():
    fam = get_family("melspec")
    av2a = fam.build("av2a", AV2AModelConfig(model_cfg("melspec"), "concat"))
    other = fam.build("v2a", model_cfg("melspec", overrides={"temporal_hidden": 32}))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_base(av2a, other.state_dict(), "video", None)


def _stats(av2a: AV2A) -> dict[str, list[torch.Tensor]]:
    return {m: [n.stats[m].running_mean.clone() for n in multi_stat_norms(av2a)] for m in MODALITIES}


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
def test_a_step_moves_only_its_combinations_statistics(family):
    av2a = get_family(family).build("av2a", AV2AModelConfig(model_cfg(family), "concat")).train()
    assert multi_stat_norms(av2a)
    video, wav, spk = _inputs()
    for modality in MODALITIES:
        before = _stats(av2a)
        av2a(video, wav, spk, modality)
        after = _stats(av2a)
        for other in MODALITIES:
            same = all(torch.equal(a, b) for a, b in zip(before[other], after[other], strict=True))
            assert same == (other != modality), (modality, other)


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
def test_av2a_overfits_one_batch(family):
    # measured at demo size, concat fusion, 60 steps: melspec log-mel L1 2.9 -> 0.28, wavegan 1.4 -> 0.15 (~10x)
    av2a = get_family(family).build("av2a", AV2AModelConfig(model_cfg(family), "concat")).train()
    video, wav, spk = _inputs()
    logmel = LogMel(MEL)
    target = logmel(wav)
    loss_fn = (lambda out: F.l1_loss(out, target)) if family == "melspec" else (lambda out: mel_l1_loss(out, wav, logmel))
    opt = torch.optim.Adam(av2a.parameters(), 2e-3)
    losses = []
    for _ in range(60):
        loss = loss_fn(av2a(video, wav, spk, "audio_video"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < losses[0] / 4


def test_audio_only_statistics_start_from_the_a2a_when_the_base_has_them():
    fam = get_family("melspec")
    cfg = model_cfg("melspec")
    video, wav, spk = _inputs()
    a2a = _trained(fam.build("a2a", cfg), lambda m: m(wav, spk))
    pretrained = fam.build("v2a", cfg)
    pretrained.decoder.load_state_dict({k[8:]: v for k, v in a2a.state_dict().items() if k.startswith("decoder.")})
    scratch = fam.build("v2a", cfg)
    for base, audio_from in ((pretrained, "audio"), (scratch, "video")):
        set_norm_stats(base, "video")
        _trained(base, lambda m: m(video, spk))
        av2a = fam.build("av2a", AV2AModelConfig(cfg, "concat"))
        load_base(av2a, base.state_dict(), "video", None)
        for mine, theirs in zip(multi_stat_norms(av2a), multi_stat_norms(base), strict=True):
            assert torch.equal(mine.stats["audio"].running_mean, theirs.stats[audio_from].running_mean)
        assert not torch.equal(multi_stat_norms(base)[0].stats["audio"].running_mean,
                               multi_stat_norms(base)[0].stats["video"].running_mean)
