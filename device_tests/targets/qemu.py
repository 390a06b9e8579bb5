"""qemu-arm64: an emulated arm64 Linux (user-mode qemu) running the torch-free ExecuTorch runtime.

``QemuArm64Target`` runs ``device_tests/arm_runner.py`` in the emulated arm64 Python 3.13 of a
``pocketvqe.device_tests.qemu_env.Sysroot`` (Debian trixie debs plus the aarch64 wheels of
``executorch-numpy-runtime`` and ``numpy``, run by ``qemu-aarch64``), one job folder per run.
That module says why it has this shape and how it is built: ``Sysroot.setup()``, the CLI's
``pocketvqe device setup qemu-arm64``.

The kernels are the ARM ones (XNNPACK's aarch64 paths), so outputs are ARM-exact; emulated timings
mean nothing, so runs here return no timings.
"""
from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pocketvqe.device_tests.qemu_env import QEMU, SUITE, Sysroot, qemu_version
from pocketvqe.errors import PocketVQEError

from .base import (
    RUNNER_OK_MARK,
    RUNNER_SCRIPT,
    FramesLike,
    RunResult,
    check_pte,
    check_state,
    read_job_results,
    run_cmd,
    stack_frames,
    write_job,
)


class QemuArm64Target:
    """Runs ``device_tests/arm_runner.py`` in the emulated arm64 Python. Outputs only: no timings."""

    name = "qemu-arm64"
    emulated = True

    def __init__(self, cache_dir: str | os.PathLike | None = None, timeout: float = 1800):
        self.sysroot = Sysroot(cache_dir)
        self.timeout = timeout

    def _require(self) -> None:
        if shutil.which(QEMU) is None:
            raise PocketVQEError(f"`{QEMU}` is not installed: run `apt-get install qemu-user` (Debian/Ubuntu)")
        if not self.sysroot.ready():
            raise PocketVQEError(
                f"the qemu-arm64 sysroot is not set up in {self.sysroot.cache}: run "
                f"`pocketvqe device setup qemu-arm64` (add --cache DIR for another folder)")

    def describe(self) -> dict[str, Any]:
        st = self.sysroot.stamp() or {}
        info = st.get("info", {})
        return {
            "target": self.name, "emulated": True, "ready": self.sysroot.ready(),
            "arch": "aarch64", "host_arch": platform.machine(),
            "os": f"Debian {st.get('suite', SUITE)} userland under qemu-aarch64 {st.get('qemu') or qemu_version() or '(not installed)'}",
            "runtime": "executorch-numpy-runtime", "runtime_version": info.get("runtime_version"),
            "et_version": info.get("et_version"), "python": info.get("python"), "numpy": info.get("numpy"),
            "backends": info.get("backends"), "threads_control": False,
            "sysroot": str(self.sysroot.root), "startup_s": st.get("startup_s"),
            "note": "emulated: outputs are ARM-exact (ARM XNNPACK kernels), timings mean nothing",
        }

    def run_frames(self, pte_path: str | os.PathLike, frames: FramesLike, n_state: int,
                   init_state: Sequence[np.ndarray], method: str = "forward", threads: int = 1,
                   time_it: bool = False, warmup: int = 0) -> RunResult:
        pte = check_pte(pte_path)
        stacked = stack_frames(frames)
        state = check_state(init_state, n_state)
        self._require()
        with tempfile.TemporaryDirectory(prefix="pocketvqe-qemu-") as tmp:
            job = write_job(Path(tmp) / "job", pte, stacked, state, method=method, n_state=n_state,
                            threads=threads, time_it=time_it, warmup=warmup)
            t0 = time.monotonic()
            proc = run_cmd(self.sysroot.python_cmd(str(RUNNER_SCRIPT), str(job)), what="qemu-arm64 run",
                           env=self.sysroot.qemu_env(), timeout=self.timeout, check=False,
                           fix="see the runner's message above")
            wall = time.monotonic() - t0
            if proc.returncode != 0 or RUNNER_OK_MARK not in proc.stdout:
                msg = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
                raise PocketVQEError(f"qemu-arm64 run of {pte.name} failed (exit {proc.returncode}):\n  "
                                     + "\n  ".join(msg) + "\ncheck that the .pte loads on the host target first; "
                                     "rebuild the sysroot with `pocketvqe device setup qemu-arm64 --force` if the runtime is broken")
            res = read_job_results(job / "out", target=self.name, emulated=True)
        res.extra["wall_s"] = round(wall, 2)
        if not time_it:
            res.timing = "not timed"
        return res
