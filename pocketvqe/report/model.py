"""What a report shows: :class:`ReportData`, and the numbers derived from it that the page and the markdown share."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pocketvqe.signals import snr_db

from .formatting import BENCH_ORDER, fmt_us


@dataclass
class ReportData:
    """Everything one report shows. Every field but ``title`` may be empty; the page leaves that part out.

    audio:     ordered name -> mono signal (float in [-1, 1] or int16), e.g. ``'input (mic)'``, ``'float'``,
               ``'int8 host'``, ``'int8 ARM (qemu)'``. Names containing ``int8`` also get an error
               spectrogram against the ``float`` track when there is one.
    parity:    rows such as ``{'target': 'host', 'variant': 'int8', 'snr_db_vs_float': 31.2,
               'snr_db_vs_int8_ref': 52.0, 'max_abs_diff': 3e-3, 'pesq_vs_float': 4.4, 'pass': True}``;
               unknown keys become extra columns.
    bench:     ``{'target', 'hop_ms', 'p50_us', 'p90_us', 'p99_us', 'max_us', 'rtf', 'deadline_misses',
               'rows': [{'name': 'int8-pte', 'p50_us': ...}, ...], 'per_frame_us': {'int8-pte': [...]}}``.
    artifacts: ``{'file': 'model_int8.pte', 'bytes': n, 'sha256': '...'}``.
    checks:    other checks the verdict counts, ``{'check': 'self-check int8 (qemu-arm64)', 'pass': False,
               'why': '...'}`` (bundled self-checks, enrollment).
    created:   timestamp text; ``None`` means now (UTC).
    max_audio_s: the page's players and spectrograms show at most this many seconds of each track
               (16-bit WAV in base64 costs ~43 kB per second at 16 kHz); levels and SNRs use all of it.
    """

    title: str
    config: dict = field(default_factory=dict)
    sample_rate: int = 16000
    hop: int = 160
    audio: dict = field(default_factory=dict)
    parity: list = field(default_factory=list)
    bench: dict | None = None
    artifacts: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    created: str | None = None
    max_audio_s: float | None = 60.0


# --------------------------------------------------------------------------------------------------
# audio

def as_mono_float(x: Any) -> np.ndarray:
    """Signal as float64 mono: int16 is scaled by 1/32768, 2-D input keeps its first channel."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[:, 0] if x.shape[0] >= x.shape[1] else x[0]
    x = x.reshape(-1)
    if x.dtype == np.int16:
        return x.astype(np.float64) / 32768.0
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float64) / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float64)
    return np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)


def _dbfs(v: float) -> float:
    return 20.0 * math.log10(v) if v > 0 else -math.inf


def _nonfinite(x: Any) -> int:
    x = np.asarray(x)
    return int(np.count_nonzero(~np.isfinite(x))) if np.issubdtype(x.dtype, np.floating) else 0


def track_stats(x: np.ndarray, sr: int) -> dict:
    """Duration, RMS and peak level (dBFS) and the number of samples beyond ±1."""
    rms = float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return {"duration_s": x.size / sr, "rms_dbfs": _dbfs(rms), "peak_dbfs": _dbfs(peak),
            "clipped": int(np.count_nonzero(np.abs(x) > 1.0))}


def _find_float_track(names: list[str]) -> str | None:
    for name in names:
        if name.strip().lower() == "float":
            return name
    for name in names:
        low = name.lower()
        if low.startswith("float") or "fp32" in low:
            return name
    return None


@dataclass
class AudioModel:
    """The signals, their levels, and each int8 track's error against the float one."""

    tracks: list          # [(name, float64 mono)] in the caller's order
    stats: dict           # name -> track_stats(...) plus 'nonfinite'
    ref_name: str | None  # the float track the int8 ones are compared with
    errors: list          # [(label, track name, difference signal, SNR dB vs ref)]


def audio_model(audio: dict, sr: int) -> AudioModel:
    """Build the :class:`AudioModel` of ``ReportData.audio``; ``None`` tracks are skipped."""
    tracks, stats = [], {}
    for k, v in audio.items():
        if v is None:
            continue
        x = as_mono_float(v)
        tracks.append((str(k), x))
        stats[str(k)] = {**track_stats(x, sr), "nonfinite": _nonfinite(v)}
    ref_name = _find_float_track([name for name, _ in tracks])
    errors = []
    if ref_name is not None:
        ref = dict(tracks)[ref_name]
        for name, x in tracks:
            if name != ref_name and "int8" in name.lower():
                n = min(x.size, ref.size)
                broken = stats[name]["nonfinite"] or stats[ref_name]["nonfinite"]
                snr = math.nan if broken else snr_db(ref[:n], x[:n])
                errors.append((f"{name} − {ref_name}", name, x[:n] - ref[:n], snr))
    return AudioModel(tracks, stats, ref_name, errors)


# --------------------------------------------------------------------------------------------------
# latency

def latency_stats(v: np.ndarray, hop_us: float | None) -> dict:
    """Frame count, percentiles, max and mean; with a hop also deadline misses and RTF."""
    out = {"frames": int(v.size)}
    if v.size:
        out.update(p50_us=float(np.percentile(v, 50)), p90_us=float(np.percentile(v, 90)),
                   p99_us=float(np.percentile(v, 99)), max_us=float(v.max()), mean_us=float(v.mean()))
        if hop_us:
            out["deadline_misses"] = int(np.count_nonzero(v > hop_us))
            out["rtf"] = float(v.mean() / hop_us)
    return out


def bench_rows(bench: dict | None, hop_us: float | None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Table rows (given stats win; missing ones come from ``per_frame_us``) and the per-frame arrays."""
    if not bench:
        return [], {}
    per_frame = {str(k): np.asarray(v, dtype=np.float64).reshape(-1)
                 for k, v in (bench.get("per_frame_us") or {}).items()}
    rows = [dict(r) for r in (bench.get("rows") or [])]
    if not rows:
        if per_frame:
            rows = [{"name": k} for k in per_frame]
        elif any(k in bench for k in ("p50_us", "p99_us", "rtf")):
            rows = [{"name": bench.get("variant", "model"),
                     **{k: bench[k] for k in BENCH_ORDER if k in bench and k != "name"}}]
    names = [str(r.get("name", "")) for r in rows]
    for k in per_frame:                       # per-frame data without a row still gets a row
        if k not in names:
            rows.append({"name": k})
    for r in rows:
        v = per_frame.get(str(r.get("name", "")))
        if v is not None and v.size:
            for k, val in latency_stats(v, hop_us).items():
                r.setdefault(k, val)
    ref = int8_row(rows)
    if ref is not None and ref.get("p50_us"):
        for r in rows:
            if r.get("p50_us") is not None:
                r["p50_vs_int8"] = float(r["p50_us"]) / float(ref["p50_us"])
    return rows, per_frame


def int8_row(rows: list[dict]) -> dict | None:
    """The int8 program's row (an ``int8`` name with ``pte`` preferred), or ``None``."""
    cands = [r for r in rows if "int8" in str(r.get("name", "")).lower()]
    if not cands:
        return None
    for r in cands:
        if "pte" in str(r.get("name", "")).lower():
            return r
    return cands[0]


def hop_us(data: ReportData) -> float | None:
    """The real-time deadline per frame in µs: ``bench['hop_ms']``, else hop / sample rate."""
    if data.bench and data.bench.get("hop_ms"):
        return float(data.bench["hop_ms"]) * 1000.0
    if data.hop and data.sample_rate:
        return data.hop / data.sample_rate * 1e6
    return None


MISS_SHARE = 0.01          # int8 steps over the hop that fail the verdict: p99 must fit in it


def verdict(data: ReportData, rows: list[dict]) -> tuple[str, list[str]]:
    """('pass' | 'fail' | 'none', reasons): parity rows with a ``pass``, the other ``checks`` and the
    int8 deadline misses (more than :data:`MISS_SHARE` of the timed steps)."""
    reasons, judged = [], False
    for r in data.parity:
        if r.get("pass") is None:
            continue
        judged = True
        if not r["pass"]:
            reasons.append(f"parity {r.get('target', '?')}/{r.get('variant', '?')} failed")
    for c in data.checks:
        judged = True
        if not c.get("pass"):
            reasons.append(f"{c.get('check', 'check')} failed" + (f" ({c['why']})" if c.get("why") else ""))
    ref = int8_row(rows) if rows else None
    src = ref if ref is not None and ref.get("deadline_misses") is not None else (data.bench or {})
    if src.get("deadline_misses") is not None:
        judged = True
        misses, frames = int(src["deadline_misses"]), src.get("frames") or (data.bench or {}).get("frames")
        # real time means p99 within the hop: more than 1 % of the int8 steps late fails; a rare miss
        # on a shared host (the OS scheduling something else for 20 ms) is reported, not judged
        if misses and (not frames or misses > MISS_SHARE * int(frames)):
            reasons.append(f"{misses} deadline misses" + (f" of {int(frames)} steps (over 1 %)" if frames else ""))
    if not judged:
        return "none", []
    return ("fail" if reasons else "pass"), reasons


def bench_title(bench: dict | None, hop: float | None) -> str:
    """Heading of the latency section, e.g. ``Latency on host (hop 10 ms)``."""
    t = "Latency"
    if bench and bench.get("target"):
        t += f" on {bench['target']}"
    if hop:
        t += f" (hop {fmt_us(hop)})"
    return t


# --------------------------------------------------------------------------------------------------
# artifacts and configuration

def pte_size_ratio(artifacts: list[dict]) -> tuple[str, str, float] | None:
    """(int8 file, fp32 file, size ratio) when there is exactly one of each ``.pte``."""
    pte = [a for a in artifacts if str(a.get("file", "")).endswith(".pte") and a.get("bytes")]
    i8 = [a for a in pte if "int8" in str(a["file"]).lower()]
    f32 = [a for a in pte if "fp32" in str(a["file"]).lower() or "float" in str(a["file"]).lower()]
    if len(i8) == 1 and len(f32) == 1:
        return i8[0]["file"], f32[0]["file"], i8[0]["bytes"] / f32[0]["bytes"]
    return None


def flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys: ``{'a': {'b': 1}}`` -> ``[('a.b', 1)]``."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(flatten(v, key + "."))
        else:
            out.append((key, v))
    return out
