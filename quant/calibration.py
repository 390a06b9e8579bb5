"""Calibration audio: per-hop step inputs from real simulated clips, every scenario the model serves.

Clips come from the ``valid`` split of the corpus through the simulator (as ``pocketvqe build``
and training get theirs); scenario ``k`` of clip ``k`` cycles over the served scenarios (noise,
reverb, echo single/double talk, and the interfering talker for personalized models, whose
speaker input is the float model's enrollment of ``clip.enroll``). Each clip starts from the
step's zero state: :class:`CalibFrames` remembers where the clips start.

>>> frames = calibration_frames(enhancer, n_clips=16, seconds=4.0)     # doctest: +SKIP
>>> len(frames), frames.summary["scenarios"]                           # doctest: +SKIP
(6400, {'noise': 4, 'reverb': 3, 'echo_fe_st': 3, 'echo_ne_st': 3, 'double_talk': 3})
>>> mic, far = frames[0]                                               # (hop,), (hop,)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from tqdm import tqdm

from pocketvqe.data import SimConfig, Simulator, corpus_root
from pocketvqe.errors import PocketVQEError
from pocketvqe.signals import frames_of
from pocketvqe.train.loop import served_scenarios


class CalibFrames(list):
    """A list of per-hop signal tuples ``(mic[hop], far[hop]?, speaker[D]?)`` plus ``starts`` (the
    frame index where each clip begins: the step's state is reset there) and ``summary``."""

    def __init__(self, frames=(), starts: Sequence[int] = (0,), summary: dict | None = None):
        super().__init__(frames)
        self.starts = sorted(set(int(s) for s in starts))
        self.summary = dict(summary or {})


def calibration_frames(enhancer, n_clips: int, seconds: float, seed: int = 0,
                       data: str | os.PathLike | None = None, progress: bool = False) -> CalibFrames:
    """Per-hop StreamStep signal inputs from ``n_clips`` simulated clips of ``seconds`` (valid split)."""
    cfg = enhancer.cfg
    if n_clips < 1:
        raise PocketVQEError(f"calibration needs at least one clip (n_clips={n_clips}): give --calib-clips >= 1")
    if seconds < 1.0:
        raise PocketVQEError(f"calibration clips of {seconds} s are too short: give at least 1 s")
    root = corpus_root(data)
    sim = Simulator(root, split="valid", seed=seed,
                    config=SimConfig(clip_seconds=float(seconds), personalized=cfg.personalized,
                                     enroll_seconds=(2.0, 5.0) if cfg.personalized else (0.5, 0.5)))
    scenarios = served_scenarios(cfg)
    hop = cfg.hop
    frames, starts, counts = [], [], {}
    for k in tqdm(range(n_clips), desc="calibration clips", unit="clip", disable=not progress, leave=False):
        scen = scenarios[k % len(scenarios)]
        m = sim.make(k, scenario=scen)
        counts[scen] = counts.get(scen, 0) + 1
        spk = enhancer.enroll(m.enroll).float().reshape(-1) if cfg.personalized else None
        starts.append(len(frames))
        frames += [tuple(sig) for sig in frames_of(m.mic, m.far if cfg.has_far else None, hop, spk, tensors=True)]
    summary = {"clips": n_clips, "frames": len(frames), "seconds_per_clip": float(seconds), "split": "valid",
               "seed": seed, "scenarios": counts, "corpus": str(root)}
    return CalibFrames(frames, starts, summary)


def check_calibration(frames: Sequence[Sequence[torch.Tensor]], n_signals: int, hop: int) -> CalibFrames:
    """Validate user-given calibration frames (non-empty, right arity and hop, finite audio)."""
    if frames is None or len(frames) == 0:
        raise PocketVQEError("the calibration set is empty: give real clips (calibration_frames(enhancer, "
                             "n_clips, seconds)) or --calib-clips >= 1")
    for i, f in enumerate(frames):
        if len(f) != n_signals:
            raise PocketVQEError(f"calibration frame {i} has {len(f)} signals, the step takes {n_signals} "
                                 "(mic, far if the model has a far end, speaker if personalized)")
        if f[0].numel() != hop:
            raise PocketVQEError(f"calibration frame {i}: mic has {f[0].numel()} samples, a hop is {hop}")
        for x in f:
            if not torch.isfinite(x).all():
                raise PocketVQEError(f"calibration frame {i} holds NaN or Inf audio: clean the calibration clips "
                                     "(a NaN range poisons every observer)")
    if isinstance(frames, CalibFrames):
        return frames
    summary = {"clips": 1, "frames": len(frames), "scenarios": {"user": 1}}
    return CalibFrames(frames, (0,), summary)


def clip_bounds(frames: CalibFrames) -> list[tuple[int, int]]:
    """[(start, end), ...] frame ranges of the clips."""
    starts = [s for s in frames.starts if s < len(frames)] or [0]
    return list(zip(starts, starts[1:] + [len(frames)]))

