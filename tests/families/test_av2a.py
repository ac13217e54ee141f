"""AV2A through the generic stage code: procedures' draws and inputs, separate statistics per step, resume,
the exported card, synthesis of every split, and test time never reading ground-truth audio."""
from __future__ import annotations

import copy
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from model_world import AUDIO, TREE, loss, model_cfg, train_cfg

from pipeline.config import ConfigError, Params, parse
from pipeline.executor import Executor
from pipeline.families import get_family
from pipeline.families.base import Init
from pipeline.families.speech import AV2AModelConfig
from pipeline.inference.card import load_card
from pipeline.inference.model_dir import sha256_file
from pipeline.inference.synthesis import run_synthesis, synthesize_system
from pipeline.layout import Layout
from pipeline.models.av2a import MODALITIES, load_base
from pipeline.models.norm import multi_stat_norms
from pipeline.shards import pack, unpack, write_shard
from pipeline.streams import Catalog, StreamSource
from pipeline.training.loop import Trainer, WindowFeed
from pipeline.training.procedures import AV2AVariant, draw_modality
from pipeline.training.runs import av2a_config, pretrain_a2a, pretrain_config, train_av2a, train_v2a, v2a_config
from pipeline.training.synthetic import write_synthetic_corpus
from pipeline.training.task import Context
from pipeline.training.windows import WindowDataset
from stages import synthesize_av2a, synthesize_robustness

SPLITS = {"train": ["s1", "s2"], "val": ["s1"], "test": ["s2"], "unseen": ["s3"]}
BASE, NAME = "melspec_pretrained_finetuned", "melspec_modality_dropout_gt"


def _variant(procedure: str, weights: dict | None = None) -> AV2AVariant:
    return parse(AV2AVariant, {"family": "melspec", "base": BASE, "procedure": procedure,
                               "probabilities": weights, "fusion": "concat"}, "test")


THIRDS = {"audio_video": 1, "video": 1, "audio": 1}


def test_procedure_draws_follow_their_probabilities():
    n = 6000
    for weights in (THIRDS, {"audio_video": 0.5, "video": 0.3, "audio": 0.2}):
        counts = Counter(draw_modality(_variant("modality_dropout", weights), 7, s) for s in range(1, n + 1))
        total = sum(weights.values())
        for m in MODALITIES:
            p = weights[m] / total
            assert abs(counts[m] / n - p) < 4 * (p * (1 - p) / n) ** 0.5, (m, counts)
    # seeded: the same seed draws the same steps, another seed others
    a = [draw_modality(_variant("modality_dropout", THIRDS), 1, s) for s in range(50)]
    assert a == [draw_modality(_variant("modality_dropout", THIRDS), 1, s) for s in range(50)]
    assert a != [draw_modality(_variant("modality_dropout", THIRDS), 2, s) for s in range(50)]
    assert {draw_modality(_variant("baseline"), 1, s) for s in range(50)} == {"audio_video"}


def test_procedure_settings_are_checked():
    with pytest.raises(ConfigError, match="null"):
        _variant("baseline", THIRDS)
    with pytest.raises(ConfigError, match="needs probabilities"):
        _variant("modality_dropout")
    with pytest.raises(ConfigError, match="not all zero"):
        _variant("modality_dropout_gt", {"audio_video": 0, "video": 0, "audio": 0})


def _batch(frames: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randint(0, 256, (2, frames, 1, 24, 24), dtype=torch.uint8, generator=g),
            "audio": 0.1 * torch.randn(2, frames * 640, generator=g),
            "synth": 0.1 * torch.randn(2, frames * 640, generator=g), "spk": torch.randn(2, 256, generator=g)}


def _task(variant: AV2AVariant, seed: int = 0):
    fam = get_family("melspec")
    cfg = AV2AModelConfig(model_cfg("melspec"), "concat")
    base = fam.build("v2a", cfg.base)
    model = fam.build("av2a", cfg)
    load_base(model, base.state_dict(), "video", fam.build("a2a", cfg.base).state_dict())
    init = Init(model.state_dict(), {"base": {"name": BASE}, "a2a": {}})
    return fam.task("av2a", Context(), train_cfg(lr=1e-3, seed=seed), cfg, loss("melspec"), variant, init)


def _spy(task) -> list[tuple[str, torch.Tensor]]:
    """(modality, audio input) of every forward pass of the task's generator."""
    calls: list[tuple[str, torch.Tensor]] = []
    task.net("g").register_forward_pre_hook(lambda m, args: calls.append((args[3], args[1].clone())))
    return calls


@pytest.mark.parametrize("procedure", ["baseline", "modality_dropout", "modality_dropout_gt"])
def test_each_step_reads_its_procedures_audio_and_moves_only_its_statistics(procedure):
    variant = _variant(procedure, None if procedure == "baseline" else THIRDS)
    task = _task(variant, seed=5)
    calls = _spy(task)
    norms = multi_stat_norms(task.net("g"))
    task.train(True)
    for step in range(1, 16):
        task.ctx.step = step
        batch = _batch(seed=step)
        before = {m: [n.stats[m].running_mean.clone() for n in norms] for m in MODALITIES}
        task.train_step(batch)
        modality, audio = calls[-1]
        assert modality == draw_modality(variant, 5, step)
        gt = procedure == "modality_dropout_gt" and modality == "audio"
        assert torch.equal(audio, batch["audio" if gt else "synth"])
        for m in MODALITIES:
            moved = any(not torch.equal(a, n.stats[m].running_mean) for a, n in zip(before[m], norms, strict=True))
            assert moved == (m == modality), (step, modality, m)
    seen = {m for m, _ in calls}
    assert seen == ({"audio_video"} if procedure == "baseline" else set(MODALITIES))
    # validation (as test time) reads video plus synthesis, both modalities
    calls.clear()
    task.train(False)
    with torch.no_grad():  # as the loop validates
        task.validate(iter([_batch(seed=99)]))
    assert calls[0][0] == "audio_video" and torch.equal(calls[0][1], _batch(seed=99)["synth"])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Layout, Params]:
    """A synthetic corpus with a trained A2A, a base V2A and its synthesis of every split (Griffin-Lim)."""
    corpus = write_synthetic_corpus(Layout(tmp_path_factory.mktemp("corpus")), SPLITS, utts_per_speaker=3,
                                    n_frames=12, size=24)
    tree = copy.deepcopy(TREE)
    tree["train"].update(batch_size=2, window_frames=3, val_every=100, log_every=100, checkpoint_every=2)
    tree["pretrain"]["corpora"] = ["own"]
    tree["pretrain"]["families"]["melspec"]["steps"] = 1
    tree["v2a"]["steps"]["melspec"] = 1
    tree["av2a"]["steps"]["melspec"] = 4
    tree["synthesize"].update(vocoder="griffin_lim", workers=1, device="cpu", batch_size=2)
    params = Params(tree)
    pretrain_a2a(pretrain_config(params, "melspec"), corpus)
    base_dir = train_v2a(v2a_config(params, BASE), corpus)
    run_synthesis(base_dir, None, corpus, corpus.synth(BASE), Executor(workers=1), batch_size=2)
    return corpus, params


def test_resume_equals_uninterrupted(world, tmp_path):
    layout, params = world
    cfg = av2a_config(params, NAME)
    fam = get_family("melspec")
    streams = fam.train_streams("av2a", Catalog(layout, AUDIO), cfg.variant)
    keys = [s.key for s in streams]
    data = WindowDataset(StreamSource(layout.roi / "shards", streams, ["train"]), 3, keys)
    model = fam.trained_model_config("av2a", cfg.variant, layout)
    init = fam.initial_state("av2a", cfg.variant, layout)

    def run(directory: Path, stop_at: int | None = None) -> dict[str, torch.Tensor]:
        feed = WindowFeed(data, None, 2, 0, 2, cfg.train.seed)
        factory = lambda ctx: fam.task("av2a", ctx, cfg.train, model, cfg.loss, cfg.variant, init)  # noqa: E731
        return Trainer(factory, cfg.train.loop(), feed, directory, None, "fp").fit(stop_at).net("g").state_dict()

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_at=2)
    resumed = run(tmp_path / "b")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def _noisy_roi(src: Path, dst: Path) -> None:
    """The roi shards with every ground-truth audio track replaced by loud noise."""
    rng = np.random.default_rng(0)
    for shard in sorted(src.rglob("*.parquet")):
        rows = pq.read_table(shard).to_pylist()
        for r in rows:
            noise = rng.uniform(-1, 1, unpack(r, "audio").shape).astype(np.float32)
            r.update(pack("audio", noise))
        write_shard(dst / shard.relative_to(src), rows)


@pytest.fixture(scope="module")
def av2a_dir(world) -> Path:
    layout, params = world
    return train_av2a(av2a_config(params, NAME), layout)


def test_av2a_trains_exports_and_speaks_the_evaluated_splits_without_ground_truth(world, av2a_dir, tmp_path):
    layout, params = world
    model_dir = av2a_dir
    card = load_card(model_dir)
    base_dir = layout.model("v2a", BASE)
    assert (card.kind, card.family, card.name, card.inputs) == ("av2a", "melspec", NAME, ("video", "synth", "spk"))
    assert card.extra["base"] == {"name": BASE, "path": str(base_dir), "sha256": sha256_file(base_dir / "model.pt")}
    assert card.extra["norm_stats"] == "audio_video" and card.extra["procedure"] == "modality_dropout_gt"
    assert card.crop == load_card(base_dir).crop and card.train["steps"] == 4

    out = layout.synth(NAME)
    cfg = synthesize_av2a.configure(params, NAME)
    info = synthesize_system(cfg, layout)  # what stage synthesize_av2a runs
    assert info["utterances"] == {"test": 3, "unseen": 3}  # nothing reads its train or val speech

    # the same synthesis from roi shards whose ground-truth audio is noise
    noisy = Layout(tmp_path / "noisy")
    _noisy_roi(layout.roi / "shards", noisy.roi / "shards")
    shutil.copytree(layout.speakers, noisy.speakers)
    shutil.copytree(layout.synth(BASE), noisy.synth(BASE))
    again = noisy.synth(NAME)
    run_synthesis(model_dir, None, noisy, again, Executor(workers=1), batch_size=2, splits=cfg.splits)
    shards = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    assert shards and shards == sorted(p.relative_to(again) for p in again.rglob("*.parquet"))
    for rel in shards:
        a, b = pq.read_table(out / rel).to_pylist(), pq.read_table(again / rel).to_pylist()
        assert [r["utt_id"] for r in a] == [r["utt_id"] for r in b]
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(unpack(x, "audio"), unpack(y, "audio")), x["utt_id"]
    # and the noise did reach the roi shards (so the check above could fail)
    first = sorted((layout.roi / "shards").rglob("*.parquet"))[0]
    assert unpack(pq.read_table(first).to_pylist()[0], "audio").std() != \
        unpack(pq.read_table(noisy.roi / "shards" / first.relative_to(layout.roi / "shards")).to_pylist()[0], "audio").std()


def test_a_synthesis_not_made_by_the_base_is_refused(world, tmp_path):
    layout, params = world
    other = Layout(tmp_path)
    for name in ("roi", "features"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / name).symlink_to(layout.root / "data" / name)
    shutil.copytree(layout.model("v2a", BASE), other.model("v2a", BASE))
    shutil.copytree(layout.model("a2a", "melspec"), other.model("a2a", "melspec"))
    cfg = av2a_config(params, NAME)
    with pytest.raises(FileNotFoundError, match=f"run synthesize@{BASE}"):
        train_av2a(cfg, other)
    shutil.copytree(layout.synth(BASE), other.synth(BASE))
    info = other.synth(BASE) / "info.json"
    info.write_text(info.read_text().replace(sha256_file(layout.model("v2a", BASE) / "model.pt"), "0" * 64))
    with pytest.raises(ValueError, match="synthesised by other weights"):
        train_av2a(cfg, other)


def _audio(root: Path) -> dict[str, np.ndarray]:
    return {r["utt_id"]: unpack(r, "audio") for p in sorted(root.rglob("*.parquet")) for r in pq.read_table(p).to_pylist()}


def test_robustness_systems_speak_with_one_modality(world, av2a_dir, tmp_path):
    layout, params = world
    full = layout.synth(NAME)
    if not full.is_dir():
        synthesize_system(synthesize_av2a.configure(params, NAME), layout)
    outs = {}
    for only in ("video_only", "audio_only"):
        key = f"{NAME}_{only}"
        cfg = synthesize_robustness.configure(params, key)
        assert (cfg.model, cfg.system) == (NAME, key)
        info = synthesize_system(cfg, layout)
        card = load_card(layout.synth(key))
        assert card.inputs == (("video", "spk") if only == "video_only" else ("synth", "spk")) == tuple(info["inputs"])
        outs[only] = _audio(layout.synth(key))
    reference = _audio(full)
    assert set(outs["video_only"]) == set(outs["audio_only"]) == set(reference)
    utt = sorted(reference)[0]
    assert len({outs["video_only"][utt].tobytes(), outs["audio_only"][utt].tobytes(), reference[utt].tobytes()}) == 3
    # video only never reads the synthesis: noise there changes nothing
    other = Layout(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("roi", "features"):
        (tmp_path / "data" / name).symlink_to(layout.root / "data" / name)
    shutil.copytree(layout.root / "models", tmp_path / "models")
    _noisy_synth(layout.synth(BASE), other.synth(BASE))
    synthesize_system(synthesize_robustness.configure(params, f"{NAME}_video_only"), other)
    again = _audio(other.synth(f"{NAME}_video_only"))
    assert all(np.array_equal(again[u], outs["video_only"][u]) for u in reference)


def _noisy_synth(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    rng = np.random.default_rng(1)
    for shard in sorted(dst.rglob("*.parquet")):
        rows = pq.read_table(shard).to_pylist()
        for r in rows:
            r.update(pack("audio", rng.uniform(-1, 1, unpack(r, "audio").shape).astype(np.float32)))
        write_shard(shard, rows)
