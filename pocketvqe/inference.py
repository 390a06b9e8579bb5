"""Run any pocketvqe model file on whole signals: a loader per file type, one contract for all.

A loaded model has ``cfg`` (ModelConfig), ``enroll(pcm) -> speaker`` and
``enhance(mic, far=None, speaker=None) -> np.ndarray`` at the model's sample rate (output aligned
to the input, same length). `pocketvqe enhance` and `pocketvqe eval` use :func:`load_model`.

>>> model = load_model("models/checkpoints/dvqe-s16.pt")          # doctest: +SKIP
>>> y = enhance_arrays(model, mic, sr, far=far, far_sr=sr)         # doctest: +SKIP
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pocketvqe.export.runner import ProgramModel
from pocketvqe.models import Enhancer, load_checkpoint
from pocketvqe.quant.reference import QuantizedModel

from .audio import audio_info, check_signal, format_for, match_length, read_blocks, resample
from .errors import PocketVQEError
from .fileio import atomic_path
from .signals import frames_of, run_step

LOADERS = {".pt": "a float checkpoint", ".pt2": "a quantized model (the PyTorch int8 reference)",
           ".pte": "an ExecuTorch program"}


def load_model(path: str | os.PathLike):
    """A model file -> an object with ``cfg``, ``enroll(pcm)`` and ``enhance(mic, far, speaker)``:
    a checkpoint (``.pt``: :class:`models.Enhancer`), a quantized model (``.pt2``:
    :class:`quant.reference.QuantizedModel`) or a device program (``.pte``: :class:`export.runner.ProgramModel`)."""
    path = Path(path)
    if path.suffix not in LOADERS:
        known = ", ".join(f"{k} ({v})" for k, v in LOADERS.items())
        raise PocketVQEError(f"don't know how to run {path.name}: --model takes {known}")
    if not path.exists():
        raise PocketVQEError(f"model file {path} does not exist: check the path")
    if path.suffix == ".pt":
        return load_checkpoint(path)[0]
    if path.suffix == ".pt2":
        return QuantizedModel(path)
    return ProgramModel(path)


def check_inputs(cfg, far: bool, enroll: bool) -> None:
    """Refuse a far end the model has no input for, or an enrollment it does not take / needs."""
    if far and not cfg.has_far:
        raise PocketVQEError(f"model {cfg.name} has no far-end input: drop --far (or use an echo-cancelling model)")
    if enroll and not cfg.personalized:
        raise PocketVQEError(f"model {cfg.name} is not personalized: drop --enroll (or use a pvqe model)")
    if cfg.personalized and not enroll:
        raise PocketVQEError(f"model {cfg.name} is personalized and needs the target speaker's voice: "
                             "pass --enroll ENROLL.wav (5-10 s of the speaker alone)")


def _at_least_a_frame(cfg, n_model: int, n: int, sr: int) -> None:
    """Refuse a mic signal of ``n`` samples at ``sr`` (``n_model`` at the model's rate) shorter than one hop."""
    if n_model < cfg.hop:
        raise PocketVQEError(f"the mic signal is {n} samples ({n / sr * 1000:.1f} ms), shorter than one "
                             f"{cfg.hop / cfg.sample_rate * 1000:g} ms frame of {cfg.name}: give a longer recording")


def speaker_of(model, enroll: np.ndarray, enroll_sr: int):
    """The model's speaker embedding of enrollment audio (any rate; at least 10 hops of it)."""
    cfg = model.cfg
    e = resample(check_signal(enroll, "enrollment signal"), enroll_sr, cfg.sample_rate)
    if len(e) < cfg.hop * 10:
        raise PocketVQEError(f"enrollment audio is too short ({len(e) / cfg.sample_rate:.2f} s): give at least 0.1 s, "
                             "ideally 5-10 s of the target speaker")
    return model.enroll(e)


def _stepper(model, speaker):
    """(initial state, run(mic, far, state) -> (enhanced, state)) streaming whole hops through ``model``."""
    if isinstance(model, Enhancer):
        spk = None if speaker is None else torch.as_tensor(speaker, dtype=torch.float32).reshape(1, -1)

        @torch.no_grad()
        def run(x, f, state):
            y, state = model(torch.from_numpy(x)[None], None if f is None else torch.from_numpy(f)[None], state, spk)
            return y[0].numpy(), state
        return model.init_state(1), run
    call = (lambda *a: model.method("forward").execute(list(a))) if isinstance(model, ProgramModel) else model.step
    spk = None if speaker is None else np.asarray(speaker, np.float32).reshape(-1)
    hop = model.cfg.hop

    def run_hops(x, f, state):
        with torch.no_grad():
            return run_step(call, frames_of(x, f, hop, spk, tensors=True), state)
    return model.init_state(), run_hops


def enhance_file(model, mic_path, out_path, *, far_path=None, speaker=None, channel: int | None = None,
                 block_seconds: float = 10.0, progress=None) -> int:
    """Enhance the file ``mic_path`` (at the model's rate) into ``out_path`` block by block, the state
    carried over: memory flat in the file's length, the output equal to :func:`enhance_arrays`'s (aligned,
    same length, 16-bit PCM). ``speaker``: the enrolled embedding of a personalized model. The output is
    written atomically; returns the samples written."""
    cfg = model.cfg
    rate, hop, delay = cfg.sample_rate, cfg.hop, cfg.algorithmic_latency_samples
    check_inputs(cfg, far_path is not None, speaker is not None)
    n = audio_info(mic_path, channel=channel, what="mic")[0].frames
    _at_least_a_frame(cfg, n, n, rate)
    block = max(hop, int(block_seconds * rate) // hop * hop)
    fars = read_blocks(far_path, block, channel=channel, what="far-end") if far_path else None
    state, run = _stepper(model, speaker)
    left = {"skip": delay, "written": 0, "far_short": False}
    carry = np.zeros(0, np.float32)
    carry_far = np.zeros(0, np.float32) if cfg.has_far else None
    with atomic_path(out_path) as tmp:
        with sf.SoundFile(str(tmp), "w", rate, 1, format=format_for(Path(out_path))) as out:
            def emit(y):
                d = min(left["skip"], len(y))
                y, left["skip"] = y[d:], left["skip"] - d
                y = y[:n - left["written"]]
                out.write(np.clip(y, -1.0, 1.0))
                left["written"] += len(y)

            def feed(x, f):
                nonlocal carry, carry_far, state
                buf = np.concatenate([carry, x])
                fbuf = None if carry_far is None else np.concatenate([carry_far, f])
                k = len(buf) // hop * hop
                if k:
                    y, state = run(buf[:k], None if fbuf is None else fbuf[:k], state)
                    emit(np.asarray(y, np.float32))
                    if progress is not None:
                        progress(k // hop)
                carry, carry_far = buf[k:], None if fbuf is None else fbuf[k:]

            for x in read_blocks(mic_path, block, channel=channel, what="mic"):
                f = None
                if cfg.has_far:                  # no far file: silence; a shorter one: padded with zeros
                    f = next(fars, None) if fars is not None else None
                    f = np.zeros(0, np.float32) if f is None else f
                    if len(f) < len(x):
                        left["far_short"] |= fars is not None
                        f = np.pad(f, (0, len(x) - len(f)))
                feed(x, f)
            tail = delay + (-(len(carry) + delay)) % hop           # the delay's worth of zeros, to whole hops
            feed(np.zeros(tail, np.float32), np.zeros(tail, np.float32) if cfg.has_far else None)
    if left["far_short"]:
        warnings.warn("far-end signal is shorter than the mic signal: padded with zeros", stacklevel=2)
    return left["written"]


def enhance_arrays(model, mic: np.ndarray, sr: int, far: np.ndarray | None = None, far_sr: int | None = None,
                   enroll: np.ndarray | None = None, enroll_sr: int | None = None, progress=None) -> np.ndarray:
    """Enhance ``mic`` (any rate) with ``model``; returns audio at ``sr``, same length, aligned.
    ``progress(hops)`` is called as the model streams (every model type streams: memory stays flat)."""
    cfg = model.cfg
    mic = check_signal(mic, "mic signal")
    check_inputs(cfg, far is not None, enroll is not None)
    rate = cfg.sample_rate
    x = resample(mic, sr, rate)
    _at_least_a_frame(cfg, len(x), len(mic), sr)
    f = None
    if far is not None:
        far = check_signal(far, "far-end signal")
        f = match_length(resample(far, far_sr or sr, rate), len(x))
    speaker = speaker_of(model, enroll, enroll_sr or sr) if enroll is not None else None
    y = model.enhance(x, f, speaker) if progress is None else model.enhance(x, f, speaker, progress=progress)
    y = resample(np.asarray(y, np.float32), rate, sr)[:len(mic)]
    return np.pad(y, (0, len(mic) - len(y)))          # resampling round-trips may lose a sample
