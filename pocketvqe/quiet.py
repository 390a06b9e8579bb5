"""A quiet console: library chatter that says nothing about the user's run is filtered, once.

Filtered: the torch / torchao / ExecuTorch loggers below ERROR, and warnings known to be noise on
this stack (pytree's ``LeafSpec`` deprecation, torchao's optional mxfp8 kernel library that this CPU
build does not ship, the ``KernelPreference`` pytree registration note). Every other warning still
shows. :func:`runtime_log` sends what the ExecuTorch C++ runtime prints (``[threadpool.cpp]``,
``[cpuinfo_utils.cpp]`` lines) to a log file in the output folder instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

LOGGERS = ("executorch", "torchao", "torch._export", "torch.export", "torch._dynamo", "torch.fx",
           "torch.utils._pytree")
NOISE = (r".*isinstance\(treespec, LeafSpec\).*", r".*LeafSpec.*is deprecated.*", r".*KernelPreference.*",
         r".*_C_mxfp8.*", r".*mxfp8.*",
         r"Output Buffer not found.*", r"Unsupported kwarg encountered.*")   # the ETDump inspector, on every dump
_done = False


def quiet_libraries() -> None:
    """Filter the library noise (idempotent; call it before importing or running torch/executorch code)."""
    global _done
    if _done:
        return
    _done = True
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    filter_noise()


def filter_noise() -> None:
    """Ignore the warnings in :data:`NOISE` (and only those)."""
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def runtime_log(path: str | os.PathLike | None) -> Iterator[None]:
    """While inside, everything printed is appended to ``path``: the ExecuTorch runtime's log lines
    (``[threadpool.cpp]``, ``[cpuinfo_utils.cpp]``; its Python binding writes them to ``sys.stderr``),
    native writes to file descriptors 1 and 2, and Python warnings. Use it around work that has no
    progress bar of its own; stage lines go before and after. ``path`` None: nothing is redirected."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    libc = ctypes.CDLL(None)
    old = (sys.stdout, sys.stderr)
    for f in old:
        f.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1, encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            yield
        finally:
            log.flush()
            libc.fflush(None)                 # C stdio buffers may still hold runtime lines: into the log
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sys.stdout, sys.stderr = old
