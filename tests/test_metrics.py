"""Metrics against known values on real speech (LibriVox clips from Debian's pocketsphinx-testdata)."""
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pocketvqe import metrics
from pocketvqe.audio import resample
from pocketvqe.errors import PocketVQEError
from pocketvqe.metrics import MetricConfig, get_metrics, si_sdr, summarize, tsos

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
SR = 16000


def real_speech(index: int, tmp_dir: Path) -> np.ndarray:
    """A real 16 kHz speech clip: LibriVox (pocketsphinx-testdata), else espeak-ng, else skip."""
    files = sorted(LIBRIVOX.glob("*.wav"))
    if len(files) > index:
        x, sr = sf.read(files[index], dtype="float32")
        return resample(x, sr, SR)
    if shutil.which("espeak-ng"):
        out = tmp_dir / f"speech{index}.wav"
        voices = ["en-us", "en-gb", "en-us+f3", "de", "fr"]
        text = "The quick brown fox jumps over the lazy dog while the committee reviews its long report."
        subprocess.run(["espeak-ng", "-v", voices[index % len(voices)], "-w", str(out), text], check=True)
        x, sr = sf.read(out, dtype="float32")
        return resample(x, sr, SR)
    pytest.skip("no speech: apt-get install pocketsphinx-testdata (or espeak-ng)")


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """Two different talkers' clips (target A, other B), equal length (B zero-padded/trimmed)."""
    tmp = tmp_path_factory.mktemp("speech")
    a, b = real_speech(0, tmp), real_speech(3, tmp)
    b = np.pad(b, (0, max(0, len(a) - len(b))))[:len(a)]
    return a, b


def orthogonal_noise(s: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """Zero-mean noise exactly orthogonal to zero-mean ``s`` with the given SNR re ``s``."""
    n = np.random.default_rng(seed).standard_normal(len(s))
    s0 = s - s.mean()
    n -= n.mean()
    n -= (n @ s0) / (s0 @ s0) * s0
    return n * np.sqrt((s0 @ s0) / (n @ n) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def full(voices):
    """One full evaluation (all default groups incl. DNSMOS) of a perfect estimate of noisy speech."""
    a, _ = voices
    noise = (0.02 * np.random.default_rng(1).standard_normal(len(a))).astype(np.float32)
    return get_metrics(a + noise, a, a)


def test_identity_scores_hit_known_values(full):
    assert full["pesq_wb"] == pytest.approx(4.644, abs=0.01)   # P.862.2 maximum
    assert full["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert full["estoi"] == pytest.approx(1.0, abs=1e-6)
    assert full["si_sdr"] > 150
    assert full["tsos"] == 0.0


def test_input_baseline_is_the_noisy_mix(full):
    assert full["input_pesq_wb"] < 2.0
    assert 0.5 < full["input_stoi"] < 0.97
    assert full["input_estoi"] < full["input_stoi"]
    assert full["input_si_sdr"] < 20
    assert set(k for k in full if not k.startswith("input_")) == {k[6:] for k in full if k.startswith("input_")}


def test_dnsmos_prefers_clean_speech(full):
    assert full["dnsmos_ovrl"] > full["input_dnsmos_ovrl"] + 0.5
    assert full["dnsmos_bak"] > full["input_dnsmos_bak"] + 0.5
    for key in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"):
        assert 1.0 <= full[key] <= 5.0
    assert "pdnsmos_ovrl" not in full and "erle_db" not in full   # groups without their inputs are off


def test_si_sdr_analytic_value(voices):
    a, _ = voices
    s = a.astype(np.float64)
    n = orthogonal_noise(s, 5.0)
    assert si_sdr(s + n, s) == pytest.approx(5.0, abs=1e-6)
    assert si_sdr(3.0 * (s + n), s) == pytest.approx(5.0, abs=1e-6)   # scale-invariant
    m = get_metrics(s + n, s, 0.25 * s, which=["si_sdr"])
    assert m["input_si_sdr"] == pytest.approx(5.0, abs=1e-4)          # float32 inside get_metrics
    assert m["si_sdr"] > 100
    assert math.isnan(si_sdr(np.zeros_like(s), s))


def test_tsos_constructed_cases(voices):
    a, _ = voices
    assert tsos(0.5 * a, a) == 0.0      # -6 dB: not over-suppressed at the 10 dB threshold
    assert tsos(0.25 * a, a) == 1.0     # -12 dB: every active frame over-suppressed
    half = len(a) // 2
    est = a.copy()
    est[half:] *= 0.05                  # -26 dB on the second half only
    cfg = MetricConfig()
    act = metrics.active_frames(metrics.frame_energy(a, SR, cfg), cfg)
    starts = np.arange(len(act)) * int(SR * cfg.hop_ms / 1000)
    expected = np.mean(starts[act] >= half)
    assert tsos(est, a) == pytest.approx(expected, abs=2 / act.sum())   # one straddling frame at most
    assert 0.2 < expected < 0.8
    assert math.isnan(tsos(est, np.zeros_like(a)))


def test_erle_of_known_attenuation_and_silent_target(voices):
    _, b = voices
    far = b
    echo = 0.5 * b
    zeros = np.zeros_like(b)
    m = get_metrics(echo, zeros, 0.1 * echo, far=far, echo=echo)
    assert m["erle_db"] == pytest.approx(20.0, abs=1e-3)
    assert m["input_erle_db"] == pytest.approx(0.0, abs=1e-9)
    for key in ("pesq_wb", "stoi", "estoi", "si_sdr", "tsos"):     # undefined without a target
        assert math.isnan(m[key]) and math.isnan(m["input_" + key])
    for key in ("dnsmos_ovrl", "aecmos_echo", "aecmos_deg"):       # non-intrusive: still defined
        assert math.isfinite(m[key])


def test_erle_in_double_talk_uses_target_silent_frames(voices):
    a, b = voices
    half = len(a) // 2
    near = np.concatenate([a[:half], np.zeros(len(a) - half, np.float32)])
    echo = 0.5 * b
    m = get_metrics(near + echo, near, near + 0.1 * echo, echo=echo, far=b, which=["erle"])
    assert 17.0 < m["erle_db"] < 20.01


def test_aecmos_rewards_echo_removal(voices):
    a, b = voices
    echo = 0.5 * np.concatenate([np.zeros(800, np.float32), b[:-800]])   # 50 ms echo path
    m = get_metrics(a + echo, a, a, far=b, echo=echo, which=["aecmos"])
    assert m["aecmos_echo"] > m["input_aecmos_echo"] + 1.0


def test_interferer_suppression(voices):
    a, b = voices
    half = len(a) // 2
    target = np.concatenate([a[:half], np.zeros(len(a) - half, np.float32)])
    itf = np.concatenate([np.zeros(half, np.float32), 0.7 * b[half:]])
    m = get_metrics(target + itf, target, target + 0.1 * itf, interferer=itf,
                    which=["interferer", "si_sdr"])
    assert m["interferer_suppression_db"] == pytest.approx(20.0, abs=0.5)
    assert m["input_interferer_suppression_db"] == pytest.approx(0.0, abs=0.5)
    # fully overlapped talkers: the interferer never talks alone -> undefined
    m = get_metrics(a + 0.5 * b, a, a, interferer=0.5 * b, which=["interferer"])
    assert math.isnan(m["interferer_suppression_db"])


def test_personalized_dnsmos_penalizes_interfering_talker(voices):
    a, b = voices
    m = get_metrics(a + 0.5 * b, a, a, enroll=a, which=["pdnsmos"])
    assert set(m) == {"pdnsmos_sig", "pdnsmos_bak", "pdnsmos_ovrl",
                      "input_pdnsmos_sig", "input_pdnsmos_bak", "input_pdnsmos_ovrl"}
    assert m["pdnsmos_ovrl"] > m["input_pdnsmos_ovrl"] + 0.5


def test_other_sample_rates_are_resampled(voices):
    a, _ = voices
    a48 = resample(a, SR, 48000)
    m = get_metrics(a48, a48, a48, sr=48000, which=["pesq", "si_sdr"])
    assert m["pesq_wb"] == pytest.approx(4.644, abs=0.01)


def test_sessions_are_cached():
    assert metrics._dnsmos_sessions() is metrics._dnsmos_sessions()
    assert metrics._aecmos_model() is metrics._aecmos_model()


def test_user_errors_name_the_fix(voices):
    a, _ = voices
    with pytest.raises(PocketVQEError, match="samples but mix has"):
        get_metrics(a, a[:-1], a, which=["si_sdr"])
    with pytest.raises(PocketVQEError, match="needs the 'echo' signal"):
        get_metrics(a, a, a, which=["erle"])
    with pytest.raises(PocketVQEError, match="unknown metric group"):
        get_metrics(a, a, a, which=["pesq_nb"])
    with pytest.raises(PocketVQEError, match="NaN"):
        get_metrics(a, a, np.full_like(a, np.nan), which=["si_sdr"])


def test_summarize_ignores_nan():
    rows = [{"pesq_wb": 2.0, "tsos": math.nan, "erle_db": math.nan},
            {"pesq_wb": 3.0, "tsos": 0.5, "erle_db": math.nan}]
    s = summarize(rows)
    assert s["pesq_wb"] == 2.5 and s["tsos"] == 0.5 and math.isnan(s["erle_db"])
    assert summarize([]) == {}


def test_silent_estimate_is_flagged_not_crashing(voices):
    a, _ = voices
    m = get_metrics(a, a, np.zeros_like(a), which=["pesq", "si_sdr", "tsos", "stoi"])
    assert math.isnan(m["pesq_wb"]) and math.isnan(m["si_sdr"])
    assert m["tsos"] == 1.0 and m["stoi"] < 0.1
    short = a[:3200]                               # 0.2 s: too short for PESQ and STOI
    m = get_metrics(short, short, short, which=["pesq", "stoi"])
    assert all(math.isnan(v) for v in m.values())
