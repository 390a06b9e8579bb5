"""A separate speaker model for personalization: resemblyzer's d-vector (GE2E LSTM, bundled weights).

The PVQE paper's baseline conditions the enhancer on an embedding from a separately trained speaker
model; ``speaker_embedding="resemblyzer"`` configs use this one. It runs on the host (enrollment is
a one-off), so device programs of such models take the 256-d d-vector as their ``speaker`` input.

>>> d = dvector(enroll_pcm, 16000)        # (256,) unit-norm float32
"""
from __future__ import annotations

import functools
import warnings

import numpy as np

from pocketvqe.errors import PocketVQEError

DIM = 256


@functools.lru_cache(maxsize=1)
def _encoder():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # webrtcvad imports the deprecated pkg_resources
            from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError as exc:
        raise PocketVQEError("this model is conditioned on resemblyzer d-vectors: install them with "
                             "`pip install 'pocketvqe[peers]'`") from exc
    return VoiceEncoder("cpu", verbose=False), preprocess_wav


def dvector(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """d-vector (256,) of an enrollment recording (any rate; resemblyzer resamples to 16 kHz and trims silence)."""
    encoder, preprocess_wav = _encoder()
    wav = preprocess_wav(np.asarray(pcm, np.float32), source_sr=sample_rate)
    if len(wav) < 1600:                               # VAD trimmed almost everything: fall back to the raw signal
        wav = np.asarray(pcm, np.float32)
    return encoder.embed_utterance(wav).astype(np.float32)
