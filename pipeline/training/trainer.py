"""One trainer for every model: seeding, exact resume, DDP, bf16 autocast, clipping, NaN stop, DVCLive.

A `Task` (see `pipeline.training.tasks`) owns its networks, optimisers and the losses of one
training step; the `Trainer` owns everything around it: the data order, the device and process
group, checkpoints, validation and logging. A run interrupted at any point resumes from its last
checkpoint and ends with the same weights as an uninterrupted run (on CPU; CUDA kernels are not
bit-deterministic).
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from pipeline.training.checkpoint import (
    checkpoint_path, list_checkpoints, load_torch, prune_checkpoints, rng_state, save_torch, set_rng_state,
)


class NonFiniteLoss(RuntimeError):
    """A loss (or gradient norm) that is NaN or infinite."""

    def __init__(self, name: str, value: float):
        self.name, self.value = name, value
        super().__init__(f"non-finite {name} ({value})")


class TrainingDiverged(RuntimeError):
    """Raised by `Trainer.fit` when a step produced a non-finite loss; the run stopped there."""


@dataclass
class TrainConfig:
    """The `train:` section of params.yaml plus the stage's own step count."""

    steps: int
    batch_size: int = 8
    window_frames: int = 20
    lr: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    final_lr_ratio: float = 1.0
    clip_norm: float | None = 1.0
    log_every: int = 10
    val_every: int = 100
    val_utterances: int = 4
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    devices: int = 1
    num_workers: int = 0
    amp: bool = True
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any], steps: int, **overrides: Any) -> "TrainConfig":
        train = dict(params.get("train", {}) or {})
        train.pop("steps", None)
        known = {k: v for k, v in train.items() if k in cls.__dataclass_fields__}
        if "betas" in known:
            known["betas"] = tuple(known["betas"])
        known.setdefault("seed", params.get("seed", 0))
        known.update(overrides)
        return cls(steps=int(steps), **known)

    def lr_lambda(self) -> Callable[[int], float]:
        """Linear warm-up then cosine decay to `final_lr_ratio` of the base rate."""
        warmup, steps, final = self.warmup_steps, self.steps, self.final_lr_ratio

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, steps - warmup))
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return factor


@dataclass
class Validation:
    """Validation metrics plus one example utterance to log (any field may be None)."""

    metrics: dict[str, float]
    mel_pred: np.ndarray | None = None
    mel_target: np.ndarray | None = None
    wav_pred: np.ndarray | None = None
    wav_target: np.ndarray | None = None
    sample_rate: int = 16000


@dataclass
class Context:
    """What the trainer hands a task: device, precision, clipping and the step being run."""

    device: torch.device = torch.device("cpu")
    amp_dtype: torch.dtype | None = None
    clip_norm: float | None = None
    step: int = 0
    distributed: bool = False

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA (no loss scaling needed for bf16); a no-op elsewhere."""
        if self.amp_dtype is None or self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)


class Task:
    """Base of every trainable model: subclasses fill `nets`, `optimizers`, `schedulers` and define
    `train_step`, `validate` and `export`."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    ctx: Context

    def net(self, name: str) -> nn.Module:
        """The bare module (DDP unwrapped): for validation, export and state."""
        m = self.nets[name]
        return m.module if isinstance(m, DistributedDataParallel) else m

    def train(self, mode: bool = True) -> None:
        for m in self.nets.values():
            m.train(mode)

    def optimize(self, name: str, loss: torch.Tensor) -> float:
        """Backward `loss`, clip and step optimiser `name`; raises `NonFiniteLoss` before any update."""
        value = float(loss.detach())
        finite = math.isfinite(value)
        if self.ctx.distributed:
            # every process must stop together, or the others would wait forever in the all-reduce
            flag = torch.tensor([float(finite)], device=self.ctx.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            if finite and not flag.item():
                raise NonFiniteLoss(f"{name} loss (on another process)", float("nan"))
        if not finite:
            raise NonFiniteLoss(f"{name} loss", value)
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        max_norm = self.ctx.clip_norm if self.ctx.clip_norm else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not math.isfinite(norm):
            raise NonFiniteLoss(f"{name} gradient norm", norm)
        opt.step()
        self.schedulers[name].step()
        return value

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: self.net(k).state_dict() for k in self.nets},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, sd in state["nets"].items():
            self.net(k).load_state_dict(sd)
        for k, sd in state["optimizers"].items():
            self.optimizers[k].load_state_dict(sd)
        for k, sd in state["schedulers"].items():
            self.schedulers[k].load_state_dict(sd)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def validate(self, batches: Iterator[dict[str, torch.Tensor]]) -> Validation:
        raise NotImplementedError

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """`(state_dict, config)` of the model that inference loads."""
        raise NotImplementedError


@dataclass
class DistInfo:
    """This process's place in the (possibly single-process) group."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group `torchrun` describes in the environment (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), device)
    return DistInfo(0, 1, device)


def relaunch_distributed(devices: int, module: str, argv: Sequence[str]) -> int | None:
    """Re-run `python -m module argv` under torchrun with `devices` processes, unless already inside one.

    Returns torchrun's exit code, or None when this process should train itself. Multi-node runs
    call torchrun directly: `torchrun --nnodes N --nproc_per_node G --rdzv_endpoint HOST:PORT -m
    stages.train_v2a VARIANT` (the stage then sees WORLD_SIZE and does not relaunch).
    """
    if devices <= 1 or "WORLD_SIZE" in os.environ:
        return None
    if torch.cuda.is_available() and torch.cuda.device_count() < devices:
        raise RuntimeError(f"train.devices={devices} but this machine has {torch.cuda.device_count()} GPUs")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}",
           "-m", module, *argv]
    print(f"launching {devices} processes: {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, check=False).returncode


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """Runs a task for `cfg.steps` steps with checkpoints in `checkpoint_dir` and DVCLive in `live_dir`.

    `fingerprint` identifies the run (configuration and inputs): a checkpoint with another
    fingerprint belongs to another run and is discarded instead of resumed.
    """

    def __init__(self, task_factory: Callable[[Context], Task], cfg: TrainConfig, train_data: Dataset,
                 val_data: Dataset | None, checkpoint_dir: str | os.PathLike[str],
                 live_dir: str | os.PathLike[str] | None, fingerprint: str, name: str = "train"):
        self.task_factory = task_factory
        self.cfg = cfg
        self.train_data = train_data
        self.val_data = val_data
        self.checkpoint_dir = Path(checkpoint_dir)
        self.live_dir = Path(live_dir) if live_dir is not None else None
        self.fingerprint = fingerprint
        self.name = name
        self.dist = DistInfo()
        self.last_validation: Validation | None = None
        self.validated_step = -1

    # -- set-up -----------------------------------------------------------------------------
    def _build(self) -> Task:
        self.dist = init_distributed()
        seed_everything(self.cfg.seed)  # same initial weights on every rank
        cuda = self.dist.device.type == "cuda"
        ctx = Context(self.dist.device, torch.bfloat16 if (cuda and self.cfg.amp) else None, self.cfg.clip_norm,
                      distributed=self.dist.world > 1)
        task = self.task_factory(ctx)
        task.ctx = ctx
        if self.dist.world > 1:
            ids = [self.dist.device.index] if cuda else None
            task.nets = {k: DistributedDataParallel(m, device_ids=ids) if any(p.requires_grad for p in m.parameters()) else m
                         for k, m in task.nets.items()}
        return task

    def _loader(self, sampler: Any) -> DataLoader:
        if len(sampler) // self.cfg.batch_size == 0 and sampler.start == 0:
            raise ValueError(f"{self.name}: {sampler.num_samples} training windows per process is fewer than "
                             f"train.batch_size={self.cfg.batch_size}")
        # A private generator: creating the iterator must not draw from the global RNG, or a
        # resumed run (which creates it at another moment) would diverge.
        return DataLoader(self.train_data, batch_size=self.cfg.batch_size, sampler=sampler, drop_last=True,
                          num_workers=self.cfg.num_workers, pin_memory=self.dist.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.cfg.seed),
                          persistent_workers=False)

    def _resume(self, task: Task) -> tuple[int, int, int]:
        """Restore the newest checkpoint of this run; `(step, epoch, batches into epoch)`."""
        found = list_checkpoints(self.checkpoint_dir)
        if not found:
            return 0, 0, 0
        step, path = found[-1]
        state = load_torch(path)
        if state.get("fingerprint") != self.fingerprint:
            if self.dist.is_main:
                print(f"{self.name}: checkpoints in {self.checkpoint_dir} are from another configuration; starting over",
                      flush=True)
                shutil.rmtree(self.checkpoint_dir)
            self._barrier()
            return 0, 0, 0
        if state.get("world", 1) != self.dist.world:
            raise RuntimeError(f"{path} was written by {state.get('world')} processes, this run has {self.dist.world}; "
                               "resume with the same train.devices or delete the checkpoints")
        task.load_state_dict(state["task"])
        set_rng_state(state["rng"][self.dist.rank])
        if self.dist.is_main:
            print(f"{self.name}: resumed from {path} (step {step})", flush=True)
        return int(state["step"]), int(state["epoch"]), int(state["consumed"])

    def _save(self, task: Task, step: int, epoch: int, consumed: int) -> None:
        rngs = [rng_state()]
        if self.dist.world > 1:
            rngs = [None] * self.dist.world  # type: ignore[list-item]
            dist.all_gather_object(rngs, rng_state())
        if self.dist.is_main:
            save_torch(checkpoint_path(self.checkpoint_dir, step), {
                "step": step, "epoch": epoch, "consumed": consumed, "world": self.dist.world,
                "fingerprint": self.fingerprint, "task": task.state_dict(), "rng": rngs,
            })
            prune_checkpoints(self.checkpoint_dir, self.cfg.keep_checkpoints)
        self._barrier()

    def _barrier(self) -> None:
        if self.dist.world > 1:
            dist.barrier()

    # -- the loop -----------------------------------------------------------------------------
    def _batches(self, sampler: Any, epoch: int, consumed: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Yield `(epoch, batches consumed in that epoch, batch)` forever, starting mid-epoch if asked."""
        while True:
            sampler.set_epoch(epoch)
            sampler.start = consumed * self.cfg.batch_size
            for batch in self._loader(sampler):
                consumed += 1
                yield epoch, consumed, batch
            epoch, consumed = epoch + 1, 0

    def fit(self, stop_at: int | None = None) -> Task:
        """Train to `cfg.steps` (or only to `stop_at`, to simulate an interruption); returns the task."""
        from pipeline.training.data import ResumableSampler

        task = self._build()
        step, epoch, consumed = self._resume(task)
        if step == 0:
            seed_everything(self.cfg.seed + self.dist.rank)  # ranks draw different dropout noise
        sampler = ResumableSampler(self.train_data, self.dist.world, self.dist.rank, self.cfg.seed)
        logger = Logger(self.live_dir, resume=step > 0, from_step=step) if self.dist.is_main else None
        bar = tqdm(total=self.cfg.steps, initial=step, desc=self.name, unit="step", dynamic_ncols=True,
                   disable=None if self.dist.is_main else True)
        start, first = time.perf_counter(), step
        task.train(True)
        batches = self._batches(sampler, epoch, consumed)
        try:
            while step < self.cfg.steps and (stop_at is None or step < stop_at):
                epoch, consumed, batch = next(batches)
                task.ctx.step = step + 1
                try:
                    losses = task.train_step(_to_device(batch, self.dist.device))
                except NonFiniteLoss as exc:
                    last = list_checkpoints(self.checkpoint_dir)
                    kept = f"the last good checkpoint is {last[-1][1]}" if last else "no checkpoint was written yet"
                    raise TrainingDiverged(f"{self.name}: step {step + 1}: {exc.name} is {exc.value}; "
                                           f"training stopped, {kept}") from exc
                step += 1
                bar.update(1)
                if logger and (step % self.cfg.log_every == 0 or step == self.cfg.steps):
                    logger.log(step, {f"train/{k}": v for k, v in losses.items()})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                if step % self.cfg.val_every == 0 or step == self.cfg.steps:
                    self._validate(task, step, logger)
                if step % self.cfg.checkpoint_every == 0 or step == self.cfg.steps:
                    self._save(task, step, epoch, consumed)
            if self.validated_step != step and step == self.cfg.steps:
                # A finished run resumed (e.g. its outputs were removed): validate again for the
                # exported config; log only if the run's record is gone.
                self._validate(task, step, logger if logger and not logger.has_summary else None)
        finally:
            bar.close()
            if logger:
                logger.close()
        if self.dist.is_main and step > first:
            elapsed = time.perf_counter() - start
            val = ", ".join(f"{k} {v:.4g}" for k, v in (self.last_validation.metrics if self.last_validation else {}).items())
            print(f"{self.name}: steps {first}->{step} in {elapsed:.1f} s ({(step - first) / elapsed:.2f} steps/s)"
                  + (f"; val {val}" if val else ""), flush=True)
        return task

    def _validate(self, task: Task, step: int, logger: "Logger | None") -> None:
        self.validated_step = step
        if self.dist.is_main and self.val_data is not None and len(self.val_data):
            n = min(self.cfg.val_utterances, len(self.val_data))
            loader = DataLoader(Subset(self.val_data, range(n)), batch_size=1, shuffle=False)
            task.train(False)
            # Forked RNG: validation (e.g. Griffin-Lim's random phase) never shifts training noise.
            with torch.no_grad(), torch.random.fork_rng(devices=[self.dist.device] if self.dist.device.type == "cuda" else []):
                result = task.validate(_to_device(b, self.dist.device) for b in loader)
            task.train(True)
            self.last_validation = result
            if logger:
                logger.log(step, {f"val/{k}": v for k, v in result.metrics.items()})
                logger.media(result)
        self._barrier()


class Logger:
    """DVCLive metrics, one spectrogram image and one pair of audio samples, overwritten per validation."""

    def __init__(self, directory: Path | None, resume: bool, from_step: int):
        self.live = None
        self.has_summary = False
        if directory is None:
            return
        from dvclive import Live

        if resume:
            _truncate_history(directory, from_step)
        else:
            shutil.rmtree(directory / "audio", ignore_errors=True)  # Live clears its own files, not ours
        self.has_summary = (directory / "metrics.json").is_file() and resume
        # dvc.yaml declares these files itself; dvclive must not edit it or create experiments.
        self.live = Live(str(directory), resume=resume, dvcyaml=False, save_dvc_exp=False, report=None)

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.step = step
        for k, v in values.items():
            self.live.log_metric(k, float(v))
        self.live.make_summary()

    def media(self, v: Validation) -> None:
        if self.live is None:
            return
        if v.mel_pred is not None:
            self.live.log_image("spectrogram.png", _spectrogram_figure(v.mel_pred, v.mel_target))
        from pipeline.audio.io import write_wav

        audio_dir = Path(self.live.dir) / "audio"
        for name, wav in (("predicted.wav", v.wav_pred), ("target.wav", v.wav_target)):
            if wav is not None:
                write_wav(audio_dir / name, wav / max(1.0, float(np.abs(wav).max())), v.sample_rate)

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


def _spectrogram_figure(pred: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """RGB image of the predicted log-mel above the target's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("predicted", pred)] + ([("target", target)] if target is not None else [])
    scale = target if target is not None else pred  # one colour scale, so the two are comparable
    fig, axes = plt.subplots(len(rows), 1, figsize=(6, 2.2 * len(rows)), squeeze=False)
    for ax, (title, mel) in zip(axes[:, 0], rows):
        ax.imshow(mel, origin="lower", aspect="auto", interpolation="nearest", vmin=scale.min(), vmax=scale.max())
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def _truncate_history(directory: Path, step: int) -> None:
    """Drop logged rows after `step`: they came from the interrupted run and will be re-logged."""
    for tsv in (directory / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        col = lines[0].split("\t").index("step") if "step" in lines[0].split("\t") else None
        if col is None:
            continue
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[col]) <= step]
        tsv.write_text("\n".join(kept) + "\n", encoding="utf-8")
