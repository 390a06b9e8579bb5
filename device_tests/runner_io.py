"""How the harness talks to a runner on a target: how its result line reads, and how a command runs
with an error that names the fix. Shared by the targets and :mod:`pocketvqe.device_tests.native`."""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from pocketvqe.errors import PocketVQEError

RUNNER_OK_MARK = "POCKETVQE_RUNNER_OK"


def parse_ok_line(stdout: str, what: str) -> dict[str, Any]:
    """The JSON after the runner's last ``POCKETVQE_RUNNER_OK`` line; its error line raises."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RUNNER_OK_MARK):
            return json.loads(line[len(RUNNER_OK_MARK):].strip() or "{}")
        if line.startswith("POCKETVQE_RUNNER_ERROR"):
            raise PocketVQEError(f"{what}: {line.split(':', 1)[1].strip()}")
    raise PocketVQEError(f"{what} printed no result line; its output ended with:\n{stdout[-1500:]}\n"
                         "check that the runner was built for this target's architecture")


def run_cmd(cmd: Sequence[str], *, what: str, fix: str, timeout: float | None = None,
            env: Mapping[str, str] | None = None, input_text: str | None = None,
            check: bool = True, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; a failure raises PocketVQEError naming ``fix``."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env,
                              input=input_text, cwd=cwd)
    except FileNotFoundError:
        raise PocketVQEError(f"{what}: `{cmd[0]}` is not installed or not on PATH: {fix}") from None
    except subprocess.TimeoutExpired:
        raise PocketVQEError(f"{what}: timed out after {timeout:.0f} s: {fix}") from None
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
        raise PocketVQEError(f"{what} failed (exit {proc.returncode}):\n  " + "\n  ".join(tail) + f"\n{fix}")
    return proc
