"""Speech-enhancement metrics behind one entry point, :func:`get_metrics`.

Every score of the estimate comes with the same score of the unprocessed mixture under the
key prefixed ``input_`` (asteroid style), so each row says both "how good" and "how much better".

Metric groups (``which=`` names) -> keys they add [inputs they need besides mix/clean/estimate]:

- ``pesq``: ``pesq_wb``, ITU-T P.862.2 wide band (``pesq`` package)
- ``stoi``: ``stoi``, ``estoi`` (``pystoi``)
- ``si_sdr``: ``si_sdr`` in dB (numpy)
- ``tsos``: ``tsos``, target speech over-suppression share
- ``dnsmos``: ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl`` (P.835), ``dnsmos_p808`` (``speechmos``)
- ``pdnsmos``: ``pdnsmos_sig/bak/ovrl``, the DNS-challenge personalized DNSMOS, which rates an
  interfering talker as noise; it is non-intrusive and reads no enrollment [on by default when
  ``enroll`` or ``interferer`` is given]
- ``aecmos``: ``aecmos_echo``, ``aecmos_deg``, AECMOS 16 kHz with the talk type ('st'/'nst'/'dt')
  read from the clean and echo activity [``far``; ``echo`` sharpens the talk type]
- ``erle``: ``erle_db`` [``echo``]
- ``interferer``: ``interferer_suppression_db`` [``interferer``]

Definitions (frames: ``MetricConfig.frame_ms`` windows every ``hop_ms``; a signal's frame is
*active* when its mean square is within ``active_db`` of that signal's loudest frame and above
``floor_dbfs``; a signal with no active frame is *silent*):

- **tsos** (target speech over-suppression, after the PSE/PVQE papers): over the frames where the
  clean target is active, the fraction in which the output's frame energy is more than ``tsos_db``
  (10 dB) below the target's frame energy. 0 = never over-suppressed, 1 = always. The papers give
  the idea (count target frames the enhancer wrongly removed); frame size and thresholds here are
  this project's choice, kept in :class:`MetricConfig`.
- **interferer_suppression_db**: over the frames where the interfering talker (its component in the
  mix) is active and the target is not, ``10 log10(sum interferer^2 / sum output^2)``. The output
  there holds residual interferer plus residual noise, so this is a lower bound on how far the
  interferer was pushed down. The mixture scores about 0 dB. NaN when the interferer never talks
  alone for ``min_frames`` frames (fully overlapped talkers).
- **erle_db**: over the frames where the echo is active and the target is not (far-end single
  talk), ``10 log10(sum mic^2 / sum output^2)`` (the AEC-challenge definition). The mixture scores 0.
- **si_sdr**: ``10 log10(|a s|^2 / |a s - e|^2)``, ``a = <e, s> / <s, s>``, both signals zero-mean;
  capped at 200 dB for an exact scaled copy.
- residual energies in ERLE and suppression are floored at -120 dBFS so a digital-silence output
  gives a large finite number rather than infinity.

Undefined cases give NaN instead of raising: ``pesq_wb``, ``stoi``, ``estoi``, ``si_sdr`` and
``tsos`` when the clean target is silent (far-end single talk); ``pesq_wb`` when PESQ finds no
utterance or the clip is too short; ``stoi``/``estoi`` with under ~0.4 s of target speech;
``pesq_wb`` and ``si_sdr`` when the estimate is all zeros (``tsos`` = 1 flags that case);
``erle_db`` / ``interferer_suppression_db`` with fewer than ``min_frames`` qualifying frames;
``aecmos_*`` when neither talker is active.
DNSMOS and AECMOS are defined on silent signals and are always computed.

ONNX sessions are created once per process (cached), so scoring many clips costs only inference.
Clips shorter than 9.01 s are repeated to that length for DNSMOS, as the reference code does;
DNSMOS and AECMOS see signals clipped to [-1, 1] (their reference code refuses anything else).
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from .audio import check_signal, resample
from .errors import PocketVQEError

SR = 16000
GROUPS = ("pesq", "stoi", "si_sdr", "tsos", "dnsmos", "pdnsmos", "aecmos", "erle", "interferer")
_DNSMOS_LEN = 9.01  # seconds per DNSMOS window (reference implementation)
_SI_SDR_CAP_DB = 200.0
_RESIDUAL_FLOOR = 1e-12  # mean square, -120 dBFS


@dataclass(frozen=True)
class MetricConfig:
    """Framing and thresholds of the frame-based metrics (tsos, erle, interferer, talk type).

    >>> MetricConfig().tsos_db
    10.0
    """
    frame_ms: float = 20.0
    hop_ms: float = 10.0
    active_db: float = -40.0   # active: within 40 dB of the signal's loudest frame ...
    floor_dbfs: float = -70.0  # ... and louder than -70 dBFS mean square
    tsos_db: float = 10.0      # over-suppressed: output more than 10 dB below the target
    min_frames: int = 10       # fewest qualifying frames for erle / interferer suppression


# ---------------------------------------------------------------------------------------------
# plain numpy metrics

def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB; NaN if either signal is all zeros.

    >>> s = np.sin(np.arange(16000) * 0.05)
    >>> si_sdr(0.5 * s, s) > 100
    True
    """
    e = np.asarray(estimate, np.float64) - np.mean(estimate)
    s = np.asarray(reference, np.float64) - np.mean(reference)
    ss, ee = float(s @ s), float(e @ e)
    if ss == 0.0 or ee == 0.0:
        return math.nan
    target = (float(e @ s) / ss) * s
    tt = float(target @ target)
    if tt == 0.0:
        return -_SI_SDR_CAP_DB
    res = e - target
    rr = max(float(res @ res), tt * 10 ** (-_SI_SDR_CAP_DB / 10))
    return 10 * math.log10(tt / rr)


def frame_energy(x: np.ndarray, sr: int = SR, config: MetricConfig = MetricConfig()) -> np.ndarray:
    """Mean square of each frame (``frame_ms`` long, every ``hop_ms``); a short tail is zero-padded."""
    n, hop = int(sr * config.frame_ms / 1000), int(sr * config.hop_ms / 1000)
    x = np.asarray(x, np.float64)
    count = max(1, 1 + math.ceil((len(x) - n) / hop))
    x = np.pad(x, (0, max(0, (count - 1) * hop + n - len(x))))
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop][:count]
    return np.mean(frames ** 2, axis=1)


def active_frames(energy: np.ndarray, config: MetricConfig = MetricConfig()) -> np.ndarray:
    """Boolean mask of active frames: within ``active_db`` of the loudest and above ``floor_dbfs``."""
    peak = float(np.max(energy)) if energy.size else 0.0
    thr = max(peak * 10 ** (config.active_db / 10), 10 ** (config.floor_dbfs / 10))
    return energy >= thr


def tsos(estimate: np.ndarray, clean: np.ndarray, sr: int = SR, config: MetricConfig = MetricConfig()) -> float:
    """Share of target-active frames where the estimate is more than ``tsos_db`` below the target.

    >>> s = np.sin(np.arange(16000) * 0.05)
    >>> tsos(s, s), tsos(0.01 * s, s)
    (0.0, 1.0)
    """
    ec, ee = frame_energy(clean, sr, config), frame_energy(estimate, sr, config)
    act = active_frames(ec, config)
    if not act.any():
        return math.nan
    over = ee[act] < ec[act] * 10 ** (-config.tsos_db / 10)
    return float(np.mean(over))


def energy_reduction_db(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray,
                        sr: int = SR, config: MetricConfig = MetricConfig()) -> float:
    """``10 log10(sum reference^2 / sum estimate^2)`` over the frames in ``mask`` (NaN if too few)."""
    if int(np.count_nonzero(mask)) < config.min_frames:
        return math.nan
    num = float(np.sum(frame_energy(reference, sr, config)[mask]))
    den = max(float(np.sum(frame_energy(estimate, sr, config)[mask])), _RESIDUAL_FLOOR * np.count_nonzero(mask))
    return 10 * math.log10(max(num, _RESIDUAL_FLOOR) / den)


# ---------------------------------------------------------------------------------------------
# packaged metrics (lazy imports, cached sessions)

def _need(module: str, package: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise PocketVQEError(f"this metric needs the Python package {package!r} ({exc}): "
                             f"install it with `pip install {package}`") from None


def pesq_wb(estimate: np.ndarray, clean: np.ndarray) -> float:
    """Wide-band PESQ (P.862.2) at 16 kHz; NaN when PESQ finds no utterance or the estimate is silent."""
    pesq = _need("pesq", "pesq")
    if not np.any(estimate):
        return math.nan  # the C code fails on an all-zero signal
    try:
        return float(pesq.pesq(SR, clean.astype(np.float64), estimate.astype(np.float64), "wb"))
    except (pesq.NoUtterancesError, pesq.BufferTooShortError, ValueError):
        return math.nan


def stoi(estimate: np.ndarray, clean: np.ndarray, extended: bool = False) -> float:
    """(E)STOI via pystoi; NaN when too few speech frames remain after pystoi's silence removal."""
    pystoi = _need("pystoi", "pystoi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="Not enough STFT frames")
        value = float(pystoi.stoi(clean.astype(np.float64), estimate.astype(np.float64), SR, extended=extended))
    return math.nan if value == 1e-5 else value  # pystoi's "not enough frames" sentinel


@functools.cache
def _dnsmos_sessions():
    """(speechmos DNSMOS object with P.835 + P.808 sessions, personalized P.835 session), built once."""
    _need("onnxruntime", "onnxruntime")
    _need("librosa", "librosa")
    sm = _need("speechmos.dnsmos", "speechmos")
    import onnxruntime as ort
    base = os.path.dirname(sm.__file__)
    std = sm.DNSMOS(os.path.join(base, "dnsmos_models", "sig_bak_ovr.onnx"),
                    os.path.join(base, "dnsmos_models", "model_v8.onnx"))
    pers = ort.InferenceSession(os.path.join(base, "pdnsmos_models", "sig_bak_ovr.onnx"),
                                providers=["CPUExecutionProvider"])
    return std, pers


def dnsmos(x: np.ndarray, personalized: bool = False, standard: bool = True) -> dict[str, float]:
    """DNSMOS P.835 (sig/bak/ovrl) and P.808 of a 16 kHz clip, mean over 9.01 s windows every 1 s.

    ``personalized`` adds ``pdnsmos_*`` from the DNS-challenge personalized model, which rates an
    interfering talker as noise; it reads no enrollment.
    """
    std, pers = _dnsmos_sessions()
    audio = np.clip(np.asarray(x, np.float32), -1.0, 1.0)
    n = int(_DNSMOS_LEN * SR)
    while len(audio) < n:
        audio = np.append(audio, audio)
    rows = []
    for k in range(int(np.floor(len(audio) / SR) - _DNSMOS_LEN) + 1):
        seg = audio[k * SR:k * SR + n]
        if len(seg) < n:
            continue
        row = {}
        if standard:
            mel = std.audio_melspec(audio=seg[:-160]).astype(np.float32)[None]
            row["dnsmos_p808"] = float(std.p808_onnx_sess.run(None, {"input_1": mel})[0][0][0])
            raw = std.onnx_sess.run(None, {"input_1": seg[None]})[0][0]
            for name, v in zip(("sig", "bak", "ovrl"), std.get_polyfit_val(*raw, False)):
                row[f"dnsmos_{name}"] = float(v)
        if personalized:
            raw = pers.run(None, {"input_1": seg[None]})[0][0]
            for name, v in zip(("sig", "bak", "ovrl"), std.get_polyfit_val(*raw, True)):
                row[f"pdnsmos_{name}"] = float(v)
        rows.append(row)
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


@functools.cache
def _aecmos_model():
    _need("librosa", "librosa")
    am = _need("speechmos.aecmos", "speechmos")
    return am.AECMOS("aecmos_16kHz")


def aecmos(far: np.ndarray, mic: np.ndarray, out: np.ndarray, talk_type: str) -> dict[str, float]:
    """AECMOS echo and degradation MOS; ``talk_type`` is 'st' (far-end only), 'nst' or 'dt'."""
    model = _aecmos_model()
    clip = lambda a: np.clip(np.asarray(a, np.float32), -1.0, 1.0)  # noqa: E731
    r = model({"lpb": clip(far), "mic": clip(mic), "enh": clip(out)}, talk_type)
    return {"aecmos_echo": float(r["echo_mos"]), "aecmos_deg": float(r["deg_mos"])}


# ---------------------------------------------------------------------------------------------
# the one entry point

def get_metrics(mix: np.ndarray, clean: np.ndarray, estimate: np.ndarray, *, sr: int = SR,
                far: np.ndarray | None = None, echo: np.ndarray | None = None,
                enroll: np.ndarray | None = None, interferer: np.ndarray | None = None,
                which: Iterable[str] | None = None,
                config: MetricConfig = MetricConfig()) -> dict[str, float]:
    """Score ``estimate`` and, as ``input_<key>``, the unprocessed ``mix`` against ``clean``.

    ``mix``, ``clean``, ``estimate`` and the optional ``far`` (far-end reference / loopback),
    ``echo`` and ``interferer`` (their components inside ``mix``) are mono, equally long, at ``sr``
    (resampled to 16 kHz here). ``clean`` may be all zeros (far-end single talk): intrusive metrics
    then give NaN. ``enroll`` marks a personalized evaluation (turns ``pdnsmos`` on by default);
    no metric reads its samples. ``which`` picks groups from :data:`GROUPS`; by default every
    group whose inputs were given. See the module docstring for definitions.

    >>> s = np.sin(np.arange(32000) * 0.05) * 0.3
    >>> m = get_metrics(s + 0.01, s, s, which=["si_sdr", "tsos"])
    >>> m["tsos"], m["input_tsos"]
    (0.0, 0.0)
    """
    given = {"far": far, "echo": echo, "interferer": interferer}
    groups = _resolve_groups(which, given, personalized=enroll is not None or interferer is not None)
    mix, clean, estimate = _prepare(mix, sr, "mix"), _prepare(clean, sr, "clean"), _prepare(estimate, sr, "estimate")
    _same_length(len(mix), clean=clean, estimate=estimate)
    extra = {k: _prepare(v, sr, k) for k, v in given.items() if v is not None}
    _same_length(len(mix), **extra)
    if enroll is not None:
        check_signal(enroll, "enroll")

    clean_active = active_frames(frame_energy(clean, SR, config), config)
    ctx = _Context(mix, clean, clean_active, extra, config)
    out: dict[str, float] = {}
    for prefix, signal in (("", estimate), ("input_", mix)):
        for key, value in _score(signal, ctx, groups).items():
            out[prefix + key] = value
    return out


def summarize(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of every key over ``rows``, ignoring NaN (NaN where a key has no number at all).

    >>> summarize([{"pesq_wb": 2.0, "tsos": math.nan}, {"pesq_wb": 3.0, "tsos": 0.5}])
    {'pesq_wb': 2.5, 'tsos': 0.5}
    """
    values: dict[str, list[float]] = {}
    for row in rows:
        for key, v in row.items():
            values.setdefault(key, []).append(float(v))
    out = {}
    for key, vs in values.items():
        finite = [v for v in vs if not math.isnan(v)]
        out[key] = float(np.mean(finite)) if finite else math.nan
    return out


# ---------------------------------------------------------------------------------------------
# helpers

@dataclass(frozen=True)
class _Context:
    mix: np.ndarray
    clean: np.ndarray
    clean_active: np.ndarray
    extra: dict
    config: MetricConfig


_NEEDS = {"aecmos": "far", "erle": "echo", "interferer": "interferer"}


def _resolve_groups(which, given, personalized: bool) -> tuple[str, ...]:
    if which is None:
        groups = [g for g in GROUPS if g not in _NEEDS or given[_NEEDS[g]] is not None]
        return tuple(g for g in groups if g != "pdnsmos" or personalized)
    which = (which,) if isinstance(which, str) else tuple(which)
    unknown = [g for g in which if g not in GROUPS]
    if unknown:
        raise PocketVQEError(f"unknown metric group(s) {unknown}: choose from {list(GROUPS)}")
    for g in which:
        if g in _NEEDS and given[_NEEDS[g]] is None:
            raise PocketVQEError(f"metric {g!r} needs the {_NEEDS[g]!r} signal: pass {_NEEDS[g]}=... "
                                 f"or leave {g!r} out of which=")
    return which


def _prepare(x, sr: int, name: str) -> np.ndarray:
    x = check_signal(x, name)
    return resample(x, sr, SR) if sr != SR else x


def _same_length(n: int, **signals: np.ndarray) -> None:
    for name, x in signals.items():
        if len(x) != n:
            raise PocketVQEError(f"{name} has {len(x)} samples but mix has {n}: give equally long, "
                                 "time-aligned signals (trim or pad them first)")


def _score(signal: np.ndarray, ctx: _Context, groups: tuple[str, ...]) -> dict[str, float]:
    cfg, clean = ctx.config, ctx.clean
    silent_clean = not ctx.clean_active.any()
    nan = math.nan
    out: dict[str, float] = {}
    if "pesq" in groups:
        out["pesq_wb"] = nan if silent_clean else pesq_wb(signal, clean)
    if "stoi" in groups:
        out["stoi"] = nan if silent_clean else stoi(signal, clean)
        out["estoi"] = nan if silent_clean else stoi(signal, clean, extended=True)
    if "si_sdr" in groups:
        out["si_sdr"] = nan if silent_clean else si_sdr(signal, clean)
    if "tsos" in groups:
        out["tsos"] = tsos(signal, clean, SR, cfg)
    if "dnsmos" in groups or "pdnsmos" in groups:
        out.update(dnsmos(signal, personalized="pdnsmos" in groups, standard="dnsmos" in groups))
    if "aecmos" in groups:
        talk = _talk_type(ctx)
        keys = ("aecmos_echo", "aecmos_deg")
        out.update(dict.fromkeys(keys, nan) if talk is None else aecmos(ctx.extra["far"], ctx.mix, signal, talk))
    if "erle" in groups:
        echo_active = active_frames(frame_energy(ctx.extra["echo"], SR, cfg), cfg)
        out["erle_db"] = energy_reduction_db(ctx.mix, signal, echo_active & ~ctx.clean_active, SR, cfg)
    if "interferer" in groups:
        itf = ctx.extra["interferer"]
        itf_active = active_frames(frame_energy(itf, SR, cfg), cfg)
        out["interferer_suppression_db"] = energy_reduction_db(itf, signal, itf_active & ~ctx.clean_active, SR, cfg)
    return out


def _talk_type(ctx: _Context) -> str | None:
    """'dt', 'st' (far end only) or 'nst' (near end only) from the clean and echo (else far) activity."""
    far_side = ctx.extra.get("echo", ctx.extra["far"])
    far_on = bool(active_frames(frame_energy(far_side, SR, ctx.config), ctx.config).any())
    near_on = bool(ctx.clean_active.any())
    return {(True, True): "dt", (True, False): "st", (False, True): "nst"}.get((far_on, near_on))
