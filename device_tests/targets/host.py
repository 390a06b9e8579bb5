"""host: this machine, in-process, through ``executorch.runtime`` (the executorch wheel's pybindings).

Timings here are real (``time.perf_counter_ns`` around each ``execute``); ``threads`` resets the
process-wide ExecuTorch thread pool for the run and puts it back afterwards. Peak RSS is not
reported: the process also holds torch, so its peak says nothing about the program.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from executorch.runtime import Runtime

from pocketvqe.errors import PocketVQEError

from .base import FramesLike, RunResult, check_pte, check_state, stack_frames


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


@contextlib.contextmanager
def _threadpool(threads: int):
    """Run with ``threads`` ExecuTorch pool threads (0 or less: leave it as it is)."""
    try:
        from executorch.extension.pybindings import portable_lib as pl
        get, reset = pl._threadpool_get_thread_count, pl._unsafe_reset_threadpool
    except (ImportError, AttributeError):
        yield None
        return
    if threads <= 0:
        yield get()
        return
    before = get()
    reset(threads)
    try:
        yield get()
    finally:
        reset(before)


class HostTarget:
    name = "host"
    emulated = False

    def describe(self) -> dict[str, Any]:

        rt = Runtime.get()
        try:
            from executorch.extension.pybindings import portable_lib as pl
            pool = pl._threadpool_get_thread_count()
        except (ImportError, AttributeError):
            pool = None
        return {
            "target": self.name, "emulated": False, "ready": True,
            "arch": platform.machine(), "os": platform.platform(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "runtime": "executorch (pybindings, in-process)",
            "runtime_version": importlib.metadata.version("executorch"),
            "backends": sorted(rt.backend_registry.registered_backend_names),
            "threads_control": True, "threadpool_threads": pool,
        }

    def run_frames(self, pte_path: str | os.PathLike, frames: FramesLike, n_state: int,
                   init_state: Sequence[np.ndarray], method: str = "forward", threads: int = 1,
                   time_it: bool = False, warmup: int = 0) -> RunResult:

        pte = check_pte(pte_path)
        stacked = [torch.from_numpy(a) for a in stack_frames(frames)]
        state = [torch.from_numpy(s.copy()) for s in check_state(init_state, n_state)]
        n_frames = int(stacked[0].shape[0])

        with _threadpool(threads) as pool:
            t0 = time.perf_counter_ns()
            try:
                program = Runtime.get().load_program(str(pte))
            except Exception as exc:  # noqa: BLE001 - the runtime raises RuntimeError / ValueError
                raise PocketVQEError(f"the host runtime could not load {pte} ({exc}): re-export it with "
                                     f"executorch {importlib.metadata.version('executorch')}") from None
            if method not in program.method_names:
                raise PocketVQEError(f"{pte.name} has no method {method!r} (it has {sorted(program.method_names)}): "
                                     "pass one of those")
            meth = program.load_method(method)
            load_ms = (time.perf_counter_ns() - t0) / 1e6
            n_in = meth.metadata.num_inputs()
            if n_in != len(stacked) + n_state:
                raise PocketVQEError(
                    f"{pte.name}:{method} takes {n_in} inputs but {len(stacked)} frame inputs + {n_state} state "
                    "were given: check n_state and the frame inputs")

            run = _uncloned(meth)
            for _ in range(warmup):  # state is explicit, so warm-up calls leave the run untouched
                run([x[0] for x in stacked] + state)
            outs_all: list[list[np.ndarray]] = []
            times = np.empty(n_frames, dtype=np.float64)
            for t in range(n_frames):
                inputs = [x[t] for x in stacked] + state
                t1 = time.perf_counter_ns()
                outs = run(inputs)
                times[t] = (time.perf_counter_ns() - t1) / 1e3
                if len(outs) < n_state:
                    raise PocketVQEError(f"{pte.name}:{method} returned {len(outs)} outputs, fewer than n_state={n_state}")
                # Outputs may alias the method's planned memory: copy before the next call.
                cut = len(outs) - n_state
                new_state = [o.clone() for o in outs[cut:]]
                for k, (old, new) in enumerate(zip(state, new_state)):
                    if old.shape != new.shape or old.dtype != new.dtype:
                        raise PocketVQEError(
                            f"frame {t}: state output {k} is {new.dtype}{list(new.shape)} but state input {k} is "
                            f"{old.dtype}{list(old.shape)}: n_state or the initial state does not match the program")
                state = new_state
                outs_all.append([np.array(o.detach().numpy() if hasattr(o, "numpy") else o) for o in outs[:cut]])

        outputs = [np.stack([f[k] for f in outs_all]) for k in range(len(outs_all[0]))]
        return RunResult(
            outputs=outputs, final_state=[s.numpy().copy() for s in state],
            per_frame_us=times if time_it else None, load_ms=load_ms, peak_rss_kb=None,
            target=self.name, emulated=False,
            timing=("time.perf_counter_ns around each execute (in-process, torch tensors in/out, outputs not "
                    "cloned inside the timed call: an app writes them to its own buffers)"
                    if time_it else "not timed"),
            extra={"threads_requested": threads, "threads_applied": pool,
                   "runtime_version": importlib.metadata.version("executorch")})


def _uncloned(meth):
    """``execute`` without the Python binding's copy of every output (~40 us for dvqe-s16's 20 state
    tensors): a C++ app points the outputs at its own buffers instead. The caller copies the state
    outputs after the timed call, before the next one, since they alias the method's memory."""
    inner = getattr(meth, "_method", None)
    if inner is None:
        return meth.execute
    try:
        inner.__call__  # noqa: B018
        def call(inputs):
            return inner(inputs, clone_outputs=False)
        return call
    except AttributeError:
        return meth.execute
