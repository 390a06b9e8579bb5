#!/usr/bin/env python3
"""Run one method of a .pte over a sequence of frames, threading state from frame to frame.

This script runs *on the target*: inside the emulated arm64 Python (qemu-arm64) or on an ARM
board (ssh). It imports only numpy and executorch-numpy-runtime (torch-free), and the standard
library, so it works wherever ``pip install executorch-numpy-runtime`` does.

    python3 arm_runner.py JOB_DIR [--out OUT_DIR]     run the job, write OUT_DIR (default JOB_DIR/out)
    python3 arm_runner.py --info                      print what this runtime is, as JSON

JOB_DIR holds job.json, model.pte, in_KK.npy (non-state input KK stacked over frames: shape
(n_frames, *shape)) and state_KK.npy (initial state KK). Frame t runs
``method([in_00[t], in_01[t], ..., state_00, state_01, ...])``; the last n_state outputs are the
new state, fed back as the last n_state inputs of frame t+1. Results: out_KK.npy (non-state output
KK stacked over frames), final_state_KK.npy and result.json (load_ms, per_frame_us from
time.perf_counter_ns around each execute, peak RSS). The last line printed is
``POCKETVQE_RUNNER_OK {...}`` on success or ``POCKETVQE_RUNNER_ERROR: ...`` (exit 3) on failure.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import executorch_numpy_runtime as en
import numpy as np

OK_MARK = "POCKETVQE_RUNNER_OK"
ERR_MARK = "POCKETVQE_RUNNER_ERROR"
JOB_VERSION = 1


def _maxrss_kb():
    try:
        import resource
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    except Exception:  # noqa: BLE001 - not every platform has it
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip(), v.strip())
    for key in ("model name", "Hardware", "CPU part"):
        if key in fields:
            return f"{key}: {fields[key]}"
    return None


def info():

    rt_info = en.runtime_info()
    uname = platform.uname()
    return {
        "arch": uname.machine,
        "os": f"{uname.system} {uname.release}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtime": "executorch-numpy-runtime",
        "runtime_version": en.__version__,
        "et_version": rt_info.get("executorch_version"),
        "backends": rt_info.get("backends"),
        "kernel_libs": rt_info.get("kernel_libs"),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "threads_control": False,
    }


def run_job(job_dir, out_dir):

    with open(os.path.join(job_dir, "job.json")) as fh:
        job = json.load(fh)
    if job.get("version") != JOB_VERSION:
        raise RuntimeError(f"job version {job.get('version')} is not {JOB_VERSION}: update arm_runner.py on the target")
    n_state = int(job["n_state"])
    n_inputs = int(job["n_inputs"])
    method_name = job.get("method", "forward")
    time_it = bool(job.get("time_it", False))
    warmup = int(job.get("warmup", 0))

    stacked = [np.load(os.path.join(job_dir, f"in_{k:02d}.npy")) for k in range(n_inputs)]
    state = [np.load(os.path.join(job_dir, f"state_{k:02d}.npy")) for k in range(n_state)]
    n_frames = int(stacked[0].shape[0]) if stacked else int(job["n_frames"])

    rss_before = _maxrss_kb()
    t0 = time.perf_counter_ns()
    program = en.Runtime.get().load_program(os.path.join(job_dir, "model.pte"))
    if method_name not in program.method_names:
        raise RuntimeError(f"method {method_name!r} is not in the program (it has {sorted(program.method_names)})")
    method = program.load_method(method_name)
    load_ms = (time.perf_counter_ns() - t0) / 1e6

    def frame_inputs(t, st):
        return [a[t] for a in stacked] + list(st)

    for _ in range(warmup):  # discarded: state is explicit, so warm-up leaves the run untouched
        method(frame_inputs(0, state))

    outs_per_frame = []
    times_ns = []
    for t in range(n_frames):
        inputs = frame_inputs(t, state)
        t1 = time.perf_counter_ns()
        outs = method(inputs)
        times_ns.append(time.perf_counter_ns() - t1)
        outs = list(outs)
        if len(outs) < n_state:
            raise RuntimeError(f"method returned {len(outs)} outputs but n_state is {n_state}")
        new_state = outs[len(outs) - n_state:] if n_state else []
        for k, (old, new) in enumerate(zip(state, new_state)):
            if old.shape != new.shape or old.dtype != new.dtype:
                raise RuntimeError(
                    f"frame {t}: state output {k} is {new.dtype}{list(new.shape)} but state input {k} is "
                    f"{old.dtype}{list(old.shape)}: n_state or the initial state does not match the program")
        state = [np.ascontiguousarray(s) for s in new_state]
        outs_per_frame.append(outs[: len(outs) - n_state])

    os.makedirs(out_dir, exist_ok=True)
    n_out = len(outs_per_frame[0])
    for k in range(n_out):
        np.save(os.path.join(out_dir, f"out_{k:02d}.npy"), np.stack([o[k] for o in outs_per_frame]))
    for k, s in enumerate(state):
        np.save(os.path.join(out_dir, f"final_state_{k:02d}.npy"), s)
    result = {
        "n_frames": n_frames, "n_outputs": n_out, "n_state": n_state, "method": method_name,
        "load_ms": load_ms,
        "per_frame_us": [ns / 1e3 for ns in times_ns] if time_it else None,
        "timing": ("time.perf_counter_ns around each method call (includes numpy<->tensor copies)"
                   if time_it else "not timed"),
        "peak_rss_kb": _maxrss_kb(), "rss_before_load_kb": rss_before,
        "runtime": "executorch-numpy-runtime", "runtime_version": en.__version__,
        "et_version": en.__et_version__, "arch": platform.machine(),
        "threads_requested": job.get("threads"), "threads_applied": None,
    }
    tmp = os.path.join(out_dir, "result.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, os.path.join(out_dir, "result.json"))
    return {"n_frames": n_frames, "n_outputs": n_out, "load_ms": round(load_ms, 3)}


def main(argv):
    args = list(argv)
    try:
        if args == ["--info"]:
            print(OK_MARK + " " + json.dumps(info()))
            return 0
        if not args or args[0].startswith("-"):
            print(__doc__, file=sys.stderr)
            return 2
        job_dir = args[0]
        out_dir = os.path.join(job_dir, "out")
        if len(args) == 3 and args[1] == "--out":
            out_dir = args[2]
        elif len(args) != 1:
            print(__doc__, file=sys.stderr)
            return 2
        summary = run_job(job_dir, out_dir)
        print(OK_MARK + " " + json.dumps(summary))
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to the host, which raises a PocketVQEError
        print(f"{ERR_MARK}: {type(exc).__name__}: {exc}")
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
