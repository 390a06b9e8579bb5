"""Synthetic noise: white, pink, brown, mains hum and babble (made from the split's own speakers).

>>> import numpy as np
>>> x = colored_noise(np.random.default_rng(0), 16000, exponent=1.0)    # pink
>>> x.shape, x.dtype
((16000,), dtype('float32'))
"""
from __future__ import annotations

import numpy as np

from .build import SR, BuildContext, load_mono, write_pcm16
from .manifest import SPLITS, CorpusEntry, Manifest

LICENSE = "generated (CC0-1.0)"


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), above 20 Hz, RMS 0.1."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1 / SR)
    spec *= np.where(f < 20, 0.0, 1.0 / np.maximum(f, 20) ** (exponent / 2))
    x = np.fft.irfft(spec, n)
    return (0.1 * x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def hum(rng: np.random.Generator, n: int, mains: float) -> np.ndarray:
    """Mains hum: harmonics of ``mains`` Hz with random decaying amplitudes, a slow drift, and a little hiss."""
    t = np.arange(n) / SR
    f0 = mains * (1 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(rng.uniform(0.2, 1.0) / k ** rng.uniform(0.5, 1.5) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
            for k in range(1, 12))
    x = x / np.sqrt(np.mean(x ** 2)) + 0.05 * rng.standard_normal(n)
    return (0.1 * x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def babble(rng: np.random.Generator, n: int, talkers: list[list[np.ndarray]]) -> np.ndarray:
    """Sum of talker streams (each: that talker's utterances back to back, equal RMS), RMS 0.1."""
    out = np.zeros(n, np.float32)
    for utts in talkers:
        stream, order = [], rng.permutation(len(utts))
        total, k = 0, 0
        while total < n + SR:
            u = utts[order[k % len(order)]]
            u = u / (np.sqrt(np.mean(u ** 2)) + 1e-9)
            stream.append(u)
            stream.append(np.zeros(int(rng.uniform(0.05, 0.3) * SR), np.float32))
            total += len(u) + len(stream[-1])
            k += 1
        s = np.concatenate(stream)
        off = rng.integers(0, len(s) - n)
        out += s[off:off + n]
    return (0.1 * out / (np.sqrt(np.mean(out ** 2)) + 1e-12)).astype(np.float32)


def build_synthetic(ctx: BuildContext, speech: Manifest) -> list[CorpusEntry]:
    """Per split: white, pink, brown, 50 and 60 Hz hum, and babble of 4-8 of that split's talkers."""
    entries = []
    for s, split in enumerate(SPLITS):
        rng = np.random.default_rng([4321, s])
        seconds = ctx.sizes.synthetic_seconds if split == "train" else max(2.0, ctx.sizes.synthetic_seconds / 2)
        n = int(seconds * SR)
        made = {"white": colored_noise(rng, n, 0.0), "pink": colored_noise(rng, n, 1.0),
                "brown": colored_noise(rng, n, 2.0), "hum50": hum(rng, n, 50.0), "hum60": hum(rng, n, 60.0)}
        by_spk: dict[str, list] = {}
        for e in speech.select("speech", split):
            by_spk.setdefault(e.speaker, []).append(e)
        if by_spk:
            spks = sorted(by_spk)
            for b in range(3 if split == "train" else 1):
                chosen = rng.choice(len(spks), size=min(len(spks), int(rng.integers(4, 9))), replace=False)
                talkers = []
                for c in chosen:
                    pool = by_spk[spks[c]]
                    pick = rng.choice(len(pool), size=min(len(pool), 12), replace=False)
                    talkers.append([load_mono(speech.path_of(pool[j])) for j in pick])
                made[f"babble{b}"] = babble(rng, n, talkers)
        for name, x in made.items():
            out = write_pcm16(ctx.out / split / f"{name}.wav", x)
            entries.append(ctx.entry(out, kind="noise", source="synthetic", license=LICENSE, split=split,
                                     meta={"type": name.rstrip("0123456789") if name.startswith("babble") else name}))
    return entries
