"""A Glow-style conditional flow over log-mels: the post-net of Kim et al. (arXiv 2308.15256).

Each block is activation normalisation, an invertible 1x1 convolution over the mel channels and
an affine coupling layer (Kingma & Dhariwal 2018) whose conditioner is a WaveNet-like stack of
gated dilated convolutions (as in Glow-TTS and VITS) that also sees a conditioning sequence: the
coarse mel and the speaker embedding. Every layer works frame by frame or with 'same' padding,
so any number of frames (one included) goes through, and every layer is exactly invertible.

`forward` maps a mel x to z with the log-determinant of dz/dx per utterance; `inverse` maps z
back. Trained by the negative log-likelihood of the target mel under a unit-variance Gaussian
prior on z centred on the coarse mel (the unofficial LTBS's choice), sampled at a temperature.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ActNorm(nn.Module):
    """Per-channel affine y = (x + bias) * exp(logs), initialised from the first training batch
    so that its output has zero mean and unit variance per channel (Glow)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1))
        # a buffer, so a checkpoint or exported model never re-initialises
        self.register_buffer("initialized", torch.tensor(False))

    def _init(self, x: Tensor) -> None:
        with torch.no_grad():
            mean = x.mean(dim=(0, 2), keepdim=True)
            std = x.std(dim=(0, 2), keepdim=True, unbiased=False)
            self.bias.copy_(-mean)
            self.logs.copy_(-torch.log(std.clamp(min=1e-6)))
            self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._init(x)
        logdet = self.logs.sum() * x.shape[2]
        return (x + self.bias) * torch.exp(self.logs), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.logs) - self.bias


class InvConv1x1(nn.Module):
    """y = W x over channels at every frame, W started as a random rotation."""

    def __init__(self, channels: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        self.weight = nn.Parameter(w)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = torch.linalg.slogdet(self.weight.float())[1] * x.shape[2]
        return torch.einsum("ij,bjf->bif", self.weight, x), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return torch.einsum("ij,bjf->bif", torch.linalg.inv(self.weight.float()).to(y.dtype), y)


class WaveNet(nn.Module):
    """Gated dilated convolutions with a conditioning input at every layer (VITS's `WN`), (B, C, F) -> (B, H, F)."""

    def __init__(self, in_channels: int, cond_channels: int, hidden: int, layers: int, kernel: int, dilation_rate: int):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"flow kernel {kernel} must be odd (same-length convolutions)")
        self.hidden, self.layers = hidden, layers
        self.start = nn.Conv1d(in_channels, hidden, 1)
        self.cond = nn.Conv1d(cond_channels, 2 * hidden * layers, 1)
        self.gates = nn.ModuleList()
        self.res_skip = nn.ModuleList()
        for i in range(layers):
            d = dilation_rate ** i
            self.gates.append(nn.Conv1d(hidden, 2 * hidden, kernel, dilation=d, padding=d * (kernel - 1) // 2))
            self.res_skip.append(nn.Conv1d(hidden, 2 * hidden if i < layers - 1 else hidden, 1))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = self.start(x)
        g = self.cond(cond)
        out = torch.zeros_like(x)
        for i, (gate, res_skip) in enumerate(zip(self.gates, self.res_skip, strict=True)):
            a, b = (gate(x) + g[:, 2 * self.hidden * i: 2 * self.hidden * (i + 1)]).chunk(2, dim=1)
            y = res_skip(torch.tanh(a) * torch.sigmoid(b))
            if i < self.layers - 1:
                x = x + y[:, : self.hidden]
                out = out + y[:, self.hidden:]
            else:
                out = out + y
        return out


class AffineCoupling(nn.Module):
    """The second half of the channels scaled and shifted by a function of the first half and the conditioning."""

    def __init__(self, channels: int, cond_channels: int, hidden: int, layers: int, kernel: int, dilation_rate: int):
        super().__init__()
        self.half = channels // 2
        self.net = WaveNet(self.half, cond_channels, hidden, layers, kernel, dilation_rate)
        self.end = nn.Conv1d(hidden, 2 * (channels - self.half), 1)
        # zero: every coupling starts as the identity, so a fresh flow is ActNorm and rotations only
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.half], x[:, self.half:]
        logs, shift = self.end(self.net(xa, cond)).chunk(2, dim=1)
        return torch.cat([xa, xb * torch.exp(logs) + shift], dim=1), logs.sum(dim=(1, 2))

    def inverse(self, y: Tensor, cond: Tensor) -> Tensor:
        ya, yb = y[:, : self.half], y[:, self.half:]
        logs, shift = self.end(self.net(ya, cond)).chunk(2, dim=1)
        return torch.cat([ya, (yb - shift) * torch.exp(-logs)], dim=1)


class FlowPostNet(nn.Module):
    """x (B, C, F) <-> z (B, C, F) given a conditioning sequence (B, cond_channels, F)."""

    def __init__(self, channels: int, cond_channels: int, blocks: int, hidden: int, layers: int, kernel: int,
                 dilation_rate: int):
        super().__init__()
        self.norms = nn.ModuleList(ActNorm(channels) for _ in range(blocks))
        self.convs = nn.ModuleList(InvConv1x1(channels) for _ in range(blocks))
        self.couplings = nn.ModuleList(AffineCoupling(channels, cond_channels, hidden, layers, kernel, dilation_rate)
                                       for _ in range(blocks))

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """z and log|det dz/dx| per utterance (B,)."""
        logdet = x.new_zeros(x.shape[0])
        for norm, conv, coupling in zip(self.norms, self.convs, self.couplings, strict=True):
            for layer in (norm, conv):
                x, ld = layer(x)
                logdet = logdet + ld
            x, ld = coupling(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, cond: Tensor) -> Tensor:
        for norm, conv, coupling in zip(reversed(self.norms), reversed(self.convs), reversed(self.couplings), strict=True):
            z = norm.inverse(conv.inverse(coupling.inverse(z, cond)))
        return z

    def sample(self, mean: Tensor, cond: Tensor, temperature: float, generator: torch.Generator | None = None) -> Tensor:
        """x = f^-1(mean + temperature * eps); eps is one draw (1, C, F) shared by the batch, so an utterance's
        output does not depend on which others share its batch."""
        eps = torch.randn((1, *mean.shape[1:]), generator=generator, device=generator.device if generator else None)
        return self.inverse(mean + temperature * eps.to(mean.device, mean.dtype), cond)


def gaussian_nll(z: Tensor, logdet: Tensor, mean: Tensor) -> Tensor:
    """Negative log-likelihood of the flow's input in nats per dimension (batch mean), from its output `z`,
    log-determinant and a prior N(mean, I) on z."""
    dims = z.shape[1] * z.shape[2]
    log_prior = -0.5 * ((z - mean) ** 2).sum(dim=(1, 2)) - 0.5 * dims * math.log(2 * math.pi)
    return (-(log_prior + logdet) / dims).mean()
