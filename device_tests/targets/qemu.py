"""qemu-arm64: the aarch64 native runner under user-mode qemu (``qemu-aarch64 -cpu cortex-a76``).

The runner is cross-compiled with Debian's ``g++-aarch64-linux-gnu`` against the executorch aarch64
wheel's runtime libraries (the same version that exported the program) and runs with the cross
toolchain's arm64 libc (``-L /usr/aarch64-linux-gnu``): no Python and no sysroot under emulation.
The kernels are the ARM ones (XNNPACK's aarch64 paths), so outputs are ARM-exact; emulated timings
mean nothing, so runs here return none. ``pocketvqe device setup qemu-arm64`` builds the runner ahead
of time (the first run does it otherwise).
"""
from __future__ import annotations

from .native import NativeTarget


class QemuArm64Target(NativeTarget):
    name = "qemu-arm64"
    arch = "aarch64"
    emulated = True
