"""Audio input/output with validation: every bad file gets an error that names the fix."""
from __future__ import annotations

import os
import warnings
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .errors import PocketVQEError
from .fileio import atomic_path


def audio_info(path: str | os.PathLike, *, channel: int | None = None, what: str = "audio"):
    """Check an audio file without reading its samples -> (soundfile info, the channel to use). Missing,
    empty, truncated and unreadable files, a 0 Hz header and multi-channel files without ``channel``
    are refused with the fix."""
    path = Path(path)
    if not path.exists():
        raise PocketVQEError(f"{what} file {path} does not exist: check the path")
    if path.stat().st_size == 0:
        raise PocketVQEError(f"{what} file {path} is empty (0 bytes): re-export or re-record it")
    short = wav_shortfall(path)
    if short:
        raise PocketVQEError(f"{what} file {path} is truncated: its WAV header promises {short[0]:,} bytes of audio, "
                             f"the file holds {short[1]:,}; copy or export it again")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise PocketVQEError(
            f"{what} file {path} is not readable audio ({exc}): give a WAV/FLAC/OGG file, "
            "or convert it with `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`") from None
    if info.samplerate <= 0:
        raise PocketVQEError(f"{what} file {path} says its sample rate is {info.samplerate} Hz (a broken header): "
                             "re-export it, or rewrite the header with `sox IN -r 16000 OUT.wav` if you know the real rate")
    if info.frames == 0:
        raise PocketVQEError(f"{what} file {path} holds no samples (empty or truncated): re-export it")
    if info.channels > 1:
        if channel is None:
            raise PocketVQEError(
                f"{what} file {path} has {info.channels} channels: pick one with --channel N "
                f"(0..{info.channels - 1}) or downmix it to mono")
        if not 0 <= channel < info.channels:
            raise PocketVQEError(f"--channel {channel} is out of range for {path} ({info.channels} channels)")
    return info, (channel or 0)


def read_blocks(path: str | os.PathLike, block: int, *, channel: int | None = None, what: str = "audio"):
    """The file's samples (one channel, float32 in [-1, 1]) in blocks of ``block`` (the last shorter):
    memory flat in the file's length. NaN/Inf samples are refused as they come."""
    _, ch = audio_info(path, channel=channel, what=what)
    try:
        with sf.SoundFile(str(path)) as f:
            for data in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                x = np.ascontiguousarray(data[:, ch])
                if not np.all(np.isfinite(x)):
                    bad = int(np.count_nonzero(~np.isfinite(x)))
                    raise PocketVQEError(f"{what} file {path} contains {bad} NaN/Inf samples: clean or re-export it")
                yield x
    except sf.LibsndfileError as exc:
        raise PocketVQEError(f"{what} file {path} is not readable audio ({exc}): re-export it") from None


def read_audio(path: str | os.PathLike, *, channel: int | None = None, what: str = "audio") -> tuple[np.ndarray, int]:
    """Read a mono float32 signal in [-1, 1] and its sample rate.

    Multi-channel files need ``channel`` (0-based); NaN/Inf, empty and unreadable files are refused.
    """
    info, _ = audio_info(path, channel=channel, what=what)
    x = np.concatenate(list(read_blocks(path, 1 << 20, channel=channel, what=what)))
    return x, int(info.samplerate)


def wav_shortfall(path: Path) -> tuple[int, int] | None:
    """(bytes the WAV header's data chunk promises, bytes the file holds after it) when a RIFF/WAVE file
    is cut short, else None (not a WAV, complete, or a streamed header whose size field is 0 or 0xFFFFFFFF)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = path.stat().st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, n = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"data":
                held = size - f.tell()
                return (n, held) if 0 < n < 0xFFFFFFFF and held < n else None
            f.seek(n + (n & 1), 1)                        # chunks are word-aligned


def check_signal(x: np.ndarray, what: str = "signal") -> np.ndarray:
    """Validate an in-memory mono signal (1-D, non-empty, finite) and return it as float32."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise PocketVQEError(f"{what} must be mono (1-D), got shape {tuple(x.shape)}: pick one channel")
    if x.size == 0:
        raise PocketVQEError(f"{what} is empty: give at least one hop of audio")
    if not np.all(np.isfinite(x)):
        raise PocketVQEError(f"{what} contains NaN/Inf samples: clean it first")
    return x.astype(np.float32, copy=False)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy), exact length round(len * sr_out / sr_in)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    g = gcd(sr_in, sr_out)
    y = resample_poly(x.astype(np.float64), sr_out // g, sr_in // g)
    n = int(round(len(x) * sr_out / sr_in))
    if len(y) < n:
        y = np.pad(y, (0, n - len(y)))
    return y[:n].astype(np.float32)


def match_length(x: np.ndarray, n: int, what: str = "far-end") -> np.ndarray:
    """Pad (with a warning) or trim ``x`` to ``n`` samples."""
    if len(x) < n:
        warnings.warn(f"{what} signal is shorter than the mic signal ({len(x)} < {n} samples): padding with zeros",
                      stacklevel=2)
        return np.pad(x, (0, n - len(x)))
    return x[:n]


def write_audio(path: str | os.PathLike, x: np.ndarray, sr: int) -> None:
    """Write mono float audio as 16-bit PCM WAV (or per the extension), atomically."""
    x = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), x, sr, format=format_for(path))


def format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}.get(ext, "WAV")
