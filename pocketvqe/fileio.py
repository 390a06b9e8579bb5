"""Atomic file writing: a reader never sees half a file, a failed write leaves nothing behind."""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    >>> with atomic_path("out.wav") as tmp:          # doctest: +SKIP
    ...     soundfile.write(tmp, audio, 16000)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or "".join(path.suffixes) or ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def locked(folder: str | os.PathLike) -> Iterator[None]:
    """One holder at a time of a cache ``folder`` (its ``.lock`` file), across processes: torchrun ranks
    preparing one corpus, test workers building one native runner. The lock goes with the process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj):
    """``obj`` made strict JSON, the one policy of every file pocketvqe writes: numpy scalars and arrays
    become Python numbers and lists, paths strings; JSON has no infinity, so +-inf is written as the
    string ``"inf"`` / ``"-inf"`` (an SNR of identical outputs) and NaN (undefined) as ``null``."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def to_json(obj, indent: int | None = 2) -> str:
    """``json.dumps`` of :func:`json_safe` (objects JSON cannot hold are written as their ``str``)."""
    return json.dumps(json_safe(obj), indent=indent, default=str)


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` atomically as strict JSON (:func:`json_safe`) with a trailing newline."""
    atomic_write_text(path, to_json(obj, indent) + "\n")
    return Path(path)
