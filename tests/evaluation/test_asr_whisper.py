"""Whisper as the third ASR: its real loading and decoding path, on a tiny randomly initialised Whisper saved by the test."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_world import MEL

from pipeline.evaluation.asr_whisper import WhisperASR, WhisperConfig, normalise, spell_number
from pipeline.evaluation.checks import CheckConfig
from pipeline.evaluation.evaluate import Settings, asr_identity, score_pair

SPECIAL = ("<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
           "<|nocaptions|>", "<|notimestamps|>")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A two-layer Whisper with a byte-level vocabulary, saved as `save_pretrained` writes a real one."""
    import torch
    from transformers import (
        WhisperConfig as HFWhisperConfig,
    )
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    root = tmp_path_factory.mktemp("whisper")
    (root / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(bytes_to_unicode().values())}))
    (root / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tok = WhisperTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), unk_token=end, bos_token=end,
                           eos_token=end, pad_token=end)
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL)})
    ids = {t: tok.convert_tokens_to_ids(t) for t in (end, *SPECIAL)}
    cfg = HFWhisperConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                          max_target_positions=128, decoder_start_token_id=ids["<|startoftranscript|>"],
                          eos_token_id=ids[end], pad_token_id=ids[end], bos_token_id=ids[end])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    gen = model.generation_config
    gen.lang_to_id, gen.task_to_id = {"<|en|>": ids["<|en|>"]}, {"transcribe": ids["<|transcribe|>"],
                                                                   "translate": ids["<|translate|>"]}
    gen.no_timestamps_token_id, gen.is_multilingual, gen._from_model_config = ids["<|notimestamps|>"], True, False
    model.save_pretrained(root / "tiny")
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(root / "tiny")
    return root / "tiny"


def _speech(seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_a_saved_checkpoint_loads_offline_and_decodes_deterministically(checkpoint):
    asr = WhisperASR(WhisperConfig(True, str(checkpoint), "cpu"))
    first, second = asr.transcribe(_speech(), 16000), asr.transcribe(_speech(), 16000)
    assert isinstance(first, str) and first == second  # greedy: the same words every time
    assert not any(c.isdigit() for c in first)  # digits are spelled out like the corpora's transcripts
    ident = asr.identity()
    assert ident["checkpoint"] == str(checkpoint) and len(ident["weights_sha256"]) == 64
    with pytest.raises(ValueError, match="Whisper transcribes 16000 Hz audio, got 8000 Hz"):
        asr.transcribe(_speech(), 8000)


def test_a_checkpoint_that_cannot_be_loaded_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        WhisperASR(WhisperConfig(True, str(tmp_path), "cpu"))  # a directory without a checkpoint
    message = str(err.value)
    assert "asr.whisper.checkpoint" in message and "asr.whisper.enabled: false" in message and "\n" not in message


def test_the_scorer_adds_whisper_beside_the_other_asrs(checkpoint):
    checks = CheckConfig(16000, 0.5, -60.0, 0.01, 0.05)
    cfg = WhisperConfig(True, str(checkpoint), "cpu")
    s = Settings(MEL, checks, None, None, None, 0.2, cfg)
    assert s.asrs == ("whisper",)
    result = score_pair(_speech(), 16000, _speech(), 16000, "bin blue at f two now", s)
    assert set(result.transcripts) == {"whisper"} and result.errors["whisper"]["ref_words"] == 6
    assert asr_identity("whisper", s)["weights_sha256"] == WhisperASR(cfg).identity()["weights_sha256"]


@pytest.mark.parametrize(("text", "spoken"), [
    ("bin blue at f 2 now", "bin blue at f two now"), ("set red by 7 please", "set red by seven please"),
    ("42 and 19 and 30", "forty two and nineteen and thirty"), ("in 2024 or 07", "in two zero two four or zero seven"),
    ("place 9,now", "place nine ,now"),
])
def test_numbers_are_spelled_as_the_corpora_write_them(text, spoken):
    assert normalise(text) == spoken


def test_spell_number_covers_every_two_digit_number():
    words = {spell_number(str(n)) for n in range(100)}
    assert len(words) == 100 and spell_number("0") == "zero" and spell_number("99") == "ninety nine"
