"""Latency and fidelity measurements shared by `pocketvqe build`, `parity` and `bench` (SNR, framing and
the step loop live in :mod:`pocketvqe.signals`)."""
from __future__ import annotations

import math
import resource
from collections.abc import Mapping

import numpy as np

from pocketvqe.audio import resample
from pocketvqe.errors import PocketVQEError
from pocketvqe.metrics import pesq_wb

from .targets.base import stack_frames


def latency_stats(per_frame_us: np.ndarray, hop_ms: float) -> dict:
    us = np.asarray(per_frame_us, np.float64)
    p50 = float(np.percentile(us, 50))
    return {"frames": int(us.size), "p50_us": p50, "p90_us": float(np.percentile(us, 90)),
            "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max()), "mean_us": float(us.mean()),
            "rtf": p50 / (hop_ms * 1000.0), "deadline_misses": int(np.sum(us > hop_ms * 1000.0))}


def max_abs_diff(ref: np.ndarray, test: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(ref, np.float64) - np.asarray(test, np.float64))))


def pesq_vs(ref: np.ndarray, test: np.ndarray, sample_rate: int) -> float | None:
    """Wide-band PESQ of ``test`` against ``ref`` (resampled to 16 kHz); None where PESQ is undefined
    (no utterance found, silent output, ``pesq`` not installed)."""
    try:
        ref16, test16 = (resample(np.asarray(x, np.float32), sample_rate, 16000) for x in (ref, test))
        value = pesq_wb(test16, ref16)
    except PocketVQEError:
        return None
    return None if math.isnan(value) else float(value)


def rss_kb() -> tuple[int | None, int | None]:
    """(current RSS, peak RSS) of this process in KiB from /proc/self/status (Linux), else getrusage's peak."""
    now = peak = None
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                now = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    except OSError:
        pass
    if peak is None:
        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return now, peak


def speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like signal (harmonic bursts with a pitch glide, plus noise): input for
    timing runs when no recording is given (latency does not depend on what the audio says)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = (np.sin(2 * np.pi * 2.5 * t) > -0.2).astype(float)
    return (0.1 * voiced * env + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def stacked_inputs(frames) -> dict[str, np.ndarray]:
    """Frames (per-frame input lists as :func:`frames_of` gives, or a mapping of stacked inputs) as
    the targets take them: {name: array of shape (n_frames, *input_shape)}."""
    return dict(frames) if isinstance(frames, Mapping) else {f"in{k}": a for k, a in enumerate(stack_frames(frames))}
