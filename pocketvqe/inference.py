"""Run any pocketvqe model file on whole signals: a loader per file type, one contract for all.

A loaded model has ``cfg`` (ModelConfig), ``enroll(pcm) -> speaker`` and
``enhance(mic, far=None, speaker=None) -> np.ndarray`` at the model's sample rate (output aligned
to the input, same length). `pocketvqe enhance` and `pocketvqe eval` use :func:`load_model`.

>>> model = load_model("models/checkpoints/dvqe-s16.pt")          # doctest: +SKIP
>>> y = enhance_arrays(model, mic, sr, far=far, far_sr=sr)         # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pocketvqe.export.runner import ProgramModel
from pocketvqe.models import load_checkpoint
from pocketvqe.quant.reference import QuantizedModel

from .audio import check_signal, match_length, resample
from .errors import PocketVQEError

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


def enhance_arrays(model, mic: np.ndarray, sr: int, far: np.ndarray | None = None, far_sr: int | None = None,
                   enroll: np.ndarray | None = None, enroll_sr: int | None = None, progress=None) -> np.ndarray:
    """Enhance ``mic`` (any rate) with ``model``; returns audio at ``sr``, same length, aligned.
    ``progress(hops)`` is called as the model streams (every model type streams: memory stays flat)."""
    cfg = model.cfg
    mic = check_signal(mic, "mic signal")
    if far is not None and not cfg.has_far:
        raise PocketVQEError(f"model {cfg.name} has no far-end input: drop --far (or use an echo-cancelling model)")
    if enroll is not None and not cfg.personalized:
        raise PocketVQEError(f"model {cfg.name} is not personalized: drop --enroll (or use a pvqe model)")
    if cfg.personalized and enroll is None:
        raise PocketVQEError(f"model {cfg.name} is personalized and needs the target speaker's voice: "
                             "pass --enroll ENROLL.wav (5-10 s of the speaker alone)")
    rate = cfg.sample_rate
    x = resample(mic, sr, rate)
    if len(x) < cfg.hop:
        raise PocketVQEError(f"the mic signal is {len(mic)} samples ({len(mic) / sr * 1000:.1f} ms), shorter than one "
                             f"{cfg.hop / rate * 1000:g} ms frame of {cfg.name}: give a longer recording")
    f = None
    if far is not None:
        far = check_signal(far, "far-end signal")
        f = match_length(resample(far, far_sr or sr, rate), len(x))
    speaker = None
    if enroll is not None:
        enroll = check_signal(enroll, "enrollment signal")
        e = resample(enroll, enroll_sr or sr, rate)
        if len(e) < cfg.hop * 10:
            raise PocketVQEError(f"enrollment audio is too short ({len(e) / rate:.2f} s): give at least 0.1 s, "
                                 "ideally 5-10 s of the target speaker")
        speaker = model.enroll(e)
    y = model.enhance(x, f, speaker) if progress is None else model.enhance(x, f, speaker, progress=progress)
    y = resample(np.asarray(y, np.float32), rate, sr)[:len(mic)]
    return np.pad(y, (0, len(mic) - len(y)))          # resampling round-trips may lose a sample
