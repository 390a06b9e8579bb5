"""A quiet console: library chatter that says nothing about the user's run is filtered, once.

Filtered: the torch / torchao / ExecuTorch loggers below ERROR, and warnings known to be noise on
this stack (pytree's ``LeafSpec`` deprecation, torchao's optional mxfp8 kernel library that this CPU
build does not ship, the ``KernelPreference`` pytree registration note). Every other warning still
shows. :func:`runtime_log` sends what the ExecuTorch C++ runtime prints on stderr
(``[threadpool.cpp]``, ``[cpuinfo_utils.cpp]`` lines) to a log file in the output folder instead.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

LOGGERS = ("executorch", "torchao", "torch._export", "torch.export", "torch._dynamo", "torch.fx",
           "torch.utils._pytree")
NOISE = (r".*isinstance\(treespec, LeafSpec\).*", r".*LeafSpec.*is deprecated.*", r".*KernelPreference.*",
         r".*_C_mxfp8.*", r".*mxfp8.*")
_done = False


def quiet_libraries() -> None:
    """Filter the library noise (idempotent; call it before importing or running torch/executorch code)."""
    global _done
    if _done:
        return
    _done = True
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def runtime_log(path: str | os.PathLike | None) -> Iterator[None]:
    """While inside, file descriptor 2 (where the ExecuTorch runtime's C++ log goes) is appended to
    ``path``; Python's own ``sys.stderr`` (progress bars, stage lines, errors) stays on the console.
    ``path`` None: nothing is redirected."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    console = os.fdopen(os.dup(saved), "w", buffering=1)
    old_stderr = sys.stderr
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 2)
        sys.stderr = console
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sys.stderr = old_stderr
            console.close()
