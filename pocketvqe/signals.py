"""Signal primitives every stage shares: SNR, framing into hops, padding for a stream, running a step.

One home for each idea, so the export self-check, parity, the int8 reference and the report measure
and frame audio the same way.

>>> frames = frames_of(mic, far, hop=160)                     # [[mic[160], far[160]], ...]  # doctest: +SKIP
>>> y, state = run_step(step, frames, step.init_state())      # enhanced hops concatenated   # doctest: +SKIP
>>> snr_db(y_float, y_int8)                                    # dB; inf when identical       # doctest: +SKIP
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


def snr_db(ref, test) -> float:
    """10 log10(sum ref^2 / sum (ref - test)^2) in float64; ``inf`` when the two are identical, ``-inf``
    when the reference is silent and the test is not."""
    ref, test = np.asarray(ref, np.float64).reshape(-1), np.asarray(test, np.float64).reshape(-1)
    noise = float(np.sum((ref - test) ** 2))
    if noise == 0.0:
        return float("inf")
    signal = float(np.sum(ref ** 2))
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def frames_of(mic, far=None, hop: int = 160, speaker=None, tensors: bool = False) -> list[list]:
    """Whole signals (model rate) -> per-hop step signal lists ``[mic[hop], far[hop]?, speaker[D]?]``;
    a trailing part shorter than a hop is dropped (pad first with :func:`pad_for_stream`). With
    ``tensors`` the items are float32 torch tensors (the speaker one shared by every frame), else
    float32 numpy arrays."""
    mic = np.asarray(mic, np.float32).reshape(-1)
    far = None if far is None else np.asarray(far, np.float32).reshape(-1)
    spk = None if speaker is None else np.asarray(speaker, np.float32).reshape(-1)
    conv = (lambda a: torch.from_numpy(np.ascontiguousarray(a))) if tensors else (lambda a: a.copy())
    spk = None if spk is None else conv(spk)
    out = []
    for t in range(len(mic) // hop):
        sig = [conv(mic[t * hop:(t + 1) * hop])]
        if far is not None:
            sig.append(conv(far[t * hop:(t + 1) * hop]))
        if spk is not None:
            sig.append(spk)
        out.append(sig)
    return out


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


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, np.float32))


@torch.no_grad()
def run_step(step: Callable, frames: Sequence[Sequence], state: Sequence[torch.Tensor],
             on_frame: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[torch.Tensor]]:
    """Thread ``state`` through a step callable ``step(*signals, *state) -> (enhanced, *state)`` (an
    eager StreamStep, an int8 GraphModule or a loaded program method) over ``frames`` -> (the enhanced
    hops concatenated, the final state). ``frames`` items may be numpy arrays or tensors."""
    state, out, n = list(state), None, 0
    for i, sig in enumerate(frames):
        res = step(*(_tensor(s) for s in sig), *state)
        y = np.asarray(res[0], np.float32).reshape(-1)
        if out is None:              # one array for the whole output, written in place: a hop's result
            out = np.empty(len(frames) * len(y), np.float32)      # may share its buffer with the state
        out[n:n + len(y)] = y
        n += len(y)
        state = list(res[1:])
        if on_frame is not None:
            on_frame(i)
    return (out[:n] if out is not None else np.zeros(0, np.float32)), state


def dithered(frames, lsb: float = 1.0, seed: int = 0) -> list[list]:
    """``frames`` with +-``lsb`` 16-bit steps of random sign added to the mic (each frame's first
    input; numpy arrays or tensors, as given): a change no one hears (-96 dBFS for 1 LSB) that still
    flips some of an int8 program's roundings. The frames given are not modified."""
    rng = np.random.default_rng(seed)
    step = np.array([-lsb / 32768.0, lsb / 32768.0], np.float32)
    out = []
    for sig in frames:
        mic = np.asarray(sig[0], np.float32)
        new = (mic + rng.choice(step, size=mic.shape)).astype(np.float32)
        out.append([torch.from_numpy(new) if isinstance(sig[0], torch.Tensor) else new, *sig[1:]])
    return out
