"""Device targets: run a ``.pte`` over a sequence of frames, state threaded through, on one target.

    from pocketvqe.device_tests.targets import get_target
    res = get_target("qemu-arm64").run_frames("step.pte", {"mic": mic_frames}, n_state=3,
                                               init_state=state0, time_it=False)
    res.outputs[0]        # (n_frames, *shape) of the first non-state output
    res.final_state       # state after the last frame

Target specs:

============== =====================================================================================
``host``       this machine, in-process (``executorch.runtime``); real timings, thread control
``qemu-arm64`` emulated arm64 Python + executorch-numpy-runtime (``pocketvqe device setup qemu-arm64``);
               ARM kernels, so ARM-exact outputs; no timings
``adb``        the one phone adb sees; ``adb:SERIAL`` for a given one; needs an ``executor_runner``
               built with the Android NDK (``--runner`` / ``POCKETVQE_ADB_RUNNER``)
``ssh:HOST``   an ARM Linux board with Python >= 3.12 and executorch-numpy-runtime
============== =====================================================================================

Contract (all targets): the method's inputs are ``[frame inputs..., state...]`` and its outputs
``[outputs..., new state...]``; the last ``n_state`` of each are the state.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from pocketvqe.device_tests.qemu_env import QEMU, Sysroot
from pocketvqe.errors import PocketVQEError

from .adb import AdbTarget, parse_devices
from .base import RunResult, Target, stack_frames
from .host import HostTarget
from .qemu import QemuArm64Target
from .ssh import SshTarget

__all__ = ["RunResult", "Target", "get_target", "list_targets", "stack_frames", "TARGET_SPECS"]

TARGET_SPECS = ("host", "qemu-arm64", "adb", "adb:SERIAL", "ssh:HOST")


def get_target(spec: str, **options: Any) -> Target:
    """A target from its spec. Options: ``cache_dir`` (qemu-arm64); ``runner``, ``adb`` (adb);
    ``python``, ``ssh_opts`` (ssh)."""
    spec = (spec or "").strip()
    kind, _, arg = spec.partition(":")
    if kind == "host" and not arg:
        return HostTarget()
    if kind in ("qemu-arm64", "qemu") and not arg:
        return QemuArm64Target(cache_dir=options.get("cache_dir"))
    if kind == "adb":
        return AdbTarget(arg or None, runner=options.get("runner"), adb=options.get("adb"))
    if kind == "ssh":
        if not arg:
            raise PocketVQEError("ssh needs a host: give ssh:HOST (user@board or an ~/.ssh/config alias)")
        return SshTarget(arg, python=options.get("python"), ssh_opts=options.get("ssh_opts"))
    raise PocketVQEError(f"unknown target {spec!r}: use one of {', '.join(TARGET_SPECS)}")


def list_targets(cache_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """What this machine can run on now, and what is configured (no emulator start, no ssh)."""
    rows: list[dict[str, Any]] = [{"target": "host", "available": True, "detail": "in-process executorch runtime"}]
    sysroot = Sysroot(cache_dir)
    has_qemu = shutil.which(QEMU) is not None
    if sysroot.ready() and has_qemu:
        detail = f"sysroot {sysroot.root}"
    elif not has_qemu:
        detail = "qemu-aarch64 missing: `apt-get install qemu-user`, then `pocketvqe device setup qemu-arm64`"
    else:
        detail = f"not set up: run `pocketvqe device setup qemu-arm64` (cache {sysroot.cache})"
    rows.append({"target": "qemu-arm64", "available": sysroot.ready() and has_qemu, "detail": detail})

    adb = os.environ.get("ADB", "adb")
    runner = os.environ.get("POCKETVQE_ADB_RUNNER")
    runner_note = f"runner {runner}" if runner else "no runner: set POCKETVQE_ADB_RUNNER or pass --runner"
    if shutil.which(adb):
        try:
            out = subprocess.run([adb, "devices", "-l"], capture_output=True, text=True, timeout=20).stdout
            devices = parse_devices(out)
        except (OSError, subprocess.SubprocessError):
            devices = []
        for d in devices:
            ok = d["state"] == "device"
            rows.append({"target": f"adb:{d['serial']}", "available": ok,
                         "detail": (f"{d.get('model', '?')}; {runner_note}" if ok else f"state {d['state']}: "
                                    "accept the USB debugging prompt / reconnect")})
        if not devices:
            rows.append({"target": "adb", "available": False, "detail": f"no phone connected; {runner_note}"})
    else:
        rows.append({"target": "adb", "available": False, "detail": "adb not installed (`apt-get install adb`)"})

    hosts = [h for h in os.environ.get("POCKETVQE_SSH_HOSTS", "").replace(",", " ").split() if h]
    for h in hosts:
        rows.append({"target": f"ssh:{h}", "available": None, "detail": "configured in POCKETVQE_SSH_HOSTS (not probed: "
                     f"`pocketvqe device describe ssh:{h}` checks it)"})
    if not hosts:
        rows.append({"target": "ssh:HOST", "available": None,
                     "detail": "any board with Python >= 3.12 + executorch-numpy-runtime; list yours in POCKETVQE_SSH_HOSTS"})
    return rows
