"""The trainer: exact resume, NaN stop, corrupt checkpoints, DVCLive output and DDP across 2 CPU processes."""
from __future__ import annotations

import json
import os
import shutil
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from model_world import AUDIO, train_cfg
from torch import nn

from pipeline.inference.model_dir import CheckpointError, load_torch
from pipeline.layout import Layout
from pipeline.streams import Catalog, StreamSource
from pipeline.training.checkpoint import list_checkpoints
from pipeline.training.config import TrainConfig
from pipeline.training.loop import Trainer, WindowFeed
from pipeline.training.synthetic import write_synthetic_corpus
from pipeline.training.task import Context, Task, TrainingDiverged, Validation
from pipeline.training.windows import WindowDataset


class ToyGAN(Task):
    """A two-network task shaped like the real GAN tasks (batch norm, dropout, D and G steps)."""

    def __init__(self, ctx: Context, cfg: TrainConfig, nan_at: int | None = None, stop_from: int | None = None):
        self.nan_at, self.stop_from = nan_at, stop_from
        self.nets = {
            "g": nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 64)),
            "d": nn.Sequential(nn.Linear(64, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)),
        }
        self.optimizers = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr) for k, m in self.nets.items()}
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, cfg.lr_lambda()) for k, o in self.optimizers.items()}

    def _features(self, batch):
        x = batch["audio"].reshape(batch["audio"].shape[0], -1, 64).mean(1)
        return x * 10 + batch["spk"][:, :64]

    def train_step(self, batch):
        x = self._features(batch)
        fake = self.nets["g"](x)
        logits = self.nets["d"](torch.cat([x, fake.detach()]))
        d_loss = ((logits[: len(x)] - 1) ** 2).mean() + (logits[len(x):] ** 2).mean()
        d = self.optimize("d", d_loss)
        g_loss = ((self.nets["d"](fake) - 1) ** 2).mean() + (fake - x).abs().mean()
        if self.nan_at == self.ctx.step:
            g_loss = g_loss * float("nan")
        return {"d": d, "g": self.optimize("g", g_loss)}

    def validate(self, batches):
        errs, mel = [], None
        for b in batches:
            x = self._features(b)
            y = self.net("g")(x)
            errs.append(float((y - x).abs().mean()))
            mel = y[0].reshape(8, 8).cpu().numpy()
        wav = np.sin(np.linspace(0, 100, 1600)).astype(np.float32)
        stop = self.stop_from is not None and self.ctx.step >= self.stop_from
        return Validation({"l1": float(np.mean(errs))}, mel, mel * 0, wav, wav, stop=stop)

    def export(self):
        return self.net("g").state_dict(), {}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_synthetic_corpus(Layout(tmp_path_factory.mktemp("corpus")), {"train": ["s1", "s2"], "val": ["s1"]},
                                  utts_per_speaker=5, n_frames=12)


def _trainer(corpus, tmp, steps=6, nan_at=None, live=None, fingerprint="f", stop_from=None, **cfg):
    streams = Catalog(corpus, AUDIO).get("audio", "spk")
    train = WindowDataset(StreamSource(corpus.roi / "shards", streams, ["train"]), 4, ["audio", "spk"])
    val = WindowDataset(StreamSource(corpus.roi / "shards", streams, ["val"]), None, ["audio", "spk"])
    config = train_cfg(steps, batch_size=3, lr=1e-2, warmup_steps=2, final_lr_ratio=0.1, clip_norm=1.0,
                       log_every=1, val_every=3, val_utterances=2, checkpoint_every=cfg.pop("checkpoint_every", 3),
                       seed=5, **cfg)
    feed = WindowFeed(train, val, config.batch_size, config.num_workers, config.val_utterances, config.seed)
    return Trainer(lambda ctx: ToyGAN(ctx, config, nan_at, stop_from), config.loop(), feed, tmp / "ckpt", live,
                   fingerprint, name="toy")


def _weights(task: Task) -> dict[str, torch.Tensor]:
    return {f"{k}.{n}": t for k in task.nets for n, t in task.net(k).state_dict().items()}


def test_resumed_run_ends_with_the_same_weights(corpus, tmp_path):
    # 7 steps with 3-sample batches over 10 windows crosses epoch boundaries (3 batches per epoch)
    straight = _weights(_trainer(corpus, tmp_path / "a", steps=7).fit())
    _trainer(corpus, tmp_path / "b", steps=7).fit(stop_at=4)  # "crashes" after step 4 (checkpoint at 3)
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "ckpt")] == [3]
    resumed = _weights(_trainer(corpus, tmp_path / "b", steps=7).fit())
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    fresh = _weights(_trainer(corpus, tmp_path / "c", steps=7, fingerprint="other-config").fit(stop_at=2))
    assert not all(torch.equal(fresh[k], straight[k]) for k in straight)


def test_a_validation_that_says_stop_ends_the_run_for_good(corpus, tmp_path):
    trainer = _trainer(corpus, tmp_path, steps=12, stop_from=5, checkpoint_every=4)
    stopped = _weights(trainer.fit())  # validations at 3, 6, ...: the one at 6 stops it
    assert trainer.stopped and [s for s, _ in list_checkpoints(tmp_path / "ckpt")] == [4, 6]
    again = _trainer(corpus, tmp_path, steps=12, stop_from=5, checkpoint_every=4)
    resumed = _weights(again.fit())  # a stopped run resumed stays stopped: no step is added
    assert again.stopped and [s for s, _ in list_checkpoints(tmp_path / "ckpt")] == [4, 6]
    assert all(torch.equal(stopped[k], resumed[k]) for k in stopped)


def test_checkpoint_of_another_configuration_is_not_resumed(corpus, tmp_path, capsys):
    _trainer(corpus, tmp_path, steps=3).fit()
    _trainer(corpus, tmp_path, steps=3, fingerprint="changed").fit()
    assert "another configuration; starting over" in capsys.readouterr().out
    assert load_torch(list_checkpoints(tmp_path / "ckpt")[-1][1])["fingerprint"] == "changed"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"step 5: g loss is nan.*last good checkpoint is .*step-00000004\.pt"):
        _trainer(corpus, tmp_path, steps=8, nan_at=5, checkpoint_every=2).fit()
    ckpts = list_checkpoints(tmp_path / "ckpt")
    assert [s for s, _ in ckpts] == [2, 4]
    state = load_torch(ckpts[-1][1])
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["task"]["nets"]["g"].values() if t.is_floating_point())


def test_corrupt_or_truncated_checkpoint_names_the_file(corpus, tmp_path):
    _trainer(corpus, tmp_path, steps=3).fit()
    (_, path), = list_checkpoints(tmp_path / "ckpt")[-1:]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"cannot read checkpoint {path}.*truncated or corrupt"):
        _trainer(corpus, tmp_path, steps=6).fit()
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=str(path)):
        load_torch(path)


def test_dvclive_logs_metrics_a_spectrogram_and_audio(corpus, tmp_path):
    live = tmp_path / "live"
    _trainer(corpus, tmp_path, steps=3, live=live).fit()
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 3 and "l1" in summary["val"] and "g" in summary["train"]
    assert (live / "plots" / "metrics" / "train" / "g.tsv").read_text().count("\n") == 4  # header + 3 steps
    assert (live / "plots" / "images" / "spectrogram.png").stat().st_size > 1000
    assert sorted(p.name for p in (live / "audio").iterdir()) == ["predicted.wav", "target.wav"]
    assert not (tmp_path / "dvc.yaml").exists()
    # a finished run whose record was removed (DVC re-running the stage) validates again, trains nothing
    shutil.rmtree(live)
    trainer = _trainer(corpus, tmp_path, steps=3, live=live)
    trainer.fit()
    assert json.loads((live / "metrics.json").read_text())["val"] == summary["val"]
    assert trainer.last_validation.metrics["l1"] == summary["val"]["l1"]


def _ddp_worker(rank: int, world: int, port: int, corpus, tmp) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    task = _trainer(corpus, tmp, steps=3).fit()
    # parameters: DDP keeps them equal; batch-norm buffers are rank 0's, broadcast at each forward
    params = {f"{k}.{n}": p.detach() for k in task.nets for n, p in task.net(k).named_parameters()}
    torch.save(params, tmp / f"rank{rank}.pt")
    # a NaN on one process stops both, instead of leaving the other waiting in an all-reduce
    try:
        _trainer(corpus, tmp / "nan", steps=3, nan_at=2 if rank == 1 else None).fit()
    except TrainingDiverged as exc:
        (tmp / f"rank{rank}.diverged").write_text(str(exc))
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_end_with_identical_weights(corpus, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, corpus, tmp_path), nprocs=2, join=True)
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    state = load_torch(list_checkpoints(tmp_path / "ckpt")[-1][1])
    assert state["world"] == 2 and len(state["rng"]) == 2
    assert "step 2: g loss (on another process)" in (tmp_path / "rank0.diverged").read_text()
    assert "step 2: g loss is nan" in (tmp_path / "rank1.diverged").read_text()
