"""What every corpus source builder shares: sizes, the build context, 16 kHz mono file helpers.

A builder gets a :class:`BuildContext`, writes 16 kHz mono WAV files under ``ctx.out`` (a staging
folder renamed into place when the builder returns) and returns their :class:`CorpusEntry` records.

>>> CorpusSizes.quick().rooms
(6, 3, 3)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..audio import resample
from ..errors import PocketVQEError
from .manifest import CorpusEntry

SR = 16000
MININTERVAL = 0.1 if sys.stderr.isatty() else 5.0      # progress bars: fewer updates in logs


@dataclass(frozen=True)
class CorpusSizes:
    """How much of each generated source to make.

    tts_utterances: utterances per flite/festival/espeak-ng voice (2 sentences each);
    piper_utterances: utterances of the piper voice; rooms: simulated rooms for (train, valid, test);
    synthetic_seconds: length of each synthetic noise file; max_files: cap on files per Debian
    speech/noise source (None: all).
    """

    tts_utterances: int = 50
    piper_utterances: int = 120
    rooms: tuple[int, int, int] = (200, 30, 30)
    synthetic_seconds: float = 30.0
    max_files: int | None = None

    def __post_init__(self):
        if self.tts_utterances < 2 or self.piper_utterances < 2:
            raise PocketVQEError("CorpusSizes: give at least 2 utterances per voice (enrollment needs another one)")
        if len(self.rooms) != 3 or min(self.rooms) < 1:
            raise PocketVQEError(f"CorpusSizes.rooms must be 3 positive counts (train, valid, test), got {self.rooms}")
        if not self.synthetic_seconds >= 2:
            raise PocketVQEError("CorpusSizes.synthetic_seconds must be at least 2")
        if self.max_files is not None and self.max_files < 2:
            raise PocketVQEError("CorpusSizes.max_files must be at least 2 (or None for all)")

    @classmethod
    def quick(cls) -> "CorpusSizes":
        """Small sizes for tests and CI: builds in well under a minute."""
        return cls(tts_utterances=4, piper_utterances=4, rooms=(6, 3, 3), synthetic_seconds=8.0, max_files=120)


@dataclass
class BuildContext:
    """Where a builder writes (``out``), what it is called in the corpus (``name``) and shared caches."""

    root: Path
    name: str
    out: Path
    cache: Path
    sizes: CorpusSizes
    progress: bool = True

    def bar(self, iterable=None, **kw):
        return tqdm(iterable, disable=not self.progress, leave=False, dynamic_ncols=True, mininterval=MININTERVAL, **kw)

    def entry(self, file: Path, **kw) -> CorpusEntry:
        """An entry for ``file`` (under ``out``), with its duration read from the file."""
        info = sf.info(str(file))
        rel = f"{self.name}/{file.relative_to(self.out).as_posix()}"
        return CorpusEntry(path=rel, duration=round(info.frames / info.samplerate, 4), sample_rate=info.samplerate,
                           channels=info.channels, **kw)


def load_mono(path: Path, sr: int = SR) -> np.ndarray:
    """Any soundfile-readable file as float32 mono (channels averaged) at ``sr``."""
    x, fs = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(x.mean(axis=1), fs, sr)


def write_pcm16(path: Path, x: np.ndarray, sr: int = SR) -> Path:
    """16-bit WAV; peaks above full scale are scaled down, never clipped."""
    x = np.asarray(x, dtype=np.float32)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0.999:
        x = x * (0.999 / peak)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype="PCM_16")
    return path


def trim_silence(x: np.ndarray, sr: int = SR, floor_db: float = -50.0, pad_s: float = 0.1) -> np.ndarray:
    """Cut leading/trailing parts more than ``-floor_db`` below the peak, keeping ``pad_s`` around speech."""
    if x.size == 0:
        return x
    thr = float(np.max(np.abs(x))) * 10 ** (floor_db / 20)
    idx = np.flatnonzero(np.abs(x) > thr)
    if idx.size == 0:
        return x[:0]
    pad = int(pad_s * sr)
    return x[max(0, idx[0] - pad): idx[-1] + pad + 1]
