"""HuBERT features: real transformers loading, layer choice, 50 Hz grid, chunking and batching.

The model is a small randomly initialised `HubertModel` saved with `save_pretrained`: the
loading and compute paths are the real ones, only the sizes are small.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import paths
import pytest
import torch
from roi_samples import babble, one_torch_thread, write_roi  # noqa: F401 - autouse fixture
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from pipeline.config import Params, load_params
from pipeline.executor import Executor
from pipeline.features.hubert import HubertExtractor, HubertSpec, HubertUnavailable
from pipeline.features.units import UnitsConfig, run_units
from pipeline.shards import ShardReader, list_shards, unpack

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
# Base-like (group-norm front end, post-norm encoder) and Large-like (layer norm, pre-norm encoder).
KINDS = {"base": dict(feat_extract_norm="group", do_stable_layer_norm=False),
         "large": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = {}
    for name, kind in KINDS.items():
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(f"hubert-{name}")
        HubertModel(HubertConfig(**TINY, **kind)).save_pretrained(path)
        out[name] = str(path)
    return out


@pytest.fixture(scope="module")
def audio():
    return babble(seed=1, seconds=3.0)  # 48000 samples: 150 frames


def _full_model_layer(checkpoint: str, prepared: np.ndarray, layer: int) -> np.ndarray:
    model = HubertModel.from_pretrained(checkpoint).eval()
    with torch.inference_mode():
        return model(torch.from_numpy(prepared)[None], output_hidden_states=True).hidden_states[layer][0].numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_layer_features_are_the_full_models_hidden_states(checkpoints, audio, kind):
    ext = HubertExtractor(HubertSpec(checkpoint=checkpoints[kind], layer=2, device="cpu"))
    got = ext([audio])[0]
    assert got.shape == (150, 32) and got.dtype == np.float32  # two frames per 25 fps video frame
    assert len(ext.model.encoder.layers) == 2  # the layer after the chosen one is never computed
    np.testing.assert_allclose(got, _full_model_layer(checkpoints[kind], ext._prepare(audio), 2), atol=1e-5)
    assert not np.allclose(got, _full_model_layer(checkpoints[kind], ext._prepare(audio), 3), atol=1e-2)


def test_frame_count_is_ceil_of_hops(checkpoints):
    ext = HubertExtractor(HubertSpec(checkpoint=checkpoints["base"], layer=1, device="cpu"))
    for n, frames in ((320, 1), (321, 2), (47648, 149), (48000, 150)):
        assert ext([babble(2, n / 16000)])[0].shape[0] == frames


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_equals_unchunked_within_tolerance(checkpoints, audio, kind):
    whole = HubertExtractor(HubertSpec(checkpoint=checkpoints[kind], layer=3, chunk_seconds=30.0, device="cpu"))([audio])[0]
    chunked = HubertExtractor(HubertSpec(checkpoint=checkpoints[kind], layer=3, chunk_seconds=0.5, context_seconds=1.0,
                                         device="cpu"))([audio])[0]
    assert chunked.shape == whole.shape
    # A frame shift of one would differ by about the signal's own size; context keeps chunks within 2%.
    assert np.abs(chunked - whole).max() < 0.02 * np.abs(whole).max()
    cos = (chunked * whole).sum(1) / np.linalg.norm(chunked, axis=1) / np.linalg.norm(whole, axis=1)
    assert cos.min() > 0.999


def test_batched_equals_one_at_a_time(checkpoints):
    audios = [babble(s, 1.0) for s in range(3)] + [babble(9, 0.7)]
    ext = HubertExtractor(HubertSpec(checkpoint=checkpoints["large"], layer=2, max_batch=2, chunk_seconds=0.4,
                                     context_seconds=0.2, device="cpu"))
    batched = ext(audios)
    for a, b in zip(audios, batched):
        np.testing.assert_allclose(b, ext([a])[0], atol=1e-5)


def test_layer_out_of_range_is_refused(checkpoints):
    with pytest.raises(ValueError, match=r"units.layer=4: .* has transformer layers 1..3"):
        HubertExtractor(HubertSpec(checkpoint=checkpoints["base"], layer=4, device="cpu"))


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(HubertUnavailable, match="set units.checkpoint to it, or set units.source: mfcc"):
        HubertExtractor(HubertSpec(checkpoint=str(tmp_path / "absent"), device="cpu"))


def test_input_normalisation_follows_the_checkpoint(checkpoints, audio, tmp_path):
    large = HubertExtractor(HubertSpec(checkpoint=checkpoints["large"], layer=2, device="cpu"))
    assert (large.normalize, large.normalize_from) == (True, "feat_extract_norm=layer")  # fairseq: Large was trained normalised
    base = HubertExtractor(HubertSpec(checkpoint=checkpoints["base"], layer=2, device="cpu"))
    assert (base.normalize, base.normalize_from) == (False, "feat_extract_norm=group")
    # Normalised input makes the features blind to level and offset; the un-normalised layer-norm model is not.
    louder = 3.0 * audio + 0.01
    np.testing.assert_allclose(large([louder])[0], large([audio])[0], atol=1e-4)
    model = HubertModel.from_pretrained(checkpoints["large"])
    model.save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(tmp_path)
    raw = HubertExtractor(HubertSpec(checkpoint=str(tmp_path), layer=2, device="cpu"))
    assert (raw.normalize, raw.normalize_from) == (False, "preprocessor_config.json")
    assert not np.allclose(raw([louder])[0], raw([audio])[0], atol=1e-2)


def test_units_stage_with_hubert_source(checkpoints, tmp_path):
    utts = [(f"a_{i}", "a", "train", babble(i, 1.0)) for i in range(3)] + [("b_0", "b", "test", babble(7, 1.2))]
    roi = write_roi(tmp_path / "roi", utts)
    shipped = Params(load_params(paths.PARAMS)).parse("units", UnitsConfig)
    cfg = replace(shipped, source="hubert", clusters=8, kmeans=replace(shipped.kmeans, n_init=2),
                  checkpoint=checkpoints["base"], layer=2, device="cpu")
    outcome = run_units(cfg, 0, Executor(workers=1), roi, tmp_path / "units")
    assert (outcome.ok, outcome.failures) == (4, [])
    meta = json.loads((tmp_path / "units" / "units.json").read_text())
    assert meta["source"] == "hubert"
    assert meta["features"] | {"transformers": None} == {
        "kind": "hubert", "checkpoint": checkpoints["base"], "layer": 2, "num_layers": 3, "dim": 32,
        "normalized_input": False, "normalized_input_from": "feat_extract_norm=group", "chunk_seconds": 20.0,
        "context_seconds": 2.0, "transformers": None}
    assert np.load(tmp_path / "units" / "centroids.npy").shape == (8, 32)
    for path in list_shards(tmp_path / "units"):
        reader = ShardReader(path)
        roi_reader = ShardReader(roi / path.relative_to(tmp_path / "units"))
        assert reader.utt_ids == roi_reader.utt_ids
        for i in range(len(reader)):
            units = unpack(reader.read(i), "units")
            assert len(units) == 2 * roi_reader.read(i, ["n_frames"])["n_frames"] and units.max() < 8
