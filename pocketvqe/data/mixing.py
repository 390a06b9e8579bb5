"""Signal helpers for the simulator: levels, ratios, loudspeaker saturation, fitting to a length.

Levels of speech are *active* levels (RMS over 20 ms frames within 40 dB of the loudest), so
pauses do not lower them; noise levels are plain RMS. SNR, SER and SIR in ``Mixture.meta``
follow these definitions (``ratio_db``).

>>> import numpy as np
>>> x = np.r_[np.zeros(16000), np.ones(16000)].astype(np.float32)
>>> round(float(level_db(x)), 2), round(float(level_db(x, active=False)), 2)
(0.0, -3.01)
"""
from __future__ import annotations

import numpy as np
from scipy.signal import oaconvolve

SR = 16000
FRAME = 320     # 20 ms


def rms(x: np.ndarray, active: bool = True) -> float:
    """RMS; ``active`` counts only 20 ms frames within 40 dB of the loudest frame."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return 0.0
    if not active or x.size < 2 * FRAME:
        return float(np.sqrt(np.mean(x ** 2)))
    n = x.size // FRAME * FRAME
    e = np.mean(x[:n].reshape(-1, FRAME) ** 2, axis=1)
    if e.max() <= 0:
        return 0.0
    return float(np.sqrt(np.mean(e[e >= e.max() * 1e-4])))


def level_db(x: np.ndarray, active: bool = True) -> float:
    """Level in dB re full scale (``-inf`` for silence)."""
    r = rms(x, active)
    return 20 * np.log10(r) if r > 0 else -np.inf


def ratio_db(a: np.ndarray, b: np.ndarray, b_active: bool = True) -> float:
    """Level of ``a`` (active) over level of ``b`` in dB: SNR (b noise: ``b_active=False``), SER, SIR."""
    return level_db(a) - level_db(b, active=b_active)


def scale_to_ratio(ref: np.ndarray, x: np.ndarray, ratio: float, x_active: bool = True) -> np.ndarray:
    """``x`` scaled so that ``ratio_db(ref, x) == ratio``."""
    r = rms(x, x_active)
    if r <= 0:
        return x
    return (x * (rms(ref) / r * 10 ** (-ratio / 20))).astype(np.float32)


def set_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled to an active level of ``dbfs``."""
    r = rms(x)
    return x if r <= 0 else (x * (10 ** (dbfs / 20) / r)).astype(np.float32)


def fit(rng: np.random.Generator, x: np.ndarray, n: int) -> np.ndarray:
    """A random ``n``-sample crop of ``x``, or ``x`` looped from a random start when shorter."""
    if len(x) >= n:
        off = int(rng.integers(0, len(x) - n + 1))
        return x[off:off + n]
    reps = int(np.ceil((n + len(x)) / len(x)))
    off = int(rng.integers(0, len(x)))
    return np.tile(x, reps)[off:off + n]


def convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Causal convolution cut to ``len(x)``."""
    return oaconvolve(x, h)[: len(x)].astype(np.float32)


def loudspeaker(rng: np.random.Generator, x: np.ndarray, p_nonlinear: float) -> tuple[np.ndarray, str]:
    """A small loudspeaker: none, hard clipping, or memoryless sigmoid saturation (as used for AEC data).

    The sigmoid model: b(x) = 1.5 x - 0.3 x^2 on x scaled to peak 1, then 4 / (1 + exp(-a b)) - 2, a in [1.5, 4].
    """
    if rng.random() >= p_nonlinear:
        return x, "none"
    peak = float(np.max(np.abs(x))) or 1.0
    if rng.random() < 0.5:
        c = peak * rng.uniform(0.3, 0.8)
        return np.clip(x, -c, c), "hard_clip"
    u = x / peak
    b = 1.5 * u - 0.3 * u ** 2
    a = rng.uniform(1.5, 4.0)
    y = 4.0 / (1.0 + np.exp(-a * b)) - 2.0
    return (y * peak).astype(np.float32), "sigmoid"
