"""Parity and latency measurements shared by `pocketvqe build`, `parity` and `bench`."""
from __future__ import annotations

import time

import numpy as np
import torch


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    noise = np.sum((ref - test) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref ** 2) / noise))


def frames_of(mic: np.ndarray, far: np.ndarray | None, hop: int, speaker: np.ndarray | None = None) -> list[list[np.ndarray]]:
    """Split signals into per-hop step inputs (mic[hop], far[hop], speaker[D])."""
    n = len(mic) // hop
    out = []
    for t in range(n):
        sig = [mic[t * hop:(t + 1) * hop].astype(np.float32)]
        if far is not None:
            sig.append(far[t * hop:(t + 1) * hop].astype(np.float32))
        if speaker is not None:
            sig.append(speaker.astype(np.float32))
        out.append(sig)
    return out


@torch.no_grad()
def run_reference(step_fn, frames: list[list[np.ndarray]], init_state: list[torch.Tensor]) -> np.ndarray:
    """Thread state through a PyTorch step (eager StreamStep or int8 GraphModule); concat outputs."""
    state, ys = list(init_state), []
    for sig in frames:
        res = step_fn(*(torch.from_numpy(s) for s in sig), *state)
        ys.append(res[0].numpy())
        state = list(res[1:])
    return np.concatenate(ys)


@torch.no_grad()
def time_eager(step_fn, frames, init_state, warmup: int = 50) -> np.ndarray:
    """Per-frame latency (us) of a PyTorch step, state threaded."""
    state = list(init_state)
    inputs = [[torch.from_numpy(s) for s in sig] for sig in frames]
    times = []
    for i, sig in enumerate(inputs):
        t0 = time.perf_counter_ns()
        res = step_fn(*sig, *state)
        dt = time.perf_counter_ns() - t0
        state = list(res[1:])
        if i >= warmup:
            times.append(dt / 1000.0)
    return np.asarray(times)


def latency_stats(per_frame_us: np.ndarray, hop_ms: float) -> dict:
    us = np.asarray(per_frame_us, np.float64)
    p50 = float(np.percentile(us, 50))
    return {"frames": int(us.size), "p50_us": p50, "p90_us": float(np.percentile(us, 90)),
            "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max()), "mean_us": float(us.mean()),
            "rtf": p50 / (hop_ms * 1000.0), "deadline_misses": int(np.sum(us > hop_ms * 1000.0))}
