"""The LTS model's parts: the flow post-net (invertible at any length, exact log-determinant, learns by its
likelihood), the unit predictor (learns one batch) and the config's checks."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from model_world import model_cfg

from pipeline.config import ConfigError
from pipeline.families.lts import infer
from pipeline.models.flow import FlowPostNet, gaussian_nll
from pipeline.models.lts import LTSModel, Variance, denormalise, normalise


def _flow(channels: int = 6, cond: int = 5, blocks: int = 3, seed: int = 0) -> FlowPostNet:
    torch.manual_seed(seed)
    flow = FlowPostNet(channels, cond, blocks, hidden=8, layers=2, kernel=3, dilation_rate=2)
    with torch.no_grad():  # a trained-looking flow: the zero-initialised couplings would be the identity
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("frames", [1, 2, 7, 64])
def test_flow_inverts_at_any_length(frames):
    flow = _flow()
    x, cond = torch.randn(2, 6, frames), torch.randn(2, 5, frames)
    flow.train()
    flow(x, cond)  # the data-dependent activation normalisation initialises on a training batch
    flow.eval()
    z, logdet = flow(x, cond)
    assert z.shape == x.shape and logdet.shape == (2,)
    assert (flow.inverse(z, cond) - x).abs().max() < 1e-4
    assert not torch.allclose(z, x, atol=1e-2)  # not the identity by accident


def test_log_determinant_equals_the_brute_force_jacobian():
    flow = _flow(channels=4, cond=3, blocks=2).double().eval()
    x, cond = torch.randn(1, 4, 3, dtype=torch.float64), torch.randn(1, 3, 3, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow(v.view(1, 4, 3), cond)[0].reshape(-1), x.reshape(-1))
    sign, brute = torch.linalg.slogdet(jacobian)
    assert sign != 0
    assert torch.allclose(flow(x, cond)[1][0], brute, atol=1e-8)


def test_flow_likelihood_rises_when_it_overfits_one_batch():
    torch.manual_seed(0)
    flow = FlowPostNet(8, 4, blocks=2, hidden=16, layers=2, kernel=3, dilation_rate=1)
    cond, mean = torch.randn(4, 4, 20), torch.zeros(4, 8, 20)
    x = 0.2 * torch.randn(4, 8, 20) + 2.0 * cond[:, :1]  # depends on the conditioning: a coupling can explain it
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = gaussian_nll(*flow(x, cond), mean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 1.0, (losses[0], losses[-1])


def test_unit_predictor_overfits_one_batch_far_above_chance():
    torch.manual_seed(0)
    cfg = dataclasses.replace(model_cfg("lts"), n_units=20, prosody=False, postnet=False, dropout=0.0,
                              predictor_dropout=0.0)
    model = LTSModel(cfg)
    video, spk = torch.rand(2, 6, 1, 24, 24), torch.randn(2, 256)
    units = torch.randint(0, 20, (2, 12))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        out = model.coarse(video, spk, Variance(units))
        loss = torch.nn.functional.cross_entropy(out.unit_logits.transpose(1, 2), units)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model.coarse(video, spk).unit_logits.argmax(-1) == units).float().mean())
    assert accuracy > 0.8, accuracy  # chance: 1/20


def test_inference_output_lengths_and_what_it_predicts():
    model = LTSModel(model_cfg("lts")).eval()
    with torch.no_grad():
        mel, out = infer(model, torch.rand(1, 5, 1, 24, 24), torch.randn(1, 256), 0.667, 0)
    assert mel.shape == (1, 80, 20) and out.unit_logits.shape == (1, 10, 200)
    assert out.used.log_f0.shape == out.used.voiced.shape == out.used.energy.shape == (1, 20)
    # voicing gates the pitch the model embeds: an unvoiced frame carries no ln F0
    assert torch.all(out.used.log_f0[out.used.voiced == 0] == 0)


def test_prosody_normalisation_round_trips():
    cfg = dataclasses.replace(model_cfg("lts"), log_f0_mean=5.0, log_f0_std=0.3, energy_mean=2.0, energy_std=0.5)
    f0 = torch.tensor([[0.0, 110.0, 220.0]])
    voiced = torch.tensor([[False, True, True]])
    log_f0, v, e = normalise(cfg, f0, voiced, torch.tensor([[1.0, 2.0, 3.0]]))
    assert log_f0[0, 0] == 0 and v.tolist() == [[0.0, 1.0, 1.0]]
    back_f0, back_e = denormalise(cfg, log_f0, v, e)
    assert torch.allclose(back_f0, f0) and torch.allclose(back_e, torch.tensor([[1.0, 2.0, 3.0]]))


def test_sizes_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="divisible"):
        model_cfg("lts", overrides={"dim": 30, "heads": 4})
    with pytest.raises(ConfigError, match="follows from"):
        model_cfg("lts", overrides={"units_per_frame": 3})
