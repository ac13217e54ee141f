"""Training and inference speed of every model at both size profiles.

Training: steps/s and samples/s (one step = the generator step plus, for GANs, the
discriminator step) of V2A-WaveGAN, V2A-MelSpec, their A2A pre-training and the HiFi-GAN
vocoder, on random batches of 96x96 gray crops. Inference: real-time factor (compute seconds
per second of speech) of a 3 s clip, the vocoder included for the mel family. On CUDA the paper
profile runs with bf16 autocast, as the trainer does; on CPU it runs a few steps on a small batch.
Run: .venv/bin/python benchmarks/train.py [--device cpu|cuda] [--profiles demo paper]
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import torch

from pipeline.models.config import hifigan_config, model_config
from pipeline.training.inference import LoadedModel, load_vocoder, synthesize
from pipeline.training.tasks import A2ATask, V2ATask, VocoderTask
from pipeline.training.trainer import Context, Task, TrainConfig

LOSS = {"adversarial": 1.0, "feature_matching": 2.0, "mel_l1": 45.0, "stft": 1.0, "adversarial_start": 0,
        "spectral_convergence": 1.0}
CROP = 96
CLIP_FRAMES = 75  # a 3 s GRID clip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch(b: int, frames: int, device: torch.device) -> dict[str, torch.Tensor]:
    return {"video": torch.randint(0, 256, (b, frames, 1, CROP, CROP), dtype=torch.uint8, device=device),
            "audio": 0.1 * torch.randn(b, frames * 640, device=device), "spk": torch.randn(b, 256, device=device)}


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
    cfg = TrainConfig(steps=steps + 1)
    amp = " bf16" if cuda else ""
    for family in ("wavegan", "melspec"):
        mcfg = model_config(family, profile)
        for name, task in (("a2a", A2ATask(ctx(), cfg, mcfg, LOSS)), ("v2a", V2ATask(ctx(), cfg, mcfg, LOSS))):
            sec = time_steps(task, b, frames, steps, device)
            print(f"train {name}-{family:<8} {profile:<5} {device.type}{amp}: {1 / sec:7.2f} steps/s "
                  f"{b / sec:8.2f} samples/s  (batch {b} x {frames} frames)", flush=True)
        task.train(False)
        loaded = LoadedModel(task.net("g"), {"kind": "v2a", **task.export()[1]}, "", device)
        clip = batch(1, CLIP_FRAMES, device)
        video = clip["video"].permute(0, 1, 3, 4, 2).cpu()
        vocoder = None
        if family == "melspec":
            voc = VocoderTask(ctx(), cfg, hifigan_config(profile), mcfg.mel, {"adversarial": 1.0, "feature_matching": 2.0, "mel_l1": 45.0})
            sec = time_steps(voc, b, frames, steps, device)
            print(f"train vocoder-hifigan {profile:<5} {device.type}{amp}: {1 / sec:7.2f} steps/s {b / sec:8.2f} samples/s",
                  flush=True)
            vocoder = _vocoder(voc, device)
        factor = rtf(lambda: synthesize(loaded, video, clip["spk"].cpu().numpy(), vocoder), device, CLIP_FRAMES / 25)
        print(f"infer v2a-{family:<8} {profile:<5} {device.type}: real-time factor {factor:.3f} "
              f"({'with HiFi-GAN' if vocoder else 'end to end'}, 3 s clip)", flush=True)


def _vocoder(task: VocoderTask, device: torch.device) -> Any:
    import tempfile

    from pipeline.training.checkpoint import save_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        save_model_dir(f"{tmp}/vocoder", *task.export())
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
