"""`v2s speak`: a real GRID clip through the roi crop its model card records and a tiny model to a wav of the clip's length."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paths
import pytest
import soundfile as sf
from model_world import PARAMS, av2a_dir, model_dir

from pipeline.cli import main as cli_main
from pipeline.families import get_family
from pipeline.video.roi import roi_config

GRID = paths.GRID


@pytest.fixture
def clip():
    if not (GRID / "bbaf2n.mpg").is_file():
        paths.missing_grid()
    return GRID / "bbaf2n.mpg"


def test_speak_writes_the_clips_length_with_the_mean_voice(clip, tmp_path, capsys):
    model = model_dir(tmp_path / "wavegan", "wavegan")
    out = tmp_path / "out.wav"
    assert cli_main(["speak", str(clip), "--model", str(model), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "mean training-speaker embedding" in captured.err
    info = sf.info(str(out))
    assert (info.frames, info.samplerate) == (75 * 640, 16000)
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["frames"] == 75 and summary["voice"] == "mean_training_speaker" and summary["family"] == "wavegan"


def test_speak_melspec_with_a_reference_voice_and_griffin_lim(clip, tmp_path, capsys):
    model = model_dir(tmp_path / "melspec", "melspec")
    out = tmp_path / "out.wav"
    reference = GRID / "lbax4n.mpg"
    args = ["speak", str(clip), "--model", str(model), "-o", str(out), "--reference", str(reference),
            "--vocoder", "griffin_lim"]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert f"GE2E embedding of {reference}" in err and "vocoder griffin_lim" in err
    audio, sr = sf.read(str(out))
    assert sr == 16000 and len(audio) == 75 * 640 and np.abs(audio).max() > 0


def test_speak_lts_from_the_video_alone(clip, tmp_path, capsys):
    variant = get_family("lts").variant_class(True, True, 0.667)
    model = model_dir(tmp_path / "lts", "lts", kind="lts", variant=variant)
    out = tmp_path / "out.wav"
    assert cli_main(["speak", str(clip), "--model", str(model), "-o", str(out), "--vocoder", "griffin_lim"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["kind"], summary["family"], summary["samples"]) == ("lts", "lts", 75 * 640)
    assert sf.info(str(out)).frames == 75 * 640


def test_speak_crops_as_the_card_says_not_as_params_yaml(clip, tmp_path, capsys):
    # params.yaml crops 96 px; this model was trained on 64 px crops, so speak must crop 64 px
    assert roi_config(PARAMS).size == 96
    model = model_dir(tmp_path / "small", "wavegan", size=64)
    assert cli_main(["speak", str(clip), "--model", str(model), "-o", str(tmp_path / "o.wav")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples"] == 75 * 640


def test_speak_explains_a_badmodel_dir(clip, tmp_path, capsys):
    assert cli_main(["speak", str(clip), "--model", str(tmp_path), "-o", str(tmp_path / "o.wav")]) == 1
    assert "not a model directory" in capsys.readouterr().err
    a2a = model_dir(tmp_path / "a2a", "wavegan", kind="a2a")
    assert cli_main(["speak", str(clip), "--model", str(a2a), "-o", str(tmp_path / "o.wav")]) == 1
    assert "a2a model reading ['audio', 'spk']" in capsys.readouterr().err


def _with_noise_audio(clip: Path, out: Path) -> Path:
    """`clip` with its audio track replaced by white noise (the video stream copied as is)."""
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip), "-f", "lavfi", "-i",
                    "anoisesrc=color=white:amplitude=0.5:sample_rate=44100", "-map", "0:v", "-map", "1:a",
                    "-c:v", "copy", "-c:a", "mp2", "-shortest", str(out)], check=True)
    return out


def test_speak_chains_an_av2a_after_its_base_and_ignores_the_clips_audio(clip, tmp_path, capsys):
    base = model_dir(tmp_path / "v2a" / "wavegan_test", "wavegan")
    av2a = av2a_dir(tmp_path / "av2a", base)
    out, noisy_out = tmp_path / "out.wav", tmp_path / "noisy.wav"
    assert cli_main(["speak", str(clip), "--model", str(av2a), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "input audio from base v2a wavegan_test" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["kind"] == "av2a"
    audio, sr = sf.read(str(out))
    assert sr == 16000 and len(audio) == 75 * 640
    # the clip's own audio never reaches the model
    noisy = _with_noise_audio(clip, tmp_path / "noisy.mpg")
    assert cli_main(["speak", str(noisy), "--model", str(av2a), "-o", str(noisy_out)]) == 0
    assert np.array_equal(sf.read(str(noisy_out))[0], audio)
    # and the chain matters: the AV2A's output is not its base's
    base_out = tmp_path / "base.wav"
    assert cli_main(["speak", str(clip), "--model", str(base), "-o", str(base_out)]) == 0
    assert not np.array_equal(sf.read(str(base_out))[0], audio)


def test_speak_refuses_a_missing_or_changed_base(clip, tmp_path, capsys):
    base = model_dir(tmp_path / "v2a" / "wavegan_test", "wavegan")
    av2a = av2a_dir(tmp_path / "av2a", base)
    model_dir(base, "wavegan", size=88)  # the base retrained: other weights under the same name
    assert cli_main(["speak", str(clip), "--model", str(av2a), "-o", str(tmp_path / "o.wav")]) == 1
    err = capsys.readouterr().err.strip()
    assert "is not the one 'av2a_test' was trained on" in err.splitlines()[-1]  # the reason, in one line
    (base / "model.pt").unlink()
    assert cli_main(["speak", str(clip), "--model", str(av2a), "-o", str(tmp_path / "o.wav")]) == 1
    assert "base model of 'av2a_test' missing" in capsys.readouterr().err


def test_speak_refuses_a_vocoder_it_cannot_find_before_any_work(clip, tmp_path, capsys):
    model = model_dir(tmp_path / "models" / "v2a" / "melspec_test", "melspec")
    out = tmp_path / "out.wav"
    # mistyped --vocoder: an error, not Griffin-Lim
    assert cli_main(["speak", str(clip), "--model", str(model), "-o", str(out), "--vocoder", str(tmp_path / "vocodr")]) == 1
    assert "--vocoder: no HiFi-GAN weights in" in capsys.readouterr().err and not out.exists()
    # no --vocoder: the model's own (models/vocoder beside it), found from any working directory
    assert cli_main(["speak", str(clip), "--model", str(model), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"the model's own vocoder ({tmp_path / 'models' / 'vocoder'})" in err and "--vocoder griffin_lim" in err


@pytest.mark.parametrize("name, reason", [("out.mp3", "written as .wav; name it *.wav"), ("a_dir", "is a directory")])
def test_speak_refuses_an_output_that_would_not_get_a_wav(clip, tmp_path, capsys, name, reason, monkeypatch):
    (tmp_path / "a_dir.wav").mkdir()
    out = tmp_path / (name if name.endswith(".mp3") else "a_dir.wav")
    crops = []
    monkeypatch.setattr("pipeline.video.roi.crop_clip", lambda *a, **k: crops.append(1))
    assert cli_main(["speak", str(clip), "--model", str(tmp_path / "none"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1 and crops == []  # refused before loading or cropping


def test_speak_names_the_model_when_its_weights_are_bad(clip, tmp_path, capsys):
    import torch

    model = model_dir(tmp_path / "wavegan", "wavegan")
    state = torch.load(model / "model.pt", weights_only=True)
    torch.save({k: v[..., :1] if v.ndim > 1 else v for k, v in state.items()}, model / "model.pt")  # other widths
    assert cli_main(["speak", str(clip), "--model", str(model), "-o", str(tmp_path / "o.wav")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 400 and str(clip) not in err
    assert f"{model / 'model.pt'} does not fit the wavegan model its card describes" in err and "of another shape; first:" in err
    (model / "model.pt").write_bytes(b"truncated")
    assert cli_main(["speak", str(clip), "--model", str(model), "-o", str(tmp_path / "o.wav")]) == 1
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {model / 'model.pt'}" in err and str(clip) not in err


class _FrameLocal:
    """A model whose speech of a frame depends on that frame (and its synth samples) alone: chunked and
    whole synthesis must then agree to the sample. Records the frames of every call."""

    samples_per_frame = 640

    class card:
        name = "frame_local"

    def __init__(self):
        self.calls: list[int] = []

    def speak(self, batch, vocoder):
        video, n = batch["video"], batch["video"].shape[1]
        self.calls.append(n)
        wav = np.repeat(video.float().mean(dim=(2, 3, 4))[0].numpy(), self.samples_per_frame) + float(batch["spk"][0, 0])
        if "synth" in batch:
            wav = wav + batch["synth"][0].numpy()
        return [wav.astype(np.float32)]


def _inputs(n: int):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 255, (n, 4, 4, 1), dtype=np.uint8), np.full(8, 0.5, np.float32),
            rng.standard_normal(n * 640).astype(np.float32))


@pytest.mark.parametrize("from_file", [False, True])
def test_a_long_video_is_spoken_in_chunks_that_join_to_the_whole_clips_speech(from_file):
    from pipeline.inference.speak import speak_in_chunks, speech_file
    from pipeline.video.crop import FrameFile

    crops, spk, synth = _inputs(1003)
    model = _FrameLocal()
    (whole,) = speak_in_chunks(model, crops, spk, None, synth.reshape(1003, 640), chunk=2000)
    source, synth_source = crops, synth.reshape(1003, 640)
    if from_file:
        source, synth_source = FrameFile(crops.shape[1:]), FrameFile((640,), np.float32)
        for i in range(0, len(crops), 64):
            source.append(crops[i : i + 64])
            synth_source.append(synth.reshape(1003, 640)[i : i + 64])
    stored, peak = speech_file(speak_in_chunks(model, source, spk, None, synth_source, chunk=100, context=10), 640)
    assert stored.shape == (1003, 640) and np.array_equal(stored[0:1003].reshape(-1), whole)
    assert peak == np.abs(whole).max()
    assert model.calls[0] == 1003 and max(model.calls[1:]) == 120 and len(model.calls) == 1 + 11


def test_a_clip_that_fits_one_chunk_is_spoken_whole_as_the_pipeline_does():
    from pipeline.inference.speak import speak_in_chunks

    crops, spk, _ = _inputs(75)
    model = _FrameLocal()
    assert len(list(speak_in_chunks(model, crops, spk, None, chunk=50, context=13))) == 1
    assert model.calls == [75]
