"""Training and inference speed of every model at both size profiles.

Training: steps/s and samples/s (one step = the generator step plus, for GANs, the
discriminator step) of V2A-WaveGAN, V2A-MelSpec, their A2A pre-training, the AV2A on each V2A
(procedure modality_dropout_gt, equal thirds), LTS (full variant: coarse step plus post-net step) and
the HiFi-GAN vocoder, on random batches of 96x96 gray crops. Inference: real-time factor (compute seconds
per second of speech) of a 3 s clip, the vocoder included for the mel family. On CUDA the paper
profile runs with bf16 autocast, as the trainer does; on CPU it runs a few steps on a small batch.
Run: .venv/bin/python benchmarks/train.py [--device cpu|cuda] [--profiles demo paper]
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from pipeline.audio.mel import AudioConfig
from pipeline.config import Params, load_params, parse, to_plain
from pipeline.families import family_of_kind, get_family
from pipeline.families.base import Init
from pipeline.families.lts import infer
from pipeline.families.speech import AV2AModelConfig
from pipeline.inference.card import ModelCard
from pipeline.inference.load import LoadedModel
from pipeline.inference.vocoder import Vocoder, load_vocoder
from pipeline.models.av2a import load_base
from pipeline.models.config import hifigan_config
from pipeline.training.config import train_config
from pipeline.training.procedures import AV2AVariant
from pipeline.training.task import Context, Task
from pipeline.training.vocoder import VocoderLoss, VocoderTask

PARAMS = Params(load_params())  # the project's own loss weights and training settings
AUDIO = PARAMS.parse("audio", AudioConfig)
CROP = 96
CLIP_FRAMES = 75  # a 3 s GRID clip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch(b: int, frames: int, device: torch.device) -> dict[str, torch.Tensor]:
    return {"video": torch.randint(0, 256, (b, frames, 1, CROP, CROP), dtype=torch.uint8, device=device),
            "audio": 0.1 * torch.randn(b, frames * 640, device=device), "spk": torch.randn(b, 256, device=device),
            "synth": 0.1 * torch.randn(b, frames * 640, device=device),
            "units": torch.randint(0, 200, (b, 2 * frames), device=device),
            "f0": 80 + 200 * torch.rand(b, 4 * frames, device=device),
            "voiced": torch.rand(b, 4 * frames, device=device) > 0.4, "energy": torch.rand(b, 4 * frames, device=device)}


def time_steps(task: Task, b: int, frames: int, steps: int, device: torch.device) -> float:
    """Seconds per training step, after one warm-up step."""
    task.train(True)
    data = batch(b, frames, device)
    task.ctx.step = 1
    task.train_step(data)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        task.ctx.step = i + 2
        task.train_step(data)
    _sync(device)
    return (time.perf_counter() - start) / steps


def rtf(fn: Callable[[], Any], device: torch.device, seconds: float) -> float:
    fn()
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) / seconds


def run(profile: str, device: torch.device) -> None:
    cuda = device.type == "cuda"
    b, frames, steps = (4, 10, 5) if profile == "demo" else ((16, 25, 10) if cuda else (2, 5, 2))
    ctx = lambda: Context(device, torch.bfloat16 if cuda else None, 5.0)  # noqa: E731
    cfg = train_config(PARAMS, steps + 1)
    amp = " bf16" if cuda else ""
    for name in ("wavegan", "melspec"):
        family = get_family(name)
        mcfg = family.model_config(profile, AUDIO)
        loss = PARAMS.parse(f"loss.{name}", family.loss_class)
        variant = family.variant_class(name, "scratch", True)
        a2a = family.task("a2a", ctx(), cfg, mcfg, loss)
        v2a = family.task("v2a", ctx(), cfg, mcfg, loss, variant)
        for kind, task in (("a2a", a2a), ("v2a", v2a), ("av2a", _av2a_task(name, mcfg, ctx(), cfg, loss, a2a))):
            sec = time_steps(task, b, frames, steps, device)
            print(f"train {kind}-{name:<8} {profile:<5} {device.type}{amp}: {1 / sec:7.2f} steps/s "
                  f"{b / sec:8.2f} samples/s  (batch {b} x {frames} frames)", flush=True)
        task = v2a  # inference speed: the V2A
        task.train(False)
        card = ModelCard("v2a", name, "benchmark", family.inputs["v2a"], {"audio": to_plain(AUDIO)}, {}, {}, {},
                         task.export()[1], to_plain(mcfg))
        loaded = LoadedModel(task.net("g"), card, "", device, family)
        clip = batch(1, CLIP_FRAMES, device)
        inputs = {"video": clip["video"].cpu(), "spk": clip["spk"].cpu()}
        vocoder = None
        if family.vocoded:
            voc = VocoderTask(ctx(), cfg, hifigan_config(profile, AUDIO.mel), AUDIO.mel,
                              PARAMS.parse("loss.vocoder", VocoderLoss))
            sec = time_steps(voc, b, frames, steps, device)
            print(f"train vocoder-hifigan {profile:<5} {device.type}{amp}: {1 / sec:7.2f} steps/s {b / sec:8.2f} samples/s",
                  flush=True)
            vocoder = _vocoder(voc, device)
        factor = rtf(partial(loaded.speak, inputs, vocoder), device, CLIP_FRAMES / 25)
        print(f"infer v2a-{name:<8} {profile:<5} {device.type}: real-time factor {factor:.3f} "
              f"({'with HiFi-GAN' if vocoder else 'end to end'}, 3 s clip)", flush=True)
    _lts(profile, device, ctx(), cfg, b, frames, steps)


def _lts(profile: str, device: torch.device, ctx: Context, cfg: Any, b: int, frames: int, steps: int) -> None:
    """LTS (full variant) training speed and its real-time factor (3 s clip, post-net sampled, Griffin-Lim left out)."""
    family = family_of_kind("lts")
    variant = parse(family.variant_class, PARAMS.raw("lts.variants.lts_full"))
    task = family.task("lts", ctx, cfg, family.model_config(profile, AUDIO), PARAMS.parse("loss.lts", family.loss_class),
                       variant)
    sec = time_steps(task, b, frames, steps, device)
    amp = " bf16" if device.type == "cuda" else ""
    print(f"train lts-full     {profile:<5} {device.type}{amp}: {1 / sec:7.2f} steps/s {b / sec:8.2f} samples/s  "
          f"(batch {b} x {frames} frames)", flush=True)
    task.train(False)
    clip = batch(1, CLIP_FRAMES, device)
    with torch.no_grad():
        factor = rtf(lambda: infer(task.model, clip["video"].float() / 255, clip["spk"], variant.temperature, 0), device,
                     CLIP_FRAMES / 25)
    print(f"infer lts-full     {profile:<5} {device.type}: real-time factor {factor:.3f} (to the mel, 3 s clip)", flush=True)


def _av2a_task(name: str, mcfg: Any, ctx: Context, cfg: Any, loss: Any, a2a: Task) -> Task:
    """An AV2A on a fresh V2A of `mcfg`, trained by modality dropout with ground-truth audio (equal thirds)."""
    family = get_family(name)
    model_cfg = AV2AModelConfig(mcfg, "concat")
    model = family.build("av2a", model_cfg)
    load_base(model, family.build("v2a", mcfg).state_dict(), "video", a2a.export()[0])
    variant = parse(AV2AVariant, {"family": name, "base": "benchmark", "procedure": "modality_dropout_gt",
                                  "probabilities": {"audio_video": 1, "video": 1, "audio": 1}, "fusion": "concat"})
    return family.task("av2a", ctx, cfg, model_cfg, loss, variant, Init(model.state_dict(), {"base": {}, "a2a": {}}))


def _vocoder(task: VocoderTask, device: torch.device) -> Vocoder:
    import tempfile

    from pipeline.inference.model_dir import save_model_dir

    state, extra = task.export()
    card = ModelCard("vocoder", None, "hifigan", ("mel",), {"audio": to_plain(AUDIO)}, {}, {}, {}, extra,
                     to_plain(task.voc_cfg))
    with tempfile.TemporaryDirectory() as tmp:
        save_model_dir(f"{tmp}/vocoder", state, card)
        return load_vocoder(f"{tmp}/vocoder", task.mel_cfg, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profiles", nargs="+", default=["demo", "paper"])
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}", flush=True)
    for profile in args.profiles:
        run(profile, device)


if __name__ == "__main__":
    main()
