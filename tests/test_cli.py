"""The command line: info, init, enhance, and every bad input gets a clear error with nothing written."""
import json

import numpy as np
import pytest
import soundfile as sf

from pocketvqe.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "dvqe-s16.pt"
    assert main(["init", "--config", "dvqe-s16", "--out", str(path), "--seed", "1"]) == 0
    return path


@pytest.fixture
def wav(tmp_path, speech_like):
    def write(name, seconds=1.0, sr=16000, channels=1, seed=0, data=None):
        x = speech_like(seconds, sr, seed) if data is None else data
        if channels > 1:
            x = np.stack([x] * channels, axis=1)
        path = tmp_path / name
        sf.write(path, x, sr)
        return path
    return write


def test_info_list_and_json(capsys):
    assert main(["info", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ["dvqe-s16", "dvqe16", "dvqe-s24", "dvqe24", "pvqe-s16", "pvqe16"]:
        assert name in out
    assert main(["info", "--config", "dvqe24", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["params"] - 7.5e6) / 7.5e6 < 0.1
    assert info["macs_per_frame"] > info["params"] // 2      # conv weights are reused across bins
    assert info["algorithmic_latency_ms"] == 20.0 and info["hop"] == 240 and info["n_fft"] == 480
    assert info["state"]["net.gru"] == [1, 552]


def test_unknown_config_is_a_clear_error(capsys):
    assert main(["info", "--config", "nope"]) == 1
    assert "unknown config 'nope'" in capsys.readouterr().err


def test_init_is_seeded(tmp_path):
    import torch
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    main(["init", "--config", "ns-s16", "--out", str(a), "--seed", "7"])
    main(["init", "--config", "ns-s16", "--out", str(b), "--seed", "7"])
    sa = torch.load(a, weights_only=True)["state_dict"]
    sb = torch.load(b, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("sr", [16000, 44100, 8000])
def test_enhance_any_rate_keeps_length_and_rate(ckpt, wav, tmp_path, sr):
    mic = wav("mic.wav", 1.3, sr)
    far = wav("far.wav", 1.3, 16000, seed=3)
    out = tmp_path / "out.wav"
    before = mic.read_bytes()
    assert main(["enhance", "--model", str(ckpt), "--mic", str(mic), "--far", str(far), "--out", str(out)]) == 0
    info_in, info_out = sf.info(mic), sf.info(out)
    assert info_out.samplerate == sr and info_out.frames == info_in.frames
    assert mic.read_bytes() == before                     # inputs are never modified


def test_enhance_matches_model_offline(ckpt, wav, tmp_path):
    from pocketvqe.models import load_checkpoint
    mic, far = wav("mic.wav", 0.8), wav("far.wav", 0.8, seed=4)
    out = tmp_path / "out.wav"
    main(["enhance", "--model", str(ckpt), "--mic", str(mic), "--far", str(far), "--out", str(out)])
    enh, _ = load_checkpoint(ckpt)
    want = enh.enhance(sf.read(mic, dtype="float32")[0], sf.read(far, dtype="float32")[0])
    got = sf.read(out, dtype="float32")[0]
    assert np.abs(got - np.clip(want, -1, 1)).max() < 2 / 32768       # 16-bit PCM rounding


def _fails(args, capsys, match, out=None):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert match in err, err
    if out is not None:
        assert not out.exists()                            # nothing written on error


def test_bad_inputs(ckpt, wav, tmp_path, capsys):
    out = tmp_path / "out.wav"
    base = ["enhance", "--model", str(ckpt), "--out", str(out)]
    _fails(base + ["--mic", str(tmp_path / "missing.wav")], capsys, "does not exist", out)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    _fails(base + ["--mic", str(empty)], capsys, "is empty", out)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    _fails(base + ["--mic", str(text)], capsys, "not readable audio", out)
    good = wav("good.wav", 1.0)
    truncated = tmp_path / "trunc.wav"
    truncated.write_bytes(good.read_bytes()[:40])
    _fails(base + ["--mic", str(truncated)], capsys, "mic file", out)
    stereo = wav("stereo.wav", 0.5, channels=2)
    _fails(base + ["--mic", str(stereo)], capsys, "--channel", out)
    assert main(base + ["--mic", str(stereo), "--channel", "1"]) == 0 and out.exists()
    out.unlink()
    nan = wav("nan.wav", data=np.array([0.1, np.nan, 0.2] * 1000, np.float32))
    sf.write(nan, np.array([0.1, np.nan, 0.2] * 1000, np.float32), 16000, subtype="FLOAT")
    _fails(base + ["--mic", str(nan)], capsys, "NaN/Inf", out)
    _fails(base + ["--mic", str(good), "--enroll", str(good)], capsys, "not personalized", out)
    _fails(["enhance", "--model", str(tmp_path / "m.onnx"), "--mic", str(good), "--out", str(out)], capsys,
           "don't know how to run", out)
    _fails(base + ["--mic", str(good), "--out", str(good)], capsys, "never overwritten")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(ckpt.read_bytes()[:1000])
    _fails(["enhance", "--model", str(corrupt), "--mic", str(good), "--out", str(out)], capsys, "corrupt", out)


def test_far_end_shorter_is_padded_with_warning_and_other_rate_resampled(ckpt, wav, tmp_path):
    mic = wav("mic.wav", 1.0)
    far = wav("far.wav", 0.5, 8000, seed=2)
    out = tmp_path / "out.wav"
    with pytest.warns(UserWarning, match="shorter than the mic"):
        assert main(["enhance", "--model", str(ckpt), "--mic", str(mic), "--far", str(far), "--out", str(out)]) == 0
    assert sf.info(out).frames == sf.info(mic).frames


def test_personalized_model_needs_enroll(tmp_path, wav, capsys):
    ck = tmp_path / "p.pt"
    main(["init", "--config", "pvqe-s16", "--out", str(ck)])
    mic, out = wav("mic.wav", 0.5), tmp_path / "o.wav"
    _fails(["enhance", "--model", str(ck), "--mic", str(mic), "--out", str(out)], capsys, "--enroll", out)
    enroll = wav("enroll.wav", 1.0, 22050, seed=9)
    assert main(["enhance", "--model", str(ck), "--mic", str(mic), "--enroll", str(enroll), "--out", str(out)]) == 0
