"""Run any pocketvqe model file on whole signals: a loader per file type, one contract for all.

A loaded model has ``cfg`` (ModelConfig), ``enroll(pcm) -> speaker`` and
``enhance(mic, far=None, speaker=None) -> np.ndarray`` at the model's sample rate (output aligned
to the input, same length). `pocketvqe enhance` and `pocketvqe eval` use :func:`load_model`.

>>> model = load_model("models/checkpoints/dvqe-s16.pt")
>>> y = enhance_file_arrays(model, mic, sr, far=far, far_sr=sr)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import check_signal, match_length, resample
from .errors import PocketVQEError


def _load_checkpoint(path: Path):
    from pocketvqe.models import load_checkpoint
    enh, _ = load_checkpoint(path)
    return enh


# suffix -> loader; the export and quant stages register .pte and .pt2 here.
LOADERS: dict[str, Callable[[Path], object]] = {".pt": _load_checkpoint}


def register_loader(suffix: str, loader: Callable[[Path], object]) -> None:
    LOADERS[suffix] = loader


def load_model(path: str | os.PathLike):
    path = Path(path)
    _register_builtin_loaders()
    loader = LOADERS.get(path.suffix)
    if loader is None:
        raise PocketVQEError(f"don't know how to run {path.name}: --model takes a checkpoint (.pt), "
                             f"a quantized model (.pt2) or an ExecuTorch program (.pte); known: {sorted(LOADERS)}")
    if not path.exists():
        raise PocketVQEError(f"model file {path} does not exist: check the path")
    return loader(path)


def _register_builtin_loaders() -> None:
    for mod in ("pocketvqe.quant.reference", "pocketvqe.export.runner"):
        try:
            __import__(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def pad_for_stream(cfg, mic: np.ndarray, far: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """mic (and far, model rate) zero-padded to whole hops covering ``len(mic)`` plus the algorithmic
    delay, for streaming a step over them; far is None for a model without a far end (silence when it
    has one and none is given). The aligned output is then ``y[delay:delay + len(mic)]``."""
    n = len(mic)
    total = n + cfg.algorithmic_latency_samples
    total += (-total) % cfg.hop
    x = np.pad(np.asarray(mic, np.float32), (0, total - n))
    if not cfg.has_far:
        return x, None
    f = np.zeros(total, np.float32)
    if far is not None:
        k = min(len(far), total)
        f[:k] = np.asarray(far, np.float32)[:k]
    return x, f


def enhance_arrays(model, mic: np.ndarray, sr: int, far: np.ndarray | None = None, far_sr: int | None = None,
                   enroll: np.ndarray | None = None, enroll_sr: int | None = None) -> np.ndarray:
    """Enhance ``mic`` (any rate) with ``model``; returns audio at ``sr``, same length, aligned."""
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
    y = model.enhance(x, f, speaker)
    y = resample(np.asarray(y, np.float32), rate, sr)[:len(mic)]
    return np.pad(y, (0, len(mic) - len(y)))          # resampling round-trips may lose a sample
