"""Peer enhancers on real speech (LibriVox clips from Debian's pocketsphinx-testdata)."""
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate, fftconvolve

from pocketvqe import peers
from pocketvqe.audio import resample
from pocketvqe.errors import PocketVQEError
from pocketvqe.metrics import get_metrics
from pocketvqe.peers import PEERS, Peer, available_peers, get_peer, real_time_factor

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
SR = 16000
NS_PEERS = [name for name, cls in PEERS.items() if not cls.handles_echo]
STATUS = {s.name: s for s in available_peers()}


def real_speech(index: int, tmp_dir: Path) -> np.ndarray:
    """A real 16 kHz speech clip: LibriVox (pocketsphinx-testdata), else espeak-ng, else skip."""
    files = sorted(LIBRIVOX.glob("*.wav"))
    if len(files) > index:
        x, sr = sf.read(files[index], dtype="float32")
        return resample(x, sr, SR)
    if shutil.which("espeak-ng"):
        out = tmp_dir / f"speech{index}.wav"
        text = "The quick brown fox jumps over the lazy dog while the committee reviews its long report."
        subprocess.run(["espeak-ng", "-v", ["en-us", "en-gb", "de", "fr", "en-us+f3"][index % 5],
                        "-w", str(out), text], check=True)
        x, sr = sf.read(out, dtype="float32")
        return resample(x, sr, SR)
    pytest.skip("no speech: apt-get install pocketsphinx-testdata (or espeak-ng)")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speech")
    return [real_speech(i, tmp) for i in range(4)]


def runnable(name: str) -> Peer:
    if not STATUS[name].available:
        pytest.skip(f"{name}: {STATUS[name].reason}")
    return get_peer(name)


def lag_of(y: np.ndarray, x: np.ndarray, max_lag: int = 2000) -> int:
    """Lag (samples) of ``y`` behind ``x`` at the cross-correlation peak."""
    c = correlate(y.astype(np.float64), x.astype(np.float64), mode="full", method="fft")
    mid = len(x) - 1
    return int(np.argmax(np.abs(c[mid - max_lag:mid + max_lag + 1]))) - max_lag


def power_db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-20)


def test_every_peer_runs_here():
    """All five peers are installable from the registries; a missing one names its install step."""
    missing = {s.name: s.reason for s in available_peers() if not s.available}
    assert not missing, missing


@pytest.mark.parametrize("name", NS_PEERS)
def test_noise_suppressor_reduces_noise_and_keeps_speech(name, speech):
    peer = runnable(name)
    clean = np.concatenate([np.zeros(2 * SR, np.float32), speech[0]])   # 2 s noise-only lead-in
    noise = (0.03 * np.random.default_rng(0).standard_normal(len(clean))).astype(np.float32)
    out = peer.process(clean + noise, SR)
    assert out.shape == clean.shape and out.dtype == np.float32
    reduction = power_db(noise[SR:2 * SR]) - power_db(out[SR:2 * SR])   # after 1 s of adaptation
    assert reduction > 8.0, f"{name} reduced stationary noise by only {reduction:.1f} dB"
    kept = power_db(out[2 * SR:]) - power_db(clean[2 * SR:])
    assert kept > -6.0, f"{name} lost {-kept:.1f} dB of speech"


@pytest.mark.parametrize("name", list(PEERS))
@pytest.mark.parametrize("sr", [16000, 44100])
def test_output_is_aligned_and_equally_long(name, sr, speech):
    peer = runnable(name)
    x = resample(speech[1], SR, sr)
    far = np.zeros_like(x) if peer.handles_echo else None
    y = peer.process(x, sr, far=far)
    assert y.shape == x.shape
    assert lag_of(y, x) == 0, f"{name} output is shifted (delay compensation {peer.delay} is off)"
    assert np.corrcoef(y, x)[0, 1] > 0.6


def test_speex_aec_cancels_echo(speech):
    peer = runnable("speex_aec")
    far = np.concatenate(speech[:3])
    rng = np.random.default_rng(2)
    taps = int(0.1 * SR)
    rir = np.concatenate([np.zeros(160), rng.standard_normal(taps) * np.exp(-np.arange(taps) / (0.02 * SR))])
    rir *= 0.5 / np.linalg.norm(rir)                                   # 10 ms bulk delay, 100 ms tail
    echo = fftconvolve(far, rir)[:len(far)].astype(np.float32)
    mic = echo + (1e-3 * rng.standard_normal(len(far))).astype(np.float32)
    out = peer.process(mic, SR, far=far)
    half = len(far) // 2                                              # after convergence
    zeros = np.zeros(len(far) - half, np.float32)
    m = get_metrics(mic[half:], zeros, out[half:], far=far[half:], echo=echo[half:], which=["erle"])
    assert m["erle_db"] > 12.0


def test_speex_aec_keeps_near_end_speech_in_double_talk(speech):
    peer = runnable("speex_aec")
    near, far = speech[0], speech[3][:len(speech[0])]
    far = np.pad(far, (0, len(near) - len(far)))
    echo = 0.3 * np.concatenate([np.zeros(320, np.float32), far[:-320]])
    out = peer.process(near + echo, SR, far=far)
    assert np.corrcoef(out, near)[0, 1] > 0.8


def test_aec_needs_far_end_and_equal_lengths(speech):
    peer = runnable("speex_aec")
    with pytest.raises(PocketVQEError, match="needs the far-end"):
        peer.process(speech[0], SR)
    with pytest.raises(PocketVQEError, match="far has"):
        peer.process(speech[0], SR, far=speech[0][:-5])


def test_real_time_factor_is_measured(speech):
    peer = runnable("speex_ns")
    rtf = real_time_factor(peer, speech[0], SR, repeats=2)
    assert 0.0 < rtf < 0.5   # speex NS runs ~1000x faster than real time; generous for a busy host


def test_unknown_or_missing_peer_is_explained(monkeypatch):
    with pytest.raises(PocketVQEError, match="unknown peer"):
        get_peer("nope")

    class Absent(Peer):
        name, install_hint = "absent", "pip install absent-peer"

        @classmethod
        def backend(cls):
            return __import__("pocketvqe_no_such_backend")

        def _open(self):
            return None

        def _run(self, state, x, far):
            return x

    monkeypatch.setitem(peers.PEERS, "absent", Absent)
    status = {s.name: s for s in available_peers()}["absent"]
    assert not status.available and "pip install absent-peer" in status.reason
    with pytest.raises(PocketVQEError, match="not available"):
        get_peer("absent")


def test_webrtc_level_is_checked():
    with pytest.raises(PocketVQEError, match="out of range"):
        peers.WebRtcNS(level=7)
