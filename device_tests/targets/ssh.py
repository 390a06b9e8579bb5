"""ssh:HOST: an aarch64 Linux board reached over ssh; the native runner runs there, no Python needed.

A run copies the aarch64 runner folder (``pocketvqe-runner`` + its ExecuTorch ``.so`` files, built
here by :func:`pocketvqe.device_tests.native.build_runner`) and the job folder to a fresh temporary
folder on the board (``scp``), runs ``pocketvqe-runner job`` there, copies ``out/`` back and removes
the folder. ``HOST`` is anything ``ssh`` accepts (``user@board``, a ``Host`` alias from
``~/.ssh/config``); ssh runs in batch mode, so set up key authentication first. Options:

- ``POCKETVQE_SSH_OPTS`` (or ``ssh_opts=``): extra ssh/scp options, e.g. ``-p 2222 -i ~/.ssh/board``
  (``-p`` is translated to scp's ``-P``);
- ``runner=``: a runner folder to push instead of the cached aarch64 build.

Timings are real (the board's steady clock around each ``Module::execute``); peak RSS is the runner
process's ``ru_maxrss``: the program's own footprint.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pocketvqe.device_tests.native import build_runner
from pocketvqe.errors import PocketVQEError

from .base import (
    FramesLike,
    RunResult,
    check_pte,
    check_state,
    parse_ok_line,
    read_job_results,
    stack_frames,
    write_job,
)

Exec = Callable[[Sequence[str], "str | None"], subprocess.CompletedProcess]

SSH_BASE_OPTS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15")

_SSH_FIXES = (
    ("Permission denied", "set up key authentication (`ssh-copy-id HOST`); ssh runs in batch mode and cannot ask for a password"),
    ("Could not resolve hostname", "check the host name, or add a Host entry to ~/.ssh/config"),
    ("Connection refused", "start sshd on the board, or give the port with POCKETVQE_SSH_OPTS='-p PORT'"),
    ("Connection timed out", "check that the board is powered and on this network"),
    ("Host key verification failed", "connect once by hand (`ssh HOST`) to accept the board's host key"),
    ("cannot execute binary file", "the board is not aarch64 Linux: the runner folder is built for aarch64"),
    ("Exec format error", "the board is not aarch64 Linux: the runner folder is built for aarch64"),
    ("GLIBC_", "the board's glibc is older than the runner needs (manylinux_2_28: glibc >= 2.28)"),
)


def _default_exec(argv: Sequence[str], stdin: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=3600)


def explain_ssh_failure(host: str, what: str, proc: subprocess.CompletedProcess) -> PocketVQEError:
    text = (proc.stderr or "") + "\n" + (proc.stdout or "")
    for line in reversed(text.splitlines()):
        if line.startswith("POCKETVQE_RUNNER_ERROR"):
            return PocketVQEError(f"ssh:{host}: {what}: the runner failed: {line.split(':', 1)[1].strip()}")
    fix = next((f for key, f in _SSH_FIXES if key in text), "see the message above")
    tail = "\n  ".join(text.strip().splitlines()[-8:])
    return PocketVQEError(f"ssh:{host}: {what} failed (exit {proc.returncode}):\n  {tail}\n{fix.replace('HOST', host)}")


class SshTarget:
    emulated = False

    def __init__(self, host: str, *, ssh_opts: str | Sequence[str] | None = None, remote_tmp: str = "/tmp",
                 exec_fn: Exec | None = None, runner: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None):
        if not host or host.startswith("-"):
            raise PocketVQEError(f"bad ssh host {host!r}: give ssh:HOST with HOST as user@board or an ssh config alias")
        self.host = host
        self.name = f"ssh:{host}"
        self.runner = Path(runner) if runner else None
        self.cache_dir = cache_dir
        opts = ssh_opts if ssh_opts is not None else os.environ.get("POCKETVQE_SSH_OPTS", "")
        self.ssh_opts = shlex.split(opts) if isinstance(opts, str) else list(opts)
        self.remote_tmp = remote_tmp
        self._exec = exec_fn or _default_exec

    # -- command lines (kept separate so the tests check them against recorded transcripts) ------

    def ssh_argv(self, remote_cmd: str) -> list[str]:
        return ["ssh", *SSH_BASE_OPTS, *self.ssh_opts, self.host, remote_cmd]

    def scp_argv(self, sources: Sequence[str], dest: str) -> list[str]:
        opts = ["-P" if o == "-p" else o for o in self.ssh_opts]
        return ["scp", "-q", "-r", *SSH_BASE_OPTS, *opts, *sources, dest]

    def runner_folder(self) -> Path:
        if self.runner is None:
            self.runner = build_runner("aarch64", self.cache_dir)
        return self.runner

    def _run(self, argv: Sequence[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        try:
            proc = self._exec(argv, stdin)
        except FileNotFoundError:
            raise PocketVQEError(f"`{argv[0]}` is not installed: install the OpenSSH client (`apt-get install openssh-client`)") from None
        except subprocess.TimeoutExpired:
            raise PocketVQEError(f"ssh:{self.host}: {what} timed out: check the board") from None
        if proc.returncode != 0:
            raise explain_ssh_failure(self.host, what, proc)
        return proc

    # -- protocol ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        proc = self._run(self.ssh_argv("uname -m; uname -sr; nproc; grep -m1 -E 'model name|CPU part' /proc/cpuinfo || true"),
                         "describe")
        lines = proc.stdout.strip().splitlines() + ["", "", "", ""]
        return {"target": self.name, "emulated": False, "ready": lines[0] == "aarch64", "arch": lines[0],
                "os": lines[1], "cpu_count": int(lines[2]) if lines[2].isdigit() else None, "cpu": lines[3] or None,
                "runtime": "executorch (native pocketvqe-runner, pushed per run)", "threads_control": True,
                "note": "timings are the board's own (Module::execute, no Python)"}

    def run_frames(self, pte_path: str | os.PathLike, frames: FramesLike, n_state: int,
                   init_state: Sequence[np.ndarray], method: str = "forward", threads: int = 1,
                   time_it: bool = False, warmup: int = 0) -> RunResult:
        pte = check_pte(pte_path)
        stacked = stack_frames(frames)
        state = check_state(init_state, n_state)
        with tempfile.TemporaryDirectory(prefix="pocketvqe-ssh-") as tmp:
            job = write_job(Path(tmp) / "job", pte, stacked, state, method=method, n_state=n_state,
                            threads=threads, time_it=time_it, warmup=warmup, link_pte=False)
            runner = self.runner_folder()
            t0 = time.monotonic()
            proc = self._run(self.ssh_argv(f"mktemp -d {shlex.quote(self.remote_tmp)}/pocketvqe.XXXXXX"), "making a work folder")
            remote = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
            if not remote.startswith("/"):
                raise PocketVQEError(f"ssh:{self.host}: mktemp printed {proc.stdout!r}, not a folder: check the board's /tmp")
            try:
                self._run(self.scp_argv([str(job), str(runner)], f"{self.host}:{remote}/"), "copying the runner and the job")
                rjob = f"{remote}/job"
                exe = f"{remote}/{runner.name}/pocketvqe-runner"
                cmd = f"{shlex.quote(exe)} job {shlex.quote(rjob)} --out {shlex.quote(rjob + '/out')}"
                proc = self._run(self.ssh_argv(cmd), "running the job")
                parse_ok_line(proc.stdout, f"ssh:{self.host} runner")
                self._run(self.scp_argv([f"{self.host}:{rjob}/out"], str(Path(tmp))), "copying the results back")
            finally:
                try:
                    self._run(self.ssh_argv(f"rm -rf {shlex.quote(remote)}"), "removing the work folder")
                except PocketVQEError:
                    pass
            res = read_job_results(Path(tmp) / "out", target=self.name, emulated=False)
        res.extra["wall_s"] = round(time.monotonic() - t0, 2)
        return res

