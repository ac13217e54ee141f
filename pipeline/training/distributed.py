"""Processes and devices: joining a torchrun group, relaunching a stage under torchrun, seeding."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from pipeline.training.task import TrainingDiverged


@dataclass
class DistInfo:
    """This process's place in the (possibly single-process) group."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group `torchrun` describes in the environment (nccl on GPU, gloo on CPU).

    `device` auto takes this process's GPU when there is one; cpu or cuda force it.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), dev)
    return DistInfo(0, 1, dev)


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


def run_training_stage(module: str, argv: Sequence[str], devices: int, train: Callable[[], object]) -> int:
    """Run a training stage's work: under torchrun when `devices` > 1, divergence as exit code 1."""
    rc = relaunch_distributed(devices, module, argv)
    if rc is not None:
        return rc
    try:
        train()
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
