"""Bad input gets one line that names the problem and the fix (exit 1; usage errors 2), not a traceback."""
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
        assert main(["enhance", "--model", CKPT, "--mic", str(mic), "--out", str(ro / "y.wav")]) == 1
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
    assert rc == 1 and "a file is in the way" in err and str(blocker) in err
    assert blocker.read_text() == "a file, not a folder"          # nothing lost


def test_checkpoint_without_config(tmp_path, capsys):
    ckpt = torch.load(CKPT, weights_only=True)
    del ckpt["config"]
    bad = tmp_path / "noconfig.pt"
    torch.save(ckpt, bad)
    mic = tmp_path / "mic.wav"
    sf.write(mic, np.zeros(1600, np.float32), 16000)
    assert main(["enhance", "--model", str(bad), "--mic", str(mic), "--out", str(tmp_path / "y.wav")]) == 1
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
    assert rc == 1 and ("sample rate is 0 Hz" in err or "not readable audio" in err)
    assert not (tmp_path / "y.wav").exists()


# ---------------------------------------------------------------------------------------------- the table
# Every bad input to `enhance` ends in one `pocketvqe enhance: error: ...` line (exit 1; argparse's usage
# errors exit 2), no traceback, no output file, inputs unchanged. Each case builds its own bad input.
def _wav(path, x, sr=16000, subtype=None):
    sf.write(path, x, sr, subtype=subtype)
    return path


def _speech(n=8000, seed=0):
    return (0.05 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _nan_checkpoint(d):
    ckpt = torch.load(CKPT, weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    ckpt["state_dict"][name] = ckpt["state_dict"][name].clone().fill_(float("nan"))
    torch.save(ckpt, d / "nan.pt")
    return ["--model", str(d / "nan.pt")]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _malicious_checkpoint(d):
    torch.save({"format": "x", "config": {}, "state_dict": _Evil()}, d / "evil.pt")
    return ["--model", str(d / "evil.pt")]


def _truncated_wav(d):
    full = _wav(d / "full.wav", _speech(16000))
    (d / "mic.wav").write_bytes(full.read_bytes()[:100])            # the header promises 32,000 bytes
    return []


def _stereo(d):
    _wav(d / "mic.wav", np.stack([_speech(), _speech(seed=1)], axis=1))
    return []


def _nan_samples(d):
    x = _speech()
    x[100] = np.nan
    _wav(d / "mic.wav", x, subtype="FLOAT")
    return []


def _shorter_than_a_frame(d):
    _wav(d / "mic.wav", _speech(100))                                # 100 samples, the hop is 160
    return []


def _not_audio(d):
    (d / "mic.wav").write_text("these are not samples\n" * 50)
    return []


def _empty(d):
    (d / "mic.wav").write_bytes(b"")
    return []


def _missing_mic(d):
    (d / "mic.wav").unlink()
    return []


def _out_is_input(d):
    return ["--out", str(d / "mic.wav")]


def _unknown_model(d):
    (d / "m.onnx").write_bytes(b"onnx")
    return ["--model", str(d / "m.onnx")]


def _random_pte(d):
    (d / "m.pte").write_bytes(os.urandom(4096))
    return ["--model", str(d / "m.pte")]


def _random_pt2(d):
    (d / "m.pt2").write_bytes(os.urandom(4096))
    return ["--model", str(d / "m.pt2")]


def _random_checkpoint(d):
    (d / "r.pt").write_bytes(os.urandom(4096))
    return ["--model", str(d / "r.pt")]


def _wav_as_checkpoint(d):
    (d / "m.pt").write_bytes(_wav(d / "m.wav", _speech()).read_bytes())     # audio bytes under a checkpoint's name
    return ["--model", str(d / "m.pt")]


def _zero_threads(d):
    return ["--threads", "0"]


def _missing_enrollment(d):
    return ["--model", str(Path(CKPT).with_name("pvqe-s16.pt"))]


BAD_INPUTS = [
    ("missing mic", _missing_mic, "does not exist"),
    ("empty mic", _empty, "is empty (0 bytes)"),
    ("not audio", _not_audio, "is not readable audio"),
    ("truncated WAV", _truncated_wav, "is truncated: its WAV header promises 32,000 bytes"),
    ("stereo without --channel", _stereo, "has 2 channels: pick one with --channel N"),
    ("NaN samples", _nan_samples, "contains 1 NaN/Inf samples"),
    ("shorter than a frame", _shorter_than_a_frame, "shorter than one 10 ms frame"),
    ("--out is the mic", _out_is_input, "is one of the inputs"),
    ("NaN weights", _nan_checkpoint, "non-finite (NaN/Inf) weights"),
    ("malicious pickle", _malicious_checkpoint, "(posix.system) that a weights-only load refuses"),
    ("unknown model type", _unknown_model, "don't know how to run m.onnx"),
    ("random-bytes .pte", _random_pte, "is not an ExecuTorch program"),
    ("random-bytes .pt2", _random_pt2, "m.pt2"),
    ("random-bytes checkpoint", _random_checkpoint, "is corrupt or truncated"),
    ("a WAV named .pt", _wav_as_checkpoint, "is corrupt or truncated"),
    ("--threads 0", _zero_threads, "--threads 0: give 1 or more"),
    ("personalized model without enrollment", _missing_enrollment, "pass --enroll ENROLL.wav"),
]


@pytest.mark.parametrize("case, make, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gives_one_error_line(case, make, message, tmp_path, capsys):
    d = tmp_path
    _wav(d / "mic.wav", _speech())
    argv = {"--model": CKPT, "--mic": str(d / "mic.wav"), "--out": str(d / "out" / "y.wav")}
    extra = make(d)
    for k, v in zip(extra[::2], extra[1::2]):
        argv[k] = v
    _assert_refused(d, ["enhance", *[x for kv in argv.items() for x in kv]], case, message, capsys)


def _assert_refused(d, argv, case, message, capsys):
    """``main(argv)``: exit 1, one ``pocketvqe CMD: error:`` line holding ``message``, no traceback, nothing
    written under ``d/out``, the files in ``d`` (the inputs) unchanged."""
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1, (case, err)
    lines = [ln for ln in err.strip().splitlines() if ln.startswith(f"pocketvqe {argv[0]}: error:")]
    assert len(lines) == 1 and message in lines[0], (case, err)
    assert "Traceback" not in err
    assert not (d / "out").exists() or not any((d / "out").iterdir())            # nothing written
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before  # inputs unchanged


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["enhance", "--mic", "x.wav"])                                 # --model and --out missing
    assert exc.value.code == 2 and "required" in capsys.readouterr().err


def test_truncation_check_reads_only_the_header(tmp_path):
    from pocketvqe.audio import wav_shortfall
    full = _wav(tmp_path / "a.wav", _speech(1000))
    assert wav_shortfall(full) is None                                  # complete
    (tmp_path / "b.wav").write_bytes(full.read_bytes()[:-10])
    assert wav_shortfall(tmp_path / "b.wav") == (2000, 1990)            # cut by 10 bytes: refused
    assert wav_shortfall(_wav(tmp_path / "c.flac", _speech(1000))) is None   # not a WAV: libsndfile decides


# ------------------------------------------------------------------ export, parity and bench: the same contract
# Each case: (id, command line after `pocketvqe`, with {d} the case's folder and {ckpt} the shipped checkpoint,
# the message). They fail before any export or timing starts.
COMMAND_CASES = [
    ("export: audio as the checkpoint", "export --ckpt {d}/mic.wav --out {d}/out", "is corrupt or truncated"),
    ("export: --out is a file", "export --ckpt {ckpt} --out {d}/afile", "a file is in the way"),
    ("export: no bundled frames", "export --ckpt {ckpt} --bundle-frames 0 --out {d}/out", "--bundle-frames must be >= 1"),
    ("parity: missing program", "parity --pte {d}/nope.pte --mic {d}/mic.wav", "nope.pte"),
    ("parity: random-bytes program", "parity --pte {d}/r.pte --mic {d}/mic.wav", "is not an ExecuTorch program"),
    ("parity: unknown target", "parity --pte {d}/r.pte --mic {d}/mic.wav --target bogus", "unknown target 'bogus'"),
    ("bench: random-bytes program", "bench --pte {d}/r.pte", "is not an ExecuTorch program"),
    ("bench: zero threads", "bench --pte {d}/r.pte --threads 0", "threads=0 must be an integer >= 1"),
    ("bench: too few frames", "bench --pte {d}/r.pte --frames 10", "time at least 100 frames"),
    ("bench: emulated target", "bench --pte {d}/r.pte --target qemu-arm64", "qemu-arm64 is emulated"),
]


@pytest.mark.parametrize("case, line, message", COMMAND_CASES, ids=[c[0] for c in COMMAND_CASES])
def test_other_commands_give_one_error_line(case, line, message, tmp_path, capsys):
    d = tmp_path
    _wav(d / "mic.wav", _speech())
    (d / "afile").write_text("a file, not a folder")
    (d / "r.pte").write_bytes(os.urandom(4096))
    _assert_refused(d, line.format(d=d, ckpt=CKPT).split(), case, message, capsys)


def test_debug_shows_the_traceback_as_well(tmp_path, capsys):
    argv = ["enhance", "--model", str(tmp_path / "nope.pt"), "--mic", str(_wav(tmp_path / "mic.wav", _speech())),
            "--out", str(tmp_path / "y.wav")]
    assert main(argv) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("pocketvqe enhance: error: model file")


def test_an_interrupted_enhance_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    """Ctrl-C in the middle of a file: exit 130, one line, no output and no temporary file left."""
    import pocketvqe.commands.enhance as enhance_cmd
    from pocketvqe import inference

    mic = _wav(tmp_path / "mic.wav", _speech(16000 * 12))            # two 10 s blocks
    real, calls = inference.enhance_file, []

    def progress_then_ctrl_c(*a, progress=None, **kw):
        def tick(hops):
            calls.append(hops)
            raise KeyboardInterrupt                                  # after the first block was written
        return real(*a, progress=tick, **kw)

    monkeypatch.setattr(enhance_cmd, "enhance_file", progress_then_ctrl_c)
    out = tmp_path / "out"
    rc = main(["enhance", "--model", CKPT, "--mic", str(mic), "--out", str(out / "y.wav"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 130 and calls == [1000], (calls, err)               # interrupted after 10 s were enhanced
    assert "pocketvqe enhance: interrupted" in err and "Traceback" not in err
    assert list(out.iterdir()) == []                                 # the temporary file was removed


def test_a_terminated_enhance_leaves_no_partial_file(tmp_path):
    """SIGTERM (kill, a scheduler, a CI timeout) while a file is being written: exit 143, one line, and the
    output folder empty. Without the CLI's SIGTERM handler the process dies on the spot and leaves the
    temporary file (checked: removing the handler fails this test)."""
    import signal
    import subprocess
    import sys
    import time

    mic = _wav(tmp_path / "mic.wav", _speech(16000 * 120))                # 12 blocks of 10 s
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pocketvqe.cli", "enhance", "--model", CKPT, "--mic", str(mic),
                             "--out", str(out / "y.wav"), "--no-progress"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not any(out.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)                                             # until the temporary output exists
    assert proc.poll() is None, "enhance ended before it could be terminated: give it a longer file"
    time.sleep(0.5)                                                  # inside the block loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "pocketvqe enhance: terminated (SIGTERM): no partial file is left" in err and "Traceback" not in err
    assert list(out.iterdir()) == []
