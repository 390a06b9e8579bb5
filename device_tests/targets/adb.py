"""adb[:SERIAL]: an Android phone through adb, running an ExecuTorch ``executor_runner`` binary.

The phone runs no Python, so this target drives the runner that ExecuTorch builds from source
with the Android NDK (``executor_runner`` with XNNPACK linked; docs/phone.md).
Give its path with ``--runner`` or ``POCKETVQE_ADB_RUNNER``. It must be built with logging on
(``-DEXECUTORCH_ENABLE_LOGGING=ON``: a Release build prints no timings otherwise) and accept the
upstream flags used here: ``--model_path --method_name --inputs --output_file --cpu_threads
--num_executions``.

A run pushes ``model.pte``, the stacked raw inputs, the initial state and a small ``sh`` script to
``/data/local/tmp/pocketvqe/<job>/`` and runs the script in one ``adb shell``:

- **threaded pass**, once per frame: ``dd`` cuts frame t out of each stacked input, the runner
  executes once (``--inputs=cur_00.bin,...,state_00.bin,...``) and writes ``o-<i>.bin`` per
  output; the non-state outputs are appended to ``out_KK.raw`` and the state outputs copied onto
  ``state_KK.bin`` for the next frame. The runner reloads the program every frame, so these
  per-frame times are *cold* (first execute after load): kept as ``extra["cold_frame_us"]``.
- **timing pass** (``time_it``): one runner process, ``--num_executions=warmup+n_frames`` on
  frame 0 with the initial state: its ``Iteration i of N: X ms`` lines are ``per_frame_us``
  (steady state, same input each iteration). Runners too old to print per-iteration lines only
  give the mean (``extra["steady_mean_us"]``; ``per_frame_us`` stays None).

Then the outputs and final state are pulled back and the job folder removed. The log format
parsed here is ExecuTorch's POSIX PAL (``I 00:00:00.012345 executorch:file.cpp:123] message``)
and the messages of upstream ``examples/portable/executor_runner/executor_runner.cpp``.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from executorch.runtime import Runtime

from pocketvqe.errors import PocketVQEError

from .base import FramesLike, RunResult, check_pte, check_state, stack_frames

Exec = Callable[[Sequence[str]], subprocess.CompletedProcess]

REMOTE_ROOT = "/data/local/tmp/pocketvqe"
RUNNER_NAME = "executor_runner"

# ExecuTorch ScalarType codes -> numpy dtypes (runtime/core/portable_type/scalar_type.h).
SCALAR_TYPES = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64, 5: np.float16,
                6: np.float32, 7: np.float64, 11: np.bool_}

ET_LOG_RE = re.compile(r"^([DIEF]) (\d+):(\d\d):(\d\d)\.(\d{6}) executorch:([^:\]]+):(\d+)\] (.*)$")
EXECUTED_RE = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.]+) ms")
ITERATION_RE = re.compile(r"Iteration (\d+) of (\d+): ([0-9.]+) ms")
LOADED_RE = re.compile(r"Model loaded in ([0-9.]+) ms")

_RUNNER_FIXES = (
    ("unknown command line flag", "this executor_runner is older than the flags pocketvqe uses "
     "(--method_name, --inputs, --output_file, --cpu_threads): rebuild it from ExecuTorch >= 1.0"),
    ("CANNOT LINK EXECUTABLE", "the runner needs a shared library the phone lacks: rebuild it with "
     "-DANDROID_STL=c++_static, or push libc++_shared.so next to it"),
    ("not executable: 32-bit", "the runner is a 32-bit build: rebuild it with -DANDROID_ABI=arm64-v8a"),
    ("not executable", "the runner is not an Android arm64 binary: rebuild it with the NDK toolchain "
     "(-DANDROID_ABI=arm64-v8a)"),
    ("Permission denied", "the runner is not executable on the phone: pocketvqe runs `chmod 755` on it; "
     "check that /data/local/tmp is writable (`adb shell touch /data/local/tmp/x`)"),
    ("Missing operator", "the runner lacks an operator the program uses: rebuild it with the optimized and "
     "quantized kernels (-DEXECUTORCH_BUILD_KERNELS_OPTIMIZED=ON -DEXECUTORCH_BUILD_KERNELS_QUANTIZED=ON)"),
    ("Backend XnnpackBackend is not registered", "the runner was built without XNNPACK: rebuild it with "
     "-DEXECUTORCH_BUILD_XNNPACK=ON (the xnn_executor_runner target)"),
    ("Failed to parse model file", "the runner could not read the .pte: check that runner and exporter "
     "come from the same ExecuTorch release"),
)


def np_dtype(code: int) -> np.dtype:
    if code not in SCALAR_TYPES:
        raise PocketVQEError(f"the program uses ExecuTorch dtype code {code}, which the adb target cannot pass as raw "
                             "bytes: keep the step program's inputs and outputs float32/int")
    return np.dtype(SCALAR_TYPES[code])


@dataclasses.dataclass
class TensorSpec:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def method_specs(pte: Path, method: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output tensor specs of ``method`` read on the host (no execution)."""

    try:
        program = Runtime.get().load_program(str(pte))
    except Exception as exc:  # noqa: BLE001
        raise PocketVQEError(f"could not read {pte} on the host ({exc}): re-export it") from None
    if method not in program.method_names:
        raise PocketVQEError(f"{pte.name} has no method {method!r} (it has {sorted(program.method_names)})")
    meta = program.metadata(method)
    ins = [TensorSpec(tuple(meta.input_tensor_meta(i).sizes()), np_dtype(meta.input_tensor_meta(i).dtype()))
           for i in range(meta.num_inputs())]
    outs = [TensorSpec(tuple(meta.output_tensor_meta(i).sizes()), np_dtype(meta.output_tensor_meta(i).dtype()))
            for i in range(meta.num_outputs())]
    return ins, outs


# ----------------------------------------------------------------------------------------------
# the device script and its log


def device_script(job: str, *, runner: str, method: str, n_frames: int, in_nbytes: Sequence[int],
                  n_state: int, n_outputs: int, threads: int, time_it: bool, warmup: int) -> str:
    """The ``sh`` script run on the phone (mksh/toybox: only dd, cat, cp, echo, $((..)))."""
    q = shlex.quote
    n_in = len(in_nbytes)
    cur = [f"cur_{k:02d}.bin" for k in range(n_in)] + [f"state_{k:02d}.bin" for k in range(n_state)]
    runner_argv = (f"{q(runner)} --model_path=model.pte --method_name={q(method)} "
                   f"--cpu_threads={int(threads)} --inputs={','.join(cur)}")
    lines = [
        "#!/system/bin/sh",
        f"cd {q(job)} || exit 90",
        "rm -f out_*.raw o-*.bin",
        f"for k in {' '.join(f'{k:02d}' for k in range(n_state))}; do cp state_$k.bin init_state_$k.bin; done" if n_state else ":",
        "t=0",
        f"while [ $t -lt {int(n_frames)} ]; do",
    ]
    for k, nb in enumerate(in_nbytes):
        lines.append(f"  dd if=in_{k:02d}.raw of=cur_{k:02d}.bin bs={int(nb)} skip=$t count=1 2>/dev/null || exit 91")
    lines += [
        '  echo "POCKETVQE_FRAME $t"',
        f"  {runner_argv} --output_file=o 2>&1",
        '  rc=$?; if [ $rc -ne 0 ]; then echo "POCKETVQE_FAIL $t $rc"; exit 92; fi',
    ]
    n_plain = n_outputs - n_state
    for k in range(n_plain):
        lines.append(f"  cat o-{k}.bin >> out_{k:02d}.raw || exit 93")
    for k in range(n_state):
        lines.append(f"  cp o-{n_plain + k}.bin state_{k:02d}.bin || exit 93")
    lines += ["  t=$((t+1))", "done"]
    if time_it:
        for k, nb in enumerate(in_nbytes):
            lines.append(f"dd if=in_{k:02d}.raw of=cur_{k:02d}.bin bs={int(nb)} skip=0 count=1 2>/dev/null || exit 91")
        timing_inputs = [f"cur_{k:02d}.bin" for k in range(n_in)] + [f"init_state_{k:02d}.bin" for k in range(n_state)]
        lines += [
            'echo "POCKETVQE_TIMING"',
            f"{q(runner)} --model_path=model.pte --method_name={q(method)} --cpu_threads={int(threads)} "
            f"--inputs={','.join(timing_inputs)} --num_executions={int(warmup) + int(n_frames)} 2>&1",
            'rc=$?; if [ $rc -ne 0 ]; then echo "POCKETVQE_FAIL timing $rc"; exit 94; fi',
        ]
    lines.append('echo "POCKETVQE_DONE"')
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class RunnerLog:
    cold_frame_us: list[float | None]
    load_ms: list[float]
    steady_us: list[float] | None
    steady_mean_us: float | None
    done: bool
    errors: list[str]


def parse_runner_log(text: str, *, n_frames: int, time_it: bool, warmup: int = 0) -> RunnerLog:
    """Parse the device script's output: frame markers + executor_runner's ET_LOG lines."""
    cold: list[float | None] = [None] * n_frames
    loads: list[float] = []
    iters: list[float] = []
    total: tuple[int, float] | None = None
    errors: list[str] = []
    section: int | str | None = None
    done = False
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if line.startswith("POCKETVQE_FRAME "):
            section = int(line.split()[1])
            continue
        if line == "POCKETVQE_TIMING":
            section = "timing"
            continue
        if line == "POCKETVQE_DONE":
            done = True
            continue
        if line.startswith("POCKETVQE_FAIL"):
            errors.append(line)
            continue
        m = ET_LOG_RE.match(line)
        msg = m.group(8) if m else line
        if m and m.group(1) in "EF":
            errors.append(msg)
        elif not m and re.search(r"(ERROR|CANNOT LINK|not executable|Permission denied|Segmentation fault|Aborted)", line):
            errors.append(line)
        if (lm := LOADED_RE.search(msg)):
            loads.append(float(lm.group(1)))
        if (em := EXECUTED_RE.search(msg)):
            n, ms = int(em.group(1)), float(em.group(2))
            if isinstance(section, int) and 0 <= section < n_frames and n == 1:
                cold[section] = ms * 1e3
            elif section == "timing":
                total = (n, ms)
        if section == "timing" and (im := ITERATION_RE.search(msg)):
            iters.append(float(im.group(3)) * 1e3)
    steady = iters[warmup:] if (time_it and iters) else None
    mean = None
    if time_it and total:
        n, ms = total
        mean = ms * 1e3 / max(n, 1)
    return RunnerLog(cold_frame_us=cold, load_ms=loads, steady_us=steady, steady_mean_us=mean, done=done, errors=errors)


def explain_runner_failure(text: str, serial: str | None) -> PocketVQEError:
    where = f"adb:{serial}" if serial else "adb"
    fix = next((f for key, f in _RUNNER_FIXES if key in text), None)
    log = parse_runner_log(text, n_frames=0, time_it=False)
    shown = log.errors or text.strip().splitlines()[-12:]
    return PocketVQEError(f"{where}: the runner failed on the phone:\n  " + "\n  ".join(shown) + "\n"
                          + (fix or "check that the .pte runs on the host and qemu-arm64 targets, and that the "
                                    "runner comes from the ExecuTorch release that exported it"))


def parse_kv(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def parse_devices(text: str) -> list[dict[str, str]]:
    """``adb devices -l`` -> [{"serial", "state", "model", ...}]."""
    devs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        d = {"serial": parts[0], "state": parts[1]}
        for p in parts[2:]:
            if ":" in p:
                k, v = p.split(":", 1)
                d[k] = v
        devs.append(d)
    return devs


DESCRIBE_SCRIPT = ("echo model=$(getprop ro.product.model); echo manufacturer=$(getprop ro.product.manufacturer); "
                   "echo abi=$(getprop ro.product.cpu.abi); echo android=$(getprop ro.build.version.release); "
                   "echo sdk=$(getprop ro.build.version.sdk); echo soc=$(getprop ro.soc.model); "
                   "echo kernel=$(uname -r); echo arch=$(uname -m); echo cpus=$(nproc)")


# ----------------------------------------------------------------------------------------------
# the target


def _default_exec(argv: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=3600)


class AdbTarget:
    emulated = False

    def __init__(self, serial: str | None = None, *, runner: str | os.PathLike | None = None,
                 adb: str | None = None, remote_root: str = REMOTE_ROOT, exec_fn: Exec | None = None):
        self.serial = serial or None
        self.name = f"adb:{serial}" if serial else "adb"
        r = runner or os.environ.get("POCKETVQE_ADB_RUNNER")
        self.runner = Path(r).expanduser() if r else None
        self.adb = adb or os.environ.get("ADB", "adb")
        self.remote_root = remote_root
        self._exec = exec_fn or _default_exec

    def adb_argv(self, *args: str) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def _run(self, *args: str, what: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = self.adb_argv(*args)
        try:
            proc = self._exec(argv)
        except FileNotFoundError:
            raise PocketVQEError(f"`{self.adb}` is not installed: `apt-get install adb` (or the Android SDK "
                                 "platform-tools), or point ADB at it") from None
        if check and proc.returncode != 0:
            text = (proc.stderr or "") + (proc.stdout or "")
            if "no devices/emulators found" in text or re.search(r"device '[^']*' not found", text):
                fix = "connect the phone, enable USB debugging, and check `adb devices -l`"
            elif "more than one device" in text:
                fix = "several phones are connected: pick one with adb:SERIAL (see `pocketvqe device list`)"
            elif "unauthorized" in text:
                fix = "accept the USB debugging prompt on the phone"
            else:
                fix = "see adb's message above"
            raise PocketVQEError(f"{self.name}: {what} failed (exit {proc.returncode}): {text.strip()[-600:]}\n{fix}")
        return proc

    def describe(self) -> dict[str, Any]:
        kv = parse_kv(self._run("shell", DESCRIBE_SCRIPT, what="reading the phone's properties").stdout)
        return {
            "target": self.name, "emulated": False, "ready": self.runner is not None and self.runner.is_file(),
            "arch": kv.get("arch") or kv.get("abi"), "abi": kv.get("abi"),
            "os": f"Android {kv.get('android', '?')} (SDK {kv.get('sdk', '?')}), kernel {kv.get('kernel', '?')}",
            "model": " ".join(x for x in (kv.get("manufacturer"), kv.get("model")) if x) or None,
            "soc": kv.get("soc") or None, "cpu_count": int(kv["cpus"]) if kv.get("cpus", "").isdigit() else None,
            "runtime": "executor_runner (ExecuTorch, user-built)",
            "runner": str(self.runner) if self.runner else None,
            "runtime_version": None, "threads_control": True,
            "note": None if self.runner else "no runner configured: give --runner or set POCKETVQE_ADB_RUNNER",
        }

    def run_frames(self, pte_path: str | os.PathLike, frames: FramesLike, n_state: int,
                   init_state: Sequence[np.ndarray], method: str = "forward", threads: int = 1,
                   time_it: bool = False, warmup: int = 0) -> RunResult:
        pte = check_pte(pte_path)
        stacked = stack_frames(frames)
        state = check_state(init_state, n_state)
        if self.runner is None or not self.runner.is_file():
            raise PocketVQEError(
                f"{self.name}: no executor_runner binary ({self.runner or 'not configured'}): build it from ExecuTorch "
                "source with the Android NDK (docs/phone.md in the pocketvqe repository) and give it with --runner or POCKETVQE_ADB_RUNNER")
        in_specs, out_specs = method_specs(pte, method)
        plain_in = check_inputs(stacked, state, in_specs, pte.name, method)
        n_frames = int(stacked[0].shape[0])
        if len(out_specs) < n_state:
            raise PocketVQEError(f"{pte.name}:{method} has {len(out_specs)} outputs, fewer than n_state={n_state}")

        job_id = f"job-{uuid.uuid4().hex[:10]}"
        rjob = f"{self.remote_root}/{job_id}"
        rrunner = f"{self.remote_root}/{RUNNER_NAME}"
        with tempfile.TemporaryDirectory(prefix="pocketvqe-adb-") as tmp:
            local = Path(tmp)
            shutil.copyfile(pte, local / "model.pte")
            for k, a in enumerate(stacked):
                (local / f"in_{k:02d}.raw").write_bytes(np.ascontiguousarray(a, dtype=plain_in[k].dtype).tobytes())
            for k, s in enumerate(state):
                (local / f"state_{k:02d}.bin").write_bytes(np.ascontiguousarray(s, dtype=in_specs[len(stacked) + k].dtype).tobytes())
            script = device_script(rjob, runner=rrunner, method=method, n_frames=n_frames,
                                   in_nbytes=[s.nbytes for s in plain_in], n_state=n_state,
                                   n_outputs=len(out_specs), threads=threads, time_it=time_it, warmup=warmup)
            (local / "run.sh").write_text(script)
            files = sorted(str(p) for p in local.iterdir())

            t0 = time.monotonic()
            self._run("shell", f"mkdir -p {shlex.quote(rjob)}", what="making the job folder")
            self._run("push", str(self.runner), rrunner, what="pushing the runner")
            self._run("shell", f"chmod 755 {shlex.quote(rrunner)}", what="making the runner executable")
            self._run("push", *files, f"{rjob}/", what="pushing the job")
            try:
                proc = self._run("shell", f"sh {shlex.quote(rjob + '/run.sh')}; echo POCKETVQE_EXIT $?",
                                 what="running the job", check=False)
                log_text = (proc.stdout or "") + (proc.stderr or "")
                log = parse_runner_log(log_text, n_frames=n_frames, time_it=time_it, warmup=warmup)
                if not log.done:
                    raise explain_runner_failure(log_text, self.serial)
                n_plain = len(out_specs) - n_state
                pulled = local / "pulled"
                pulled.mkdir()
                names = [f"out_{k:02d}.raw" for k in range(n_plain)] + [f"state_{k:02d}.bin" for k in range(n_state)]
                self._run("pull", *[f"{rjob}/{n}" for n in names], str(pulled), what="pulling the results")
                outputs, final_state = assemble_outputs(pulled, out_specs, n_state=n_state, n_frames=n_frames)
            finally:
                self._run("shell", f"rm -rf {shlex.quote(rjob)}", what="removing the job folder", check=False)
            wall = time.monotonic() - t0

        timing = "not timed"
        per_frame = None
        extra: dict[str, Any] = {"wall_s": round(wall, 2), "threads_requested": threads, "threads_applied": threads,
                                 "runtime": "executor_runner", "cold_frame_us": log.cold_frame_us}
        if time_it:
            if log.steady_us:
                per_frame = np.asarray(log.steady_us, dtype=np.float64)
                timing = ("executor_runner's 'Iteration i of N' times: one process, --num_executions, frame 0 with the "
                          "initial state each iteration (steady state; state not threaded)")
            elif log.steady_mean_us is not None:
                extra["steady_mean_us"] = log.steady_mean_us
                timing = "this executor_runner prints only a total: mean in extra['steady_mean_us']"
            else:
                raise PocketVQEError(f"{self.name}: the runner printed no timing lines: rebuild it with "
                                     "-DEXECUTORCH_ENABLE_LOGGING=ON (Release builds log nothing)")
        return RunResult(outputs=outputs, final_state=final_state, per_frame_us=per_frame,
                         load_ms=(min(log.load_ms) if log.load_ms else None), peak_rss_kb=None,
                         target=self.name, emulated=False, timing=timing, extra=extra)


def check_inputs(stacked: Sequence[np.ndarray], state: Sequence[np.ndarray], in_specs: Sequence[TensorSpec],
                 pte_name: str, method: str) -> list[TensorSpec]:
    if len(in_specs) != len(stacked) + len(state):
        raise PocketVQEError(f"{pte_name}:{method} takes {len(in_specs)} inputs but {len(stacked)} frame inputs + "
                             f"{len(state)} state were given: check n_state and the frame inputs")
    for k, (a, spec) in enumerate(zip(list(stacked) + [s[None] for s in state], in_specs)):
        if tuple(a.shape[1:]) != spec.shape:
            raise PocketVQEError(f"{pte_name}:{method} input {k} is {list(spec.shape)} per frame but "
                                 f"{list(a.shape[1:])} was given")
        if a.dtype != spec.dtype and not np.can_cast(a.dtype, spec.dtype, casting="same_kind"):
            raise PocketVQEError(f"{pte_name}:{method} input {k} is {spec.dtype} but {a.dtype} was given")
    return list(in_specs[: len(stacked)])


def assemble_outputs(folder: Path, out_specs: Sequence[TensorSpec], *, n_state: int,
                     n_frames: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw files pulled from the phone -> stacked outputs and final state."""
    n_plain = len(out_specs) - n_state
    outputs = []
    for k in range(n_plain):
        spec = out_specs[k]
        raw = (folder / f"out_{k:02d}.raw").read_bytes()
        if len(raw) != spec.nbytes * n_frames:
            raise PocketVQEError(f"output {k} from the phone has {len(raw)} bytes, expected {n_frames} x {spec.nbytes}: "
                                 "the runner wrote a different shape than the program declares; rerun, or check the runner build")
        outputs.append(np.frombuffer(raw, dtype=spec.dtype).reshape(n_frames, *spec.shape).copy())
    final = []
    for k in range(n_state):
        spec = out_specs[n_plain + k]
        raw = (folder / f"state_{k:02d}.bin").read_bytes()
        if len(raw) != spec.nbytes:
            raise PocketVQEError(f"final state {k} from the phone has {len(raw)} bytes, expected {spec.nbytes}")
        final.append(np.frombuffer(raw, dtype=spec.dtype).reshape(spec.shape).copy())
    return outputs, final
