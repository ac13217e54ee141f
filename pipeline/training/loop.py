"""The training loop for every model: seeding, exact resume, DDP, bf16 autocast, NaN stop, validation.

The `Trainer` runs a `Task` (pipeline.training.task) on the batches of a `Feed` (the data order)
for `LoopConfig.steps` steps. A run interrupted at any point resumes from its last checkpoint
and ends with the same weights as an uninterrupted run (on CPU; CUDA kernels are not
bit-deterministic). `WindowFeed` serves random fixed-length windows of aligned streams
(pipeline.training.windows); a task with its own notion of an epoch brings its own feed.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from pipeline.inference.model_dir import load_torch, save_torch
from pipeline.training.checkpoint import checkpoint_path, list_checkpoints, prune_checkpoints, rng_state, set_rng_state
from pipeline.training.config import LoopConfig
from pipeline.training.distributed import DistInfo, init_distributed, seed_everything
from pipeline.training.live import Logger
from pipeline.training.task import Context, NonFiniteLoss, Task, TrainingDiverged, Validation


class Feed(Protocol):
    """The data a loop trains on: batches epoch by epoch, resumable mid-epoch, and validation batches."""

    def start(self, dist_info: DistInfo) -> None:
        """Called once the process group is known (and the seeds set), before the first batch."""

    def epoch(self, epoch: int, skip: int) -> Iterable[dict[str, Any]]:
        """The batches of `epoch` after its first `skip` (a resumed run's position)."""

    def validation(self) -> Iterable[dict[str, Any]] | None:
        """Validation batches, or None when there is nothing to validate on."""


class WindowFeed:
    """Batches of random windows in the `ResumableSampler`'s seeded order; the first
    `val_utterances` whole utterances of `val` one at a time for validation."""

    def __init__(self, train: Dataset, val: Dataset | None, batch_size: int, num_workers: int, val_utterances: int,
                 seed: int):
        self.train, self.val = train, val
        self.batch_size, self.num_workers, self.val_utterances, self.seed = batch_size, num_workers, val_utterances, seed
        self.sampler: Any = None
        self.pin_memory = False

    def start(self, dist_info: DistInfo) -> None:
        from pipeline.training.windows import ResumableSampler

        self.sampler = ResumableSampler(self.train, dist_info.world, dist_info.rank, self.seed)
        self.pin_memory = dist_info.device.type == "cuda"

    def epoch(self, epoch: int, skip: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.sampler.start = skip * self.batch_size
        if len(self.sampler) // self.batch_size == 0 and self.sampler.start == 0:
            raise ValueError(f"{self.sampler.num_samples} training windows per process is fewer than "
                             f"train.batch_size={self.batch_size}")
        # A private generator: creating the iterator must not draw from the global RNG, or a
        # resumed run (which creates it at another moment) would diverge.
        return DataLoader(self.train, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          generator=torch.Generator().manual_seed(self.seed), persistent_workers=False)

    def validation(self) -> DataLoader | None:
        if self.val is None or not len(self.val):
            return None
        n = min(self.val_utterances, len(self.val))
        return DataLoader(Subset(self.val, range(n)), batch_size=1, shuffle=False)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """Runs a task for `loop.steps` steps with checkpoints in `checkpoint_dir` and DVCLive in `live_dir`.

    `fingerprint` identifies the run (configuration and inputs): a checkpoint with another
    fingerprint belongs to another run and is discarded instead of resumed. Without a
    `checkpoint_dir` the run neither writes checkpoints nor resumes.
    """

    def __init__(self, task_factory: Callable[[Context], Task], loop: LoopConfig, feed: Feed,
                 checkpoint_dir: str | os.PathLike[str] | None, live_dir: str | os.PathLike[str] | None,
                 fingerprint: str, name: str = "train"):
        self.task_factory = task_factory
        self.cfg = loop
        self.feed = feed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.live_dir = Path(live_dir) if live_dir is not None else None
        self.fingerprint = fingerprint
        self.name = name
        self.dist = DistInfo()
        self.last_validation: Validation | None = None
        self.validated_step = -1
        self.stopped = False  # the task asked to stop early (a checkpoint records it)

    # -- set-up -----------------------------------------------------------------------------
    def _build(self) -> Task:
        self.dist = init_distributed(self.cfg.device)
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

    def _resume(self, task: Task) -> tuple[int, int, int]:
        """Restore the newest checkpoint of this run; `(step, epoch, batches into epoch)`."""
        found = list_checkpoints(self.checkpoint_dir) if self.checkpoint_dir is not None else []
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
        self.stopped = bool(state.get("stopped", False))
        if self.dist.is_main:
            print(f"{self.name}: resumed from {path} (step {step})", flush=True)
        return int(state["step"]), int(state["epoch"]), int(state["consumed"])

    def _save(self, task: Task, step: int, epoch: int, consumed: int) -> None:
        if self.checkpoint_dir is None:
            return
        rngs = [rng_state()]
        if self.dist.world > 1:
            rngs = [None] * self.dist.world  # type: ignore[list-item]
            dist.all_gather_object(rngs, rng_state())
        if self.dist.is_main:
            save_torch(checkpoint_path(self.checkpoint_dir, step), {
                "step": step, "epoch": epoch, "consumed": consumed, "world": self.dist.world,
                "fingerprint": self.fingerprint, "task": task.state_dict(), "rng": rngs, "stopped": self.stopped,
            })
            prune_checkpoints(self.checkpoint_dir, self.cfg.keep_checkpoints)
        self._barrier()

    def _barrier(self) -> None:
        if self.dist.world > 1:
            dist.barrier()

    # -- the loop -----------------------------------------------------------------------------
    def _batches(self, epoch: int, consumed: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Yield `(epoch, batches consumed in that epoch, batch)` forever, starting mid-epoch if asked."""
        while True:
            for batch in self.feed.epoch(epoch, consumed):
                consumed += 1
                yield epoch, consumed, batch
            epoch, consumed = epoch + 1, 0

    def fit(self, stop_at: int | None = None) -> Task:
        """Train to `loop.steps`, or until a validation says `stop` (early stopping), or only to `stop_at`
        (to simulate an interruption); returns the task."""
        task = self._build()
        step, epoch, consumed = self._resume(task)
        task.ctx.step = step
        if step == 0 and task.reseed_after_build:
            seed_everything(self.cfg.seed + self.dist.rank)  # ranks draw different dropout noise
        self.feed.start(self.dist)
        logger = Logger(self.live_dir, resume=step > 0, from_step=step) if self.dist.is_main else None
        bar = tqdm(total=self.cfg.steps, initial=step, desc=self.name, unit="step", dynamic_ncols=True,
                   disable=None if self.dist.is_main else True)
        start, first = time.perf_counter(), step
        task.train(True)
        batches = self._batches(epoch, consumed)
        try:
            while step < self.cfg.steps and not self.stopped and (stop_at is None or step < stop_at):
                epoch, consumed, batch = next(batches)
                task.ctx.step = step + 1
                try:
                    losses = task.train_step(_to_device(batch, self.dist.device))
                except NonFiniteLoss as exc:
                    last = list_checkpoints(self.checkpoint_dir) if self.checkpoint_dir is not None else []
                    kept = f"the last good checkpoint is {last[-1][1]}" if last else "no checkpoint was written yet"
                    raise TrainingDiverged(f"{self.name}: step {step + 1}: {exc.name} is {exc.value}; "
                                           f"training stopped, {kept}") from exc
                step += 1
                bar.update(1)
                # one record per step: the training losses and, at a validation step, its metrics
                record = {}
                if step % self.cfg.log_every == 0 or step == self.cfg.steps:
                    record = {f"train/{k}": v for k, v in losses.items()}
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                if step % self.cfg.val_every == 0 or step == self.cfg.steps:
                    record.update(self._validate(task, step, logger))
                if logger and record:
                    logger.log(step, record)
                if step % self.cfg.checkpoint_every == 0 or step == self.cfg.steps or self.stopped:
                    self._save(task, step, epoch, consumed)
            if self.validated_step != step and (step == self.cfg.steps or self.stopped):
                # A finished run resumed (e.g. its outputs were removed): validate again for the
                # exported card; log only if the run's record is gone.
                quiet = logger if logger and not logger.has_summary else None
                record = self._validate(task, step, quiet)
                if quiet and record:
                    quiet.log(step, record)
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

    def _validate(self, task: Task, step: int, logger: Logger | None) -> dict[str, float]:
        """Validate on the main process: the metrics to log (`val/<name>`); the example goes to `logger`'s media."""
        self.validated_step = step
        record: dict[str, float] = {}
        batches = self.feed.validation() if self.dist.is_main else None
        if batches is not None:
            task.train(False)
            # Forked RNG: validation (e.g. Griffin-Lim's random phase) never shifts training noise.
            with torch.no_grad(), torch.random.fork_rng(devices=[self.dist.device] if self.dist.device.type == "cuda" else []):
                result = task.validate(_to_device(b, self.dist.device) for b in batches)
            task.train(True)
            self.last_validation = result
            self.stopped = self.stopped or result.stop
            record = {f"val/{k}": v for k, v in result.metrics.items()}
            if logger:
                logger.media(result)
        if self.dist.world > 1:
            flag = [self.stopped]
            dist.broadcast_object_list(flag, src=0)  # every process leaves the loop at the same step
            self.stopped = flag[0]
        self._barrier()
        return record
