"""Targets that run programs through the native runner (``native/``, ``pocketvqe.device_tests.native``).

``host-native``: the host build of ``pocketvqe-runner``, against the installed executorch's own runtime
libraries. Timings are real and are what an app calling ``Module::execute`` pays (no tensor wrapping,
no Python); peak RSS is the runner process's, the program's true footprint.

``qemu-arm64`` (``QemuArm64Target`` in :mod:`.qemu`) is the same class with the aarch64 build under
``qemu-aarch64``: ARM XNNPACK kernels, so ARM-exact outputs, and no timings.

Both build their runner on first use (cached, ~10 s for the host, ~15 s for aarch64 with the wheel
download) and run one job folder per run (``.base``'s job protocol).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pocketvqe.device_tests.native import NativeRunner, build_runner, executorch_version, runner_dir

from .base import FramesLike, RunResult, check_pte, check_state, read_job_results, stack_frames, write_job


class NativeTarget:
    """Runs a job folder with ``pocketvqe-runner job`` built for ``arch``."""

    name = "host-native"
    arch = "host"
    emulated = False

    def __init__(self, cache_dir: str | os.PathLike | None = None, timeout: float = 1800, runner: str | None = None):
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._folder = Path(runner) if runner else None
        self._runner: NativeRunner | None = None

    @property
    def runner(self) -> NativeRunner:
        if self._runner is None:
            folder = self._folder or build_runner(self.arch, self.cache_dir)
            self._runner = NativeRunner(folder, timeout=self.timeout)
        return self._runner

    def ready(self) -> bool:
        return self._folder is not None or (runner_dir(self.arch, self.cache_dir) / "pocketvqe-runner").is_file()

    def describe(self) -> dict[str, Any]:
        folder = self._folder or runner_dir(self.arch, self.cache_dir)
        return {"target": self.name, "emulated": self.emulated, "ready": self.ready(),
                "arch": "aarch64" if self.arch == "aarch64" else os.uname().machine,
                "runtime": "executorch (native pocketvqe-runner)", "runtime_version": executorch_version(),
                "runner": str(folder), "threads_control": True,
                "note": ("emulated (qemu-aarch64 -cpu cortex-a76): outputs are ARM-exact, timings mean nothing"
                         if self.emulated else "timings are Module::execute as an app calls it")}

    def run_frames(self, pte_path: str | os.PathLike, frames: FramesLike, n_state: int,
                   init_state: Sequence[np.ndarray], method: str = "forward", threads: int = 1,
                   time_it: bool = False, warmup: int = 0) -> RunResult:
        pte = check_pte(pte_path)
        stacked = [np.ascontiguousarray(a, np.float32) for a in stack_frames(frames)]
        state = [np.ascontiguousarray(s, np.float32) for s in check_state(init_state, n_state)]
        runner = self.runner
        with tempfile.TemporaryDirectory(prefix=f"pocketvqe-{self.name}-") as tmp:
            job = write_job(Path(tmp) / "job", pte, stacked, state, method=method, n_state=n_state,
                            threads=threads, time_it=time_it, warmup=warmup)
            t0 = time.monotonic()
            runner.run_job(job, job / "out")
            res = read_job_results(job / "out", target=self.name, emulated=self.emulated)
        res.extra["wall_s"] = round(time.monotonic() - t0, 2)
        if not time_it:
            res.timing = "not timed"
        return res
