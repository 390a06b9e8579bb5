"""What every target shares: the ``Target`` protocol, ``RunResult``, frame packing and the job folder.

A *run* executes one method of a ``.pte`` once per frame and threads state through it::

    inputs of frame t  = [x_0[t], x_1[t], ..., state_0, ..., state_{n_state-1}]
    outputs of frame t = [y_0[t], y_1[t], ..., new_state_0, ..., new_state_{n_state-1}]

State inputs are the *last* ``n_state`` method inputs and state outputs the *last* ``n_state``
method outputs; state output k of frame t becomes state input k of frame t+1.

Remote targets (qemu-arm64, ssh, adb) get a *job folder*::

    job.json            {"method", "n_state", "n_frames", "time_it", "warmup", ...}
    model.pte
    in_00.npy ...       non-state input k stacked over frames: shape (n_frames, *input_shape)
    state_00.npy ...    initial state k
and the runner writes ``out/``::

    out_00.npy ...      non-state output k stacked over frames: shape (n_frames, *output_shape)
    final_state_00.npy  state after the last frame
    result.json         load_ms, per_frame_us (or null), peak RSS, runtime version, arch
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np

from pocketvqe.errors import PocketVQEError

from ..runner_io import RUNNER_OK_MARK, parse_ok_line, run_cmd  # noqa: F401  (the targets' API)

JOB_VERSION = 1

FramesLike = Union[Sequence[Sequence[np.ndarray]], Sequence[np.ndarray], Mapping[str, np.ndarray]]


@dataclasses.dataclass
class RunResult:
    """What one run returns.

    ``outputs[k]`` is non-state output k stacked over frames, shape ``(n_frames, *shape)``;
    ``frame(t)`` gives frame t's outputs as a list. ``per_frame_us`` holds one execute time per
    frame in microseconds, or None when the run was not timed or the target is emulated
    (emulated timings mean nothing). ``timing`` says what was measured.
    """

    outputs: list[np.ndarray]
    final_state: list[np.ndarray]
    per_frame_us: np.ndarray | None
    load_ms: float | None
    peak_rss_kb: int | None
    target: str
    emulated: bool
    timing: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.outputs[0].shape[0]) if self.outputs else 0

    def frame(self, t: int) -> list[np.ndarray]:
        return [o[t] for o in self.outputs]

    @property
    def per_frame(self) -> list[list[np.ndarray]]:
        return [self.frame(t) for t in range(self.n_frames)]

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        us = self.per_frame_us
        return {
            "target": self.target, "emulated": self.emulated, "n_frames": self.n_frames,
            "load_ms": self.load_ms, "peak_rss_kb": self.peak_rss_kb, "timing": self.timing,
            "per_frame_us": None if us is None else {
                "mean": float(np.mean(us)), "median": float(np.median(us)),
                "p90": float(np.percentile(us, 90)), "max": float(np.max(us))},
            **self.extra,
        }


@runtime_checkable
class Target(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """arch, os, runtime (name + version), emulated, threads control, and target specifics."""
        ...

    def run_frames(self, pte_path: str | os.PathLike, frames: FramesLike, n_state: int,
                   init_state: Sequence[np.ndarray], method: str = "forward", threads: int = 1,
                   time_it: bool = False, warmup: int = 0) -> RunResult:
        ...


# ----------------------------------------------------------------------------------------------
# inputs


def stack_frames(frames: FramesLike) -> list[np.ndarray]:
    """Non-state inputs as one C-contiguous array per input, stacked over frames.

    Accepts a list of frames (each a list/tuple of arrays, or a single array for a one-input
    model), or a mapping name -> stacked array of shape (n_frames, *input_shape) (input order =
    mapping order).
    """
    if isinstance(frames, Mapping):
        if not frames:
            raise PocketVQEError("no inputs given: pass at least one stacked input array")
        stacked = [np.ascontiguousarray(np.asarray(v)) for v in frames.values()]
        n = {a.shape[0] if a.ndim else None for a in stacked}
        if None in n or len(n) != 1:
            shapes = {k: np.shape(v) for k, v in frames.items()}
            raise PocketVQEError(
                f"stacked inputs must all have the frame count as their first dimension, got {shapes}: "
                "give arrays of shape (n_frames, *input_shape)")
    else:
        frames = list(frames)
        if not frames:
            raise PocketVQEError("no frames given: pass at least one frame of inputs")
        per_frame = [[f] if isinstance(f, np.ndarray) else list(f) for f in frames]
        n_in = len(per_frame[0])
        for t, f in enumerate(per_frame):
            if len(f) != n_in:
                raise PocketVQEError(
                    f"frame {t} has {len(f)} inputs but frame 0 has {n_in}: every frame needs the same inputs")
        try:
            stacked = [np.ascontiguousarray(np.stack([np.asarray(f[k]) for f in per_frame])) for k in range(n_in)]
        except ValueError as exc:
            raise PocketVQEError(f"frame inputs do not stack ({exc}): every frame's input k needs the same shape") from None
    if stacked and stacked[0].shape[0] == 0:
        raise PocketVQEError("zero frames given: pass at least one frame of inputs")
    for k, a in enumerate(stacked):
        if a.dtype == object:
            raise PocketVQEError(f"input {k} is not a numeric array: give numpy arrays")
    return stacked


def check_state(init_state: Sequence[np.ndarray], n_state: int) -> list[np.ndarray]:
    state = [np.ascontiguousarray(np.asarray(s)) for s in init_state]
    if len(state) != n_state:
        raise PocketVQEError(
            f"n_state is {n_state} but {len(state)} initial state arrays were given: "
            "pass one initial array per state input (e.g. from the model's init_state())")
    return state


def check_pte(pte_path: str | os.PathLike) -> Path:
    p = Path(pte_path)
    if not p.is_file():
        raise PocketVQEError(f".pte file {p} does not exist: export one first (`pocketvqe export`)")
    if p.stat().st_size < 16:
        raise PocketVQEError(f".pte file {p} is too small to be a program: re-export it")
    return p


# ----------------------------------------------------------------------------------------------
# job folder (remote runners)


def write_job(job_dir: Path, pte_path: Path, stacked: list[np.ndarray], state: list[np.ndarray], *,
              method: str, n_state: int, threads: int, time_it: bool, warmup: int,
              link_pte: bool = True) -> Path:
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    model = job_dir / "model.pte"
    if model.exists() or model.is_symlink():
        model.unlink()
    if link_pte:
        try:
            os.link(pte_path, model)
        except OSError:
            shutil.copyfile(pte_path, model)
    else:
        shutil.copyfile(pte_path, model)
    for k, a in enumerate(stacked):
        np.save(job_dir / f"in_{k:02d}.npy", a)
    for k, s in enumerate(state):
        np.save(job_dir / f"state_{k:02d}.npy", s)
    job = {"version": JOB_VERSION, "method": method, "n_state": n_state, "n_inputs": len(stacked),
           "n_frames": int(stacked[0].shape[0]), "threads": threads, "time_it": bool(time_it),
           "warmup": int(warmup)}
    (job_dir / "job.json").write_text(json.dumps(job, indent=1))
    return job_dir


def read_job_results(out_dir: Path, *, target: str, emulated: bool) -> RunResult:
    out_dir = Path(out_dir)
    res_file = out_dir / "result.json"
    if not res_file.is_file():
        raise PocketVQEError(f"the {target} runner left no result.json in {out_dir}: see its log above")
    res = json.loads(res_file.read_text())
    outputs = [np.load(out_dir / f"out_{k:02d}.npy") for k in range(res["n_outputs"])]
    final_state = [np.load(out_dir / f"final_state_{k:02d}.npy") for k in range(res["n_state"])]
    us = res.get("per_frame_us")
    per_frame_us = None if (us is None or emulated) else np.asarray(us, dtype=np.float64)
    extra = {k: res[k] for k in ("runtime", "runtime_version", "et_version", "arch", "rss_before_load_kb",
                                 "threads_requested", "threads_applied") if k in res}
    timing = res.get("timing", "")
    peak = res.get("peak_rss_kb")
    if emulated:
        # Under qemu, ru_maxrss is the emulator's (translated code, guest mappings), not the program's.
        extra["emulator_peak_rss_kb"] = peak
        extra.pop("rss_before_load_kb", None)
        peak = None
        if us is not None:
            timing = "emulated: timings dropped (they mean nothing under qemu)"
    return RunResult(outputs=outputs, final_state=final_state, per_frame_us=per_frame_us,
                     load_ms=res.get("load_ms"), peak_rss_kb=peak, target=target,
                     emulated=emulated, timing=timing, extra=extra)
