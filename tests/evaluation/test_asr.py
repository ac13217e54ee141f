"""The two ASRs: the GRID grammar recogniser on real GRID clips, the CTC model trained from scratch."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import paths
import torch
from model_world import AUDIO, PARAMS

from pipeline.audio.io import read_media_audio, resample
from pipeline.config import Params, load_params
from pipeline.corpora import espeak, grammar
from pipeline.corpora.demo import SPOKEN
from pipeline.evaluation import asr_ctc
from pipeline.evaluation.asr_sphinx import (
    GridSphinxASR,
    SphinxConfig,
    grammar_text,
    identity,
    in_grammar,
    pronunciations,
)
from pipeline.evaluation.metrics import error_counts, rate
from pipeline.inference.card import load_card

GRID = paths.GRID
SPHINX = Params(load_params(paths.PARAMS)).parse("asr.sphinx", SphinxConfig)


def grid_transcripts() -> dict[str, str]:
    """`{clip: transcript}` from the table in shared/grid_samples/SOURCE.md."""
    rows = re.findall(r"^\| (\w+)\.mpg \| ([a-z ]+?) \|$", (GRID / "SOURCE.md").read_text(), flags=re.M)
    return dict(rows)


def test_grammar_covers_grid_with_dictionary_pronunciations():
    text = grammar_text()
    assert text.startswith("#JSGF V1.0;") and "<letter> = a | b |" in text and "| w |" not in text
    lines = pronunciations()
    assert "a(2) EY" in lines and "zero Z IH R OW" in lines  # the letter a as spelled, from the wheel's dictionary
    assert in_grammar("bin blue at f two now") and not in_grammar("bin blue at w two now")
    assert identity(SPHINX) == identity(SPHINX) and len(identity(SPHINX)["grammar_sha256"]) == 64
    assert identity(SPHINX)["grammar_sha256"] == identity(SphinxConfig(False, SPHINX.beam, SPHINX.wbeam, SPHINX.pbeam))[
        "grammar_sha256"]  # switching the ASR off and on again does not change what it is


class _WholeDictionary(GridSphinxASR):
    """The recogniser with the wheel's whole CMU dictionary loaded, as it was first built."""

    def _decoder(self):
        from pocketsphinx import Decoder, get_model_path

        decoder = Decoder(hmm=get_model_path("en-us/en-us"), dict=get_model_path("en-us/cmudict-en-us.dict"), lm=None,
                          samprate=16000, beam=self.cfg.beam, wbeam=self.cfg.wbeam, pbeam=self.cfg.pbeam,
                          loglevel="FATAL")
        decoder.add_jsgf_string("grid", grammar_text())
        decoder.activate_search("grid")
        return decoder


def test_sphinx_wer_on_real_grid_clips_is_at_most_20_percent():
    if not GRID.is_dir():
        paths.missing_grid()
    asr = GridSphinxASR(SPHINX)
    counts = []
    for clip, text in grid_transcripts().items():
        audio = read_media_audio(GRID / f"{clip}.mpg", 16000)
        hyp = asr.transcribe(audio, 16000)
        assert hyp == _WholeDictionary(SPHINX).transcribe(audio, 16000)  # the grammar's words alone decode the same
        counts.append(error_counts(text, hyp))
        print(f"{clip}: {text!r} -> {hyp!r}")
    wer = rate([c["word_errors"] for c in counts], [c["ref_words"] for c in counts])
    print(f"pocketsphinx GRID grammar WER on {len(counts)} real clips: {wer:.1f}%")
    assert len(counts) == 5 and wer <= 20.0


def test_sphinx_transcript_does_not_depend_on_gain_or_history():
    if not GRID.is_dir():
        paths.missing_grid()
    audio = read_media_audio(GRID / "bbaf2n.mpg", 16000)
    asr = GridSphinxASR(SPHINX)
    first = asr.transcribe(audio, 16000)
    asr.transcribe(read_media_audio(GRID / "lrwp9a.mpg", 16000), 16000)
    assert asr.transcribe(0.3 * audio, 16000) == first == GridSphinxASR(SPHINX).transcribe(audio, 16000)


def _speech(words: tuple[str, ...], voice: espeak.Voice) -> np.ndarray:
    s = espeak.synthesize([SPOKEN.get(w, w) for w in words], voice, 0)
    return resample(s.audio, s.sample_rate, 16000)


def test_ctc_asr_learns_new_sentences_well_above_chance(tmp_path):
    # A GRID sub-grammar (3 letters, 3 digits: 22 words) so 30 sentences cover every word
    # many times; the held-out sentences are new word combinations, spoken by the same voices.
    words = {**grammar.WORDS, "letter": ("a", "b", "c"), "digit": ("one", "two", "three")}
    rng = np.random.default_rng(0)
    sentences: list[tuple[str, ...]] = []
    while len(sentences) < 36:
        s = tuple(ws[rng.integers(len(ws))] for ws in words.values())
        if s not in sentences:
            sentences.append(s)
    voices = [espeak.Voice("en+m3", 165, 40, 50), espeak.Voice("en+f2", 175, 60, 60)]
    mel = AUDIO.mel
    data = [(asr_ctc.features(_speech(s, v), 16000, mel), " ".join(s)) for s in sentences for v in voices]
    train, held_out = data[:60], data[60:]
    assert not {t for _, t in train} & {t for _, t in held_out}
    cfg = dataclasses.replace(PARAMS.parse("asr.ctc", asr_ctc.CTCConfig), epochs=40, lr=5e-3, hidden=64,
                              conv_channels=64, batch_size=8, device="cpu", patience=0)
    model, vocab, summary = asr_ctc.train(train, held_out, cfg, seed=0, live_dir=tmp_path / "live")
    chance = asr_ctc.majority_sentence_wer([t for _, t in train], [t for _, t in held_out])
    print(f"CTC held-out WER {summary['val_wer']:.1f}% vs chance (most frequent training sentence) {chance:.1f}%")
    assert chance > 60 and summary["val_wer"] < chance - 25
    # trained through the shared loop: one DVCLive step per epoch, and the kept epoch is the best one (the later on a tie)
    wers = [float(line.split("\t")[-1]) for line in
            (tmp_path / "live" / "plots" / "metrics" / "val" / "wer.tsv").read_text().splitlines()[1:]]
    assert len(wers) == 40 and summary["val_wer"] == min(wers)
    assert summary["best_epoch"] == max(i + 1 for i, w in enumerate(wers) if w == min(wers))
    assert json.loads((tmp_path / "live" / "metrics.json").read_text())["step"] == 40
    # early stopping: the same run with a patience ends `patience` epochs after its best one
    early, _, stopped = asr_ctc.train(train, held_out, dataclasses.replace(cfg, patience=3), seed=0)
    head = wers[: stopped["epochs_run"]]  # the same seed and schedule: the same epochs up to the stop
    assert stopped["epochs_run"] < 40 and stopped["epochs_run"] - max(stopped["best_epoch"], 6) == 3  # warm-up: 15% of 40
    assert stopped["val_wer"] == min(head) and stopped["best_epoch"] == max(i + 1 for i, w in enumerate(head) if w == min(head))
    asr_ctc.save(tmp_path / "asr", model, vocab, cfg, AUDIO, 0, summary)
    assert load_card(tmp_path / "asr").kind == "asr" and load_card(tmp_path / "asr").validation["wer"] == summary["val_wer"]
    loaded = asr_ctc.CTCASR(tmp_path / "asr")
    audio = _speech(sentences[-1], voices[0])
    direct = asr_ctc.transcribe_features(model, [asr_ctc.features(audio, 16000, mel)], vocab, torch.device("cpu"))[0]
    assert loaded.transcribe(audio, 16000) == direct
    assert len(loaded.identity()["model_sha256"]) == 64 and loaded.identity()["vocab_size"] == len(vocab) == 22
