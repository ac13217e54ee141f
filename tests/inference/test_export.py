"""`v2s export`: a trained model as a folder that `v2s speak` loads on another machine, with a Hugging Face model card."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import paths
import pytest
import soundfile as sf
from eval_world import eval_world_fixture  # noqa: F401
from huggingface_hub import ModelCard as HubModelCard
from model_world import AUDIO, MEL, av2a_dir, model_dir

from pipeline.cli import main as cli_main
from pipeline.config import to_plain
from pipeline.inference.card import ModelCard
from pipeline.inference.export import model_card
from pipeline.inference.model_dir import save_model_dir, sha256_file
from pipeline.layout import Layout
from pipeline.models.config import hifigan_config
from pipeline.models.hifigan import HiFiGAN


@pytest.fixture
def clip():
    if not (paths.GRID / "bbaf2n.mpg").is_file():
        paths.missing_grid()
    return paths.GRID / "bbaf2n.mpg"


def _vocoder(path: Path) -> Path:
    """A freshly initialised HiFi-GAN with the card the vocoder stage writes."""
    cfg = hifigan_config("demo", MEL)
    card = ModelCard("vocoder", None, "hifigan", ("mel",), {"audio": to_plain(AUDIO)}, {}, {}, {},
                     {"mel": to_plain(MEL)}, to_plain(cfg))
    return save_model_dir(path, HiFiGAN(cfg).state_dict(), card)


def _evaluated(eval_world, root: Path, name: str) -> None:
    """Evaluation outputs under `root` as the pipeline writes them, for system `name` (the world's gl_clean's)."""
    world = eval_world["layout"]
    (root / "reports" / "metrics").mkdir(parents=True)
    shutil.copy(world.metrics_details("gl_clean"), Layout(root).metrics_details(name))
    shutil.copy(world.metrics_details("ground_truth"), Layout(root).metrics_details("ground_truth"))
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "roi").symlink_to(world.roi, target_is_directory=True)


def test_an_exported_melspec_model_speaks_elsewhere_and_its_card_carries_its_scores(eval_world, clip, tmp_path,
                                                                                     monkeypatch, capsys):
    checkout = tmp_path / "checkout"
    model = model_dir(checkout / "models" / "v2a" / "melspec_test", "melspec")
    _vocoder(checkout / "models" / "vocoder")
    _evaluated(eval_world, checkout, "melspec_test")
    monkeypatch.chdir(checkout)
    assert cli_main(["export", "models/v2a/melspec_test", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "card.json", "model.pt", "vocoder"]
    assert sha256_file(tmp_path / "out" / "model.pt") == sha256_file(model / "model.pt")

    # the model card: Hugging Face metadata whose model-index holds the evaluation's own numbers
    text = (tmp_path / "out" / "README.md").read_text()
    hub = HubModelCard(text)
    details = json.loads(eval_world["layout"].metrics_details("gl_clean").read_text())
    floor = json.loads(eval_world["layout"].metrics_details("ground_truth").read_text())
    results = {(r.dataset_split, r.metric_name): r.metric_value for r in hub.data.eval_results}
    assert results[("test", "ESTOI")] == details["test"]["estoi"]
    assert results[("unseen", "PESQ narrow-band at 8 kHz")] == details["unseen"]["pesq_nb8k"]
    wer = next(k for k in results if k[0] == "test" and k[1].startswith("WER % (in-domain"))
    assert results[wer] == details["test"]["wer_ctc"] and f"ground truth: {floor['test']['wer_ctc']}%" in wer[1]
    assert hub.data.license == "mit" and "video-to-speech" in hub.data.tags
    assert "demo corpus" in text and "not comparable to any paper" in text and "v2s speak VIDEO --model" in text

    # another machine: the checkout is gone, the folder moved; speak finds the bundled vocoder
    moved = tmp_path / "elsewhere" / "melspec_test"
    moved.parent.mkdir()
    shutil.move(tmp_path / "out", moved)
    shutil.rmtree(checkout)
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert cli_main(["speak", str(clip), "--model", str(moved), "-o", "x.wav"]) == 0
    assert f"vocoder hifigan:{moved / 'vocoder'}" in capsys.readouterr().err
    assert sf.info("x.wav").frames == 75 * 640


def test_an_exported_av2a_carries_its_base_and_says_when_it_was_never_evaluated(clip, tmp_path, monkeypatch, capsys):
    base = model_dir(tmp_path / "models" / "v2a" / "wavegan_test", "wavegan")
    av2a = av2a_dir(tmp_path / "models" / "av2a" / "av2a_test", base)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "empty_out"
    out.mkdir()  # an empty folder may be named
    assert cli_main(["export", str(av2a), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "base", "card.json", "model.pt"]  # wavegan: no vocoder
    text = (out / "README.md").read_text()
    assert "Not evaluated" in text and "model-index" not in text and "bundled in `base/`" in text
    shutil.rmtree(tmp_path / "models")
    assert cli_main(["speak", str(clip), "--model", str(out), "-o", str(tmp_path / "x.wav")]) == 0
    assert "input audio from base v2a wavegan_test" in capsys.readouterr().err


def test_export_refuses_before_writing_anything(tmp_path, monkeypatch, capsys):
    model = model_dir(tmp_path / "models" / "v2a" / "wavegan_test", "wavegan")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    assert cli_main(["export", str(model), "taken"]) == 1
    assert "taken exists and is not an empty folder" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "nothing"), "new"]) == 1
    assert "no model card" in capsys.readouterr().err and not (tmp_path / "new").exists()
    av2a = av2a_dir(tmp_path / "models" / "av2a" / "av2a_test", model)
    model_dir(model, "wavegan", size=88)  # the base retrained: other weights under the same name
    assert cli_main(["export", str(av2a), "new"]) == 1
    assert "is not the one 'av2a_test' was trained on" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_the_card_shows_the_wer_of_every_asr_the_evaluation_ran():
    card = ModelCard("v2a", "melspec", "m", ("video", "spk"), {}, {}, {}, {}, {}, {})
    details = {"test": {"n_scored": 8, "estoi": 0.1, "wer_sphinx": 50.0, "wer_whisper": 40.0},
               "versions": {"corpus": "demo", "protocol": "demo",
                            "asr": {"sphinx": {"name": "pocketsphinx"}, "whisper": {"name": "Whisper (w)"}}}}
    text = model_card(card, details, {"test": {"wer_sphinx": 20.0, "wer_whisper": 5.0}}, {}, {".": "0" * 64})
    assert "| WER sphinx % (ground truth) | WER whisper % (ground truth) |" in text and "| 50.0 (20.0) | 40.0 (5.0) |" in text
    results = {r.metric_name: r.metric_value for r in HubModelCard(text).data.eval_results}
    assert results["WER % (Whisper (w); ground truth: 5.0%)"] == 40.0
