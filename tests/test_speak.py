"""`v2s speak`: a real GRID clip through the roi crop and a tiny V2A model to a wav of the clip's length."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.cli import main as cli_main
from pipeline.models.config import model_config
from pipeline.training.checkpoint import save_model_dir
from pipeline.training.tasks import V2ATask
from pipeline.training.trainer import Context, TrainConfig

GRID = Path(__file__).resolve().parents[2] / "shared" / "grid_samples"
LOSS = {"adversarial": 1.0, "feature_matching": 2.0, "mel_l1": 1.0, "stft": 1.0, "adversarial_start": 0,
        "spectral_convergence": 1.0}


def _model_dir(path: Path, family: str) -> Path:
    """A freshly initialised demo-size V2A model, exported the way train_v2a exports one."""
    task = V2ATask(Context(), TrainConfig(steps=1), model_config(family, "demo"), LOSS)
    state, config = task.export()
    rng = np.random.default_rng(0)
    mean = rng.standard_normal(256).astype(np.float32)
    config.update(crop={"height": 96, "width": 96, "channels": 1}, variant=f"{family}_test",
                  roi_params={"roi": {"size": 96, "gray": True}, "audio": {"fps": 25, "sample_rate": 16000}},
                  mean_speaker_embedding=(mean / np.linalg.norm(mean)).tolist())
    return save_model_dir(path, state, config)


@pytest.fixture
def clip():
    if not (GRID / "bbaf2n.mpg").is_file():
        pytest.skip(f"GRID samples not found at {GRID}")
    return GRID / "bbaf2n.mpg"


def test_speak_writes_the_clips_length_with_the_mean_voice(clip, tmp_path, capsys):
    model = _model_dir(tmp_path / "wavegan", "wavegan")
    out = tmp_path / "out.wav"
    assert cli_main(["speak", str(clip), "--model", str(model), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "mean training-speaker embedding" in captured.err
    info = sf.info(str(out))
    assert (info.frames, info.samplerate) == (75 * 640, 16000)
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["frames"] == 75 and summary["voice"] == "mean_training_speaker"


def test_speak_melspec_with_a_reference_voice_and_griffin_lim(clip, tmp_path, capsys):
    model = _model_dir(tmp_path / "melspec", "melspec")
    out = tmp_path / "out.wav"
    reference = GRID / "lbax4n.mpg"
    args = ["speak", str(clip), "--model", str(model), "-o", str(out), "--reference", str(reference),
            "--vocoder", str(tmp_path / "no-vocoder")]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert f"GE2E embedding of {reference}" in err and "vocoder griffin_lim" in err
    audio, sr = sf.read(str(out))
    assert sr == 16000 and len(audio) == 75 * 640 and np.abs(audio).max() > 0


def test_speak_explains_a_bad_model_dir(clip, tmp_path, capsys):
    assert cli_main(["speak", str(clip), "--model", str(tmp_path), "-o", str(tmp_path / "o.wav")]) == 1
    assert "not a model directory" in capsys.readouterr().err
