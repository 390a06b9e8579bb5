"""Device targets: run a ``.pte`` over a sequence of frames, state threaded through, on one target.

    from pocketvqe.device_tests.targets import get_target
    res = get_target("qemu-arm64").run_frames("step.pte", {"mic": mic_frames}, n_state=3,
                                               init_state=state0, time_it=False)
    res.outputs[0]        # (n_frames, *shape) of the first non-state output
    res.final_state       # state after the last frame

Target specs:

============== =====================================================================================
``host``        this machine, in-process (``executorch.runtime``); real timings, thread control
``host-native`` this machine through the native runner (``pocketvqe-runner``); an app's timings and RSS
``qemu-arm64``  the aarch64 native runner under ``qemu-aarch64 -cpu cortex-a76``; ARM kernels, so
                ARM-exact outputs; no timings
``adb``        the one phone adb sees; ``adb:SERIAL`` for a given one; needs an ``executor_runner``
               built with the Android NDK (``--runner`` / ``POCKETVQE_ADB_RUNNER``)
``ssh:HOST``    an aarch64 Linux board: the aarch64 runner folder is pushed and run there (no Python)
============== =====================================================================================

Contract (all targets): the method's inputs are ``[frame inputs..., state...]`` and its outputs
``[outputs..., new state...]``; the last ``n_state`` of each are the state.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from pocketvqe.device_tests.native import QEMU, runner_dir
from pocketvqe.errors import PocketVQEError

from .adb import AdbTarget, parse_devices
from .base import RunResult, Target, stack_frames
from .host import HostTarget
from .native import NativeTarget
from .qemu import QemuArm64Target
from .ssh import SshTarget

__all__ = ["RunResult", "Target", "get_target", "list_targets", "stack_frames", "TARGET_SPECS"]

TARGET_SPECS = ("host", "host-native", "qemu-arm64", "adb", "adb:SERIAL", "ssh:HOST")


def get_target(spec: str, **options: Any) -> Target:
    """A target from its spec. Options: ``cache_dir`` (the native runners' cache: host-native,
    qemu-arm64, ssh); ``runner``, ``adb`` (adb); ``ssh_opts`` (ssh)."""
    spec = (spec or "").strip()
    kind, _, arg = spec.partition(":")
    if kind == "host" and not arg:
        return HostTarget()
    if kind == "host-native" and not arg:
        return NativeTarget(cache_dir=options.get("cache_dir"))
    if kind in ("qemu-arm64", "qemu") and not arg:
        return QemuArm64Target(cache_dir=options.get("cache_dir"))
    if kind == "adb":
        return AdbTarget(arg or None, runner=options.get("runner"), adb=options.get("adb"))
    if kind == "ssh":
        if not arg:
            raise PocketVQEError("ssh needs a host: give ssh:HOST (user@board or an ~/.ssh/config alias)")
        return SshTarget(arg, ssh_opts=options.get("ssh_opts"), cache_dir=options.get("cache_dir"))
    raise PocketVQEError(f"unknown target {spec!r}: use one of {', '.join(TARGET_SPECS)}")


def list_targets(cache_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """What this machine can run on now, and what is configured (no emulator start, no ssh)."""
    rows: list[dict[str, Any]] = [{"target": "host", "available": True, "detail": "in-process executorch runtime"}]
    for name, arch in (("host-native", "host"), ("qemu-arm64", "aarch64")):
        built = (runner_dir(arch, cache_dir) / "pocketvqe-runner").is_file()
        missing = [t for t in (["cmake", "g++"] + (["aarch64-linux-gnu-g++", QEMU] if arch == "aarch64" else []))
                   if shutil.which(t) is None]
        if missing:
            detail = f"{', '.join(missing)} missing: `make setup` installs them (apt: cmake g++ g++-aarch64-linux-gnu qemu-user)"
        elif built:
            detail = f"native runner {runner_dir(arch, cache_dir)}"
        else:
            detail = f"runner not built yet: the first run builds it, or `pocketvqe runner build --arch {arch}`"
        rows.append({"target": name, "available": not missing, "detail": detail})

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
                     "detail": "any aarch64 Linux board with ssh (the runner folder is pushed); list yours in POCKETVQE_SSH_HOSTS"})
    return rows
