"""Room impulse responses: pyroomacoustics shoebox rooms, simulated once into a pool per split.

Each room file holds 3 channels from one microphone: the target talker, an interfering talker
and the loudspeaker (echo path). The training target keeps the early part of the response
(direct path + ``EARLY_MS``), the microphone gets all of it.

>>> import numpy as np
>>> spec = sample_room(np.random.default_rng(0), (0.3, 0.3))
>>> h = simulate_rirs(spec)                 # doctest: +SKIP
>>> h.shape[0]                              # doctest: +SKIP
3
"""
from __future__ import annotations

import numpy as np
import soundfile as sf

from ..errors import PocketVQEError
from .build import SR, BuildContext
from .manifest import SPLITS, CorpusEntry

CHANNELS = ("target", "interferer", "echo")
EARLY_MS = 50.0
MAX_ORDER = 60          # image-source order cap: keeps a 1 s RT60 room under ~1 s of CPU
RT60_RANGE = (0.1, 1.0)


def _inside(p: np.ndarray, dims: np.ndarray, margin: float) -> np.ndarray:
    return np.clip(p, margin, dims - margin)


def _at_distance(rng, origin, dist, dims, z_range):
    az = rng.uniform(0, 2 * np.pi)
    p = np.array([origin[0] + dist * np.cos(az), origin[1] + dist * np.sin(az), rng.uniform(*z_range)])
    return _inside(p, dims, 0.25)


def sample_room(rng: np.random.Generator, rt60_range: tuple[float, float] = RT60_RANGE) -> dict:
    """A random shoebox room with a wall absorption that gives the drawn RT60 (Sabine), and its positions."""
    import pyroomacoustics as pra
    rt60 = float(rng.uniform(*rt60_range))
    dims = np.array([rng.uniform(3, 10), rng.uniform(2.5, 8), rng.uniform(2.4, 3.5)])
    for _ in range(60):
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
            break
        except ValueError:      # too big a room for so short an RT60: shrink it, then lengthen RT60
            dims = np.maximum(dims * 0.9, [2.0, 2.0, 2.2])
            if np.all(dims <= [2.0, 2.0, 2.2]):
                rt60 += 0.02
    else:
        raise PocketVQEError(f"no shoebox room reaches RT60 {rt60:.2f} s")
    mic = np.array([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(0.8, 1.6)])
    target = _at_distance(rng, mic, rng.uniform(0.3, 2.5), dims, (1.1, 1.9))
    interferer = _at_distance(rng, mic, rng.uniform(1.0, 4.0), dims, (1.1, 1.9))
    speaker = _at_distance(rng, mic, rng.uniform(0.05, 0.5), dims, (mic[2] - 0.1, mic[2] + 0.1))
    return {"rt60": round(rt60, 4), "absorption": float(absorption), "max_order": int(min(order, MAX_ORDER)),
            "dims": dims.round(3).tolist(), "mic": mic.round(3).tolist(),
            "sources": [target.round(3).tolist(), interferer.round(3).tolist(), speaker.round(3).tolist()]}


def simulate_rirs(spec: dict, fs: int = SR) -> np.ndarray:
    """The room's impulse responses, shape (3, n): target, interferer, loudspeaker; trimmed at -60 dB energy."""
    import pyroomacoustics as pra
    room = pra.ShoeBox(spec["dims"], fs=fs, materials=pra.Material(spec["absorption"]), max_order=spec["max_order"],
                       air_absorption=False)
    for s in spec["sources"]:
        room.add_source(s)
    room.add_microphone(spec["mic"])
    room.compute_rir()
    rirs = [np.asarray(room.rir[0][k], dtype=np.float64) for k in range(len(spec["sources"]))]
    n = max(len(h) for h in rirs)
    h = np.stack([np.pad(r, (0, n - len(r))) for r in rirs])
    tail = np.cumsum((h ** 2)[:, ::-1], axis=1)[:, ::-1]            # energy remaining after each sample
    below = tail < 1e-6 * tail[:, :1]
    keep = int(np.max(np.where(below.any(axis=1), np.argmax(below, axis=1), n)))
    return h[:, :keep].astype(np.float32)


def direct_index(h: np.ndarray) -> int:
    """Sample of the direct path: the first sample within 6 dB of the peak."""
    a = np.abs(h)
    return int(np.argmax(a >= 0.5 * a.max()))


def early_part(h: np.ndarray, fs: int = SR, early_ms: float = EARLY_MS, fade_ms: float = 5.0) -> np.ndarray:
    """Direct path plus reflections up to ``early_ms`` after it, with a short half-cosine fade; zeros after."""
    d = direct_index(h)
    end = min(len(h), d + int(early_ms * fs / 1000))
    fade = min(int(fade_ms * fs / 1000), end)
    w = np.zeros(len(h), np.float32)
    w[:end] = 1.0
    if fade:
        w[end - fade:end] = 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    return (h * w).astype(np.float32)


def build_rooms(ctx: BuildContext) -> list[CorpusEntry]:
    """A pool of simulated rooms per split (distinct seeds: test rooms are never train rooms)."""
    import pyroomacoustics as pra
    entries = []
    total = sum(ctx.sizes.rooms)
    with ctx.bar(total=total, desc="rooms (pyroomacoustics)", unit="room") as bar:
        for s, (split, n) in enumerate(zip(SPLITS, ctx.sizes.rooms)):
            rng = np.random.default_rng([1234, s])
            for i in range(n):
                spec = sample_room(rng)
                h = simulate_rirs(spec)
                try:
                    spec["rt60_measured"] = round(float(pra.experimental.measure_rt60(h[0], fs=SR, decay_db=30)), 4)
                except Exception:       # too short a decay to fit: keep the nominal value only
                    spec["rt60_measured"] = None
                spec["channels"] = list(CHANNELS)
                out = ctx.out / split / f"room_{i:04d}.wav"
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(out), h.T, SR, subtype="FLOAT")
                entries.append(ctx.entry(out, kind="rir", source="pyroomacoustics", license="generated (CC0-1.0)",
                                         split=split, meta=spec))
                bar.update(1)
    return entries
