"""Bad input gets one line that names the problem and the fix (exit 2), not a traceback."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pocketvqe.cli import main

CKPT = str(Path(__file__).resolve().parent.parent / "models" / "checkpoints" / "dvqe-s16.pt")


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_output_into_a_read_only_folder(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the read-only case is tested through a file in the way")
    mic = tmp_path / "mic.wav"
    sf.write(mic, np.zeros(1600, np.float32), 16000)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["enhance", "--model", CKPT, "--mic", str(mic), "--out", str(ro / "y.wav")]) == 2
    finally:
        ro.chmod(0o700)
    assert "cannot use" in _err(capsys)


def test_output_folder_that_is_a_file(tmp_path, capsys):
    mic = tmp_path / "mic.wav"
    sf.write(mic, (0.01 * np.random.default_rng(0).standard_normal(3200)).astype(np.float32), 16000)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    rc = main(["enhance", "--model", CKPT, "--mic", str(mic), "--out", str(blocker / "y.wav")])
    err = _err(capsys)
    assert rc == 2 and "a file is in the way" in err and str(blocker) in err
    assert blocker.read_text() == "a file, not a folder"          # nothing lost


def test_checkpoint_without_config(tmp_path, capsys):
    ckpt = torch.load(CKPT, weights_only=True)
    del ckpt["config"]
    bad = tmp_path / "noconfig.pt"
    torch.save(ckpt, bad)
    mic = tmp_path / "mic.wav"
    sf.write(mic, np.zeros(1600, np.float32), 16000)
    assert main(["enhance", "--model", str(bad), "--mic", str(mic), "--out", str(tmp_path / "y.wav")]) == 2
    assert "has no 'config'" in _err(capsys)
    assert not (tmp_path / "y.wav").exists()


def test_wav_header_with_zero_rate(tmp_path, capsys):
    mic = tmp_path / "mic.wav"
    sf.write(mic, np.zeros(1600, np.float32), 16000)
    data = bytearray(mic.read_bytes())
    data[24:28] = (0).to_bytes(4, "little")                   # the fmt chunk's sample rate field
    mic.write_bytes(bytes(data))
    rc = main(["enhance", "--model", CKPT, "--mic", str(mic), "--out", str(tmp_path / "y.wav")])
    err = _err(capsys)
    assert rc == 2 and ("sample rate is 0 Hz" in err or "not readable audio" in err)
    assert not (tmp_path / "y.wav").exists()
