"""Parity / latency report: one self-contained ``report.html`` and a terminal/PR-friendly ``report.md``.

The HTML page needs nothing but itself: spectrograms are PNG ``data:`` URIs written here with numpy +
zlib, the latency histogram is inline SVG, the audio players carry 16-bit WAV ``data:`` URIs, and a
Content-Security-Policy forbids every other source (a stray external reference shows up as a console
error in the browser check, see :mod:`pocketvqe.device_tests.report_browser`). The page runs no script.

>>> data = ReportData(title="DeepVQE-S int8", config={"model": "deepvqe_s"}, sample_rate=16000, hop=160,
...                   audio={"input (mic)": mic, "float": y_float, "int8 host": y_int8},   # doctest: +SKIP
...                   parity=[{"target": "host", "variant": "int8", "snr_db_vs_float": 31.2, "pass": True}])
>>> html_path, md_path = write_report(data, "out/report")                                # doctest: +SKIP
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
import struct
import wave
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from pocketvqe.fileio import atomic_write_text

__all__ = ["ReportData", "write_report", "render_html", "render_markdown", "encode_png", "encode_wav"]


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
    created: str | None = None
    max_audio_s: float | None = 60.0


def write_report(data: ReportData, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``out_dir`` (created if needed), each atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if data.created is None:
        data = _replace_created(data)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    atomic_write_text(html_path, render_html(data))
    atomic_write_text(md_path, render_markdown(data, html_name=html_path.name))
    for p in (html_path, md_path):   # the temp file behind the atomic write is 0600; reports get shared
        os.chmod(p, 0o644)
    return html_path, md_path


def _replace_created(data: ReportData) -> ReportData:
    from dataclasses import replace
    return replace(data, created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


# --------------------------------------------------------------------------------------------------
# number formatting shared by the HTML and markdown tables (so a test can look for the same text)

_HEADERS = {
    "target": "target", "variant": "variant", "name": "variant",
    "snr_db_vs_float": "SNR vs float (dB)", "snr_db_vs_int8_ref": "SNR vs int8 ref (dB)",
    "snr_db_vs_host": "SNR vs host (dB)", "snr_db_vs_eager": "SNR vs eager (dB)",
    "snr_db_floor": "floor: vs itself, 1 LSB dither (dB)",
    "max_abs_diff": "max |Δ|", "pesq_vs_float": "PESQ vs float", "pesq_delta": "ΔPESQ",
    "pass": "result",
    "p50_us": "p50 (µs)", "p90_us": "p90 (µs)", "p99_us": "p99 (µs)", "max_us": "max (µs)",
    "mean_us": "mean (µs)", "min_us": "min (µs)", "rtf": "RTF", "deadline_misses": "deadline misses",
    "frames": "frames", "threads": "threads", "p50_vs_int8": "p50 / int8",
}
_PARITY_ORDER = ["target", "variant", "snr_db_vs_float", "snr_db_vs_int8_ref", "snr_db_vs_host",
                 "snr_db_floor", "max_abs_diff", "pesq_vs_float", "pesq_delta"]
_BENCH_ORDER = ["name", "p50_us", "p90_us", "p99_us", "max_us", "mean_us", "rtf", "deadline_misses", "frames"]


def _header(key: str) -> str:
    return _HEADERS.get(key, key.replace("_", " "))


def fmt_value(key: str, v: Any) -> str:
    """Format one table cell; the same text goes into HTML and markdown."""
    if v is None:
        return "—"
    if key == "pass" or isinstance(v, (bool, np.bool_)):
        return "PASS" if bool(v) else "FAIL"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        k = key.lower()
        if k.endswith("_us"):
            return f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
        if "pesq" in k or "mos" in k:
            return f"{v:.3f}"
        if "snr" in k or "_db" in k or k.endswith("db"):
            return f"{v:.1f}"
        if "rtf" in k or "diff" in k or "err" in k:
            return f"{v:.3g}"
        if "ratio" in k:
            return f"{v:.2f}×"
        return f"{v:.4g}"
    return str(v)


def fmt_us(us: float) -> str:
    """A duration given in microseconds, in the unit a reader expects (µs below 1 ms)."""
    if us < 1000:
        return f"{us:.3g} µs"
    return f"{us / 1000:.3g} ms"


def fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024.0
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
    return str(n)


def _columns(rows: Sequence[dict], order: Sequence[str], last: Sequence[str] = ("pass",)) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(k)
    head = [k for k in order if k in keys]
    tail = [k for k in last if k in keys]
    return head + [k for k in keys if k not in head and k not in tail] + tail


# --------------------------------------------------------------------------------------------------
# audio helpers

def _as_mono_float(x: Any) -> np.ndarray:
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


def encode_wav(x: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV bytes; samples beyond [-1, 1] are clipped."""
    pcm = np.clip(np.round(_as_mono_float(x) * 32767.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _dbfs(v: float) -> float:
    return 20.0 * math.log10(v) if v > 0 else -math.inf


def _snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    err = float(np.sum((x - ref) ** 2))
    sig = float(np.sum(ref ** 2))
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(sig / err) if sig > 0 else -math.inf


def _nonfinite(x: Any) -> int:
    x = np.asarray(x)
    return int(np.count_nonzero(~np.isfinite(x))) if np.issubdtype(x.dtype, np.floating) else 0


def _track_stats(x: np.ndarray, sr: int) -> dict:
    rms = float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return {"duration_s": x.size / sr, "rms_dbfs": _dbfs(rms), "peak_dbfs": _dbfs(peak),
            "clipped": int(np.count_nonzero(np.abs(x) > 1.0))}


def _fmt_db(v: float) -> str:
    return "−∞" if math.isinf(v) else f"{v:.1f}".replace("-", "−")


# --------------------------------------------------------------------------------------------------
# PNG and colour map

# matplotlib's "inferno", sampled at 11 points (perceptually uniform, prints fine in grey)
_INFERNO = np.array([
    (0, 0, 4), (22, 11, 57), (66, 10, 104), (106, 23, 110), (147, 38, 103), (188, 55, 84),
    (221, 81, 58), (243, 120, 25), (252, 165, 10), (246, 215, 70), (252, 255, 164)], dtype=np.float64)


def _lut(n: int = 256) -> np.ndarray:
    pos = np.linspace(0.0, 1.0, len(_INFERNO))
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, pos, _INFERNO[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


_LUT = _lut()


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 image as PNG (8-bit RGB, no interlace)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, c = rgb.shape
    if c != 3 or h == 0 or w == 0:
        raise ValueError(f"encode_png needs a non-empty (H, W, 3) image, got {rgb.shape}")
    raw = np.zeros((h, w * 3 + 1), dtype=np.uint8)  # filter byte 0 (None) per scanline
    raw[:, 1:] = rgb.reshape(h, w * 3)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


# --------------------------------------------------------------------------------------------------
# spectrograms

_SPEC_FLOOR_DB = 80.0   # colour range below the loudest bin of all panels
_MAX_COLS = 1600        # image columns (time) before max-pooling


def _stft_params(sr: int) -> tuple[int, int]:
    win = max(16, int(round(sr * 0.032)) // 2 * 2)   # 32 ms Hann
    return win, win // 4                             # 75 % overlap


def _spectrogram_db(x: np.ndarray, sr: int) -> np.ndarray:
    """Log-magnitude STFT in dB, shape ``(freq_bins, frames)``; 32 ms Hann, 8 ms hop."""
    from scipy.signal import stft
    win, hop = _stft_params(sr)
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    _, _, z = stft(x, fs=sr, window="hann", nperseg=win, noverlap=win - hop, boundary=None, padded=True)
    return 20.0 * np.log10(np.abs(z) + 1e-12)


def _pool_time(s: np.ndarray, max_cols: int) -> np.ndarray:
    cols = s.shape[1]
    if cols <= max_cols:
        return s
    k = int(math.ceil(cols / max_cols))
    pad = (-cols) % k
    s = np.pad(s, ((0, 0), (0, pad)), mode="edge")
    return s.reshape(s.shape[0], -1, k).max(axis=2)


def _spectrogram_png(s_db: np.ndarray, vmin: float, vmax: float) -> bytes:
    s = _pool_time(s_db, _MAX_COLS)[::-1]          # low frequencies at the bottom
    t = np.clip((s - vmin) / max(vmax - vmin, 1e-9), 0.0, 1.0)
    return encode_png(_LUT[np.round(t * 255).astype(np.int64)])


def _nice_step(span: float, target: int = 6) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    step = _nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + 1e-9 * max(1.0, abs(hi)):
        out.append(round(v, 10))
        v += step
    return out


def _tick_label(v: float) -> str:
    return f"{v:g}"


# --------------------------------------------------------------------------------------------------
# latency histogram (inline SVG)

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
_DEADLINE_COLOR = "#d62728"


def _latency_stats(v: np.ndarray, hop_us: float | None) -> dict:
    out = {"frames": int(v.size)}
    if v.size:
        out.update(p50_us=float(np.percentile(v, 50)), p90_us=float(np.percentile(v, 90)),
                   p99_us=float(np.percentile(v, 99)), max_us=float(v.max()), mean_us=float(v.mean()))
        if hop_us:
            out["deadline_misses"] = int(np.count_nonzero(v > hop_us))
            out["rtf"] = float(v.mean() / hop_us)
    return out


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[float]]:
    major, minor = [], []
    for d in range(int(math.floor(math.log10(lo))) - 1, int(math.ceil(math.log10(hi))) + 1):
        for m in range(1, 10):
            v = m * 10.0 ** d
            if lo <= v <= hi:
                (major if m in (1, 2, 5) else minor).append(v)
    return major, minor


def _histogram_svg(per_frame: dict[str, np.ndarray], hop_us: float | None, colors: dict[str, str]) -> str:
    series = {k: v[np.isfinite(v) & (v > 0)] for k, v in per_frame.items()}
    series = {k: v for k, v in series.items() if v.size}
    if not series:
        return ""
    allv = np.concatenate(list(series.values()))
    lo = float(allv.min()) / 1.3
    hi = max(float(allv.max()), hop_us or 0.0) * 1.3
    W, H, ml, mr, mt, mb = 1000, 330, 64, 24, 30, 50
    pw, ph = W - ml - mr, H - mt - mb
    llo, lhi = math.log10(lo), math.log10(hi)

    def X(v: float) -> float:
        return ml + (math.log10(v) - llo) / (lhi - llo) * pw

    nb = 90
    edges = np.logspace(llo, lhi, nb + 1)
    hists = {k: np.histogram(v, bins=edges)[0] / v.size * 100.0 for k, v in series.items()}
    ymax = max(float(h.max()) for h in hists.values()) * 1.12 or 1.0
    yt = _ticks(0.0, ymax, 5)
    ymax = max(ymax, yt[-1])

    def Y(p: float) -> float:
        return mt + ph - p / ymax * ph

    e = html.escape
    parts = [f'<svg class="hist" viewBox="0 0 {W} {H}" role="img" '
             f'aria-label="per-frame latency histogram">']
    major, minor = _log_ticks(lo, hi)
    for v in minor:
        parts.append(f'<line class="grid-minor" x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{mt}" y2="{mt + ph}"/>')
    for v in major:
        x = X(v)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle">{e(fmt_us(v))}</text>')
    for p in yt:
        y = Y(p)
        parts.append(f'<line class="grid" x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end">{p:g}</text>')
    parts.append(f'<rect class="frame" x="{ml}" y="{mt}" width="{pw}" height="{ph}"/>')
    parts.append(f'<text class="axis" x="{ml + pw / 2}" y="{H - 8}" text-anchor="middle">'
                 f'per-frame latency (log scale)</text>')
    parts.append(f'<text class="axis" transform="translate(16 {mt + ph / 2}) rotate(-90)" '
                 f'text-anchor="middle">frames (%)</text>')
    for k, h in hists.items():
        c = colors[k]
        pts = [f"M{X(edges[0]):.1f},{Y(0):.1f}"]
        for i, val in enumerate(h):
            pts.append(f"L{X(edges[i]):.1f},{Y(val):.1f}L{X(edges[i + 1]):.1f},{Y(val):.1f}")
        pts.append(f"L{X(edges[-1]):.1f},{Y(0):.1f}Z")
        parts.append(f'<path d="{"".join(pts)}" fill="{c}" fill-opacity="0.18" stroke="{c}" '
                     f'stroke-width="1.6" stroke-linejoin="round"><title>{e(k)}</title></path>')
    # p50 (filled) and p99 (open) markers above the plot, one row per series
    for k, v in series.items():
        c = colors[k]
        y0 = mt - 4
        for q, filled in ((50, True), (99, False)):
            x = X(float(np.percentile(v, q)))
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" stroke="{c}" '
                         f'stroke-width="1" stroke-dasharray="{"none" if filled else "3 3"}" opacity="0.75"/>')
            fill = c if filled else "#fff"
            parts.append(f'<path d="M{x - 5:.1f},{y0 - 8:.1f}L{x + 5:.1f},{y0 - 8:.1f}L{x:.1f},{y0:.1f}Z" '
                         f'fill="{fill}" stroke="{c}" stroke-width="1.4">'
                         f'<title>{e(k)} p{q} = {e(fmt_us(float(np.percentile(v, q))))}</title></path>')
    if hop_us:
        x = X(hop_us)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt - 14}" y2="{mt + ph}" stroke="{_DEADLINE_COLOR}" '
                     f'stroke-width="2" stroke-dasharray="6 4"/>')
        parts.append(f'<text class="deadline" x="{x - 6:.1f}" y="{mt + 16}" text-anchor="end">'
                     f'deadline = hop {e(fmt_us(hop_us))}</text>')
        misses = sum(int(np.count_nonzero(v > hop_us)) for v in series.values())
        parts.append(f'<text class="deadline-sub" x="{x - 6:.1f}" y="{mt + 32}" text-anchor="end">'
                     f'{misses} frame{"s" if misses != 1 else ""} over it, all variants</text>')
        # a rug of the frames that missed, so single late frames do not vanish in the histogram
        for k, v in series.items():
            for val in v[v > hop_us][:200]:
                parts.append(f'<circle cx="{X(float(val)):.1f}" cy="{mt + ph - 5}" r="3.5" fill="{colors[k]}" '
                             f'stroke="{_DEADLINE_COLOR}" stroke-width="1.2"><title>{e(k)}: '
                             f'{e(fmt_us(float(val)))}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# model of the bench section, shared by HTML and markdown

def _bench_rows(bench: dict | None, hop_us: float | None) -> tuple[list[dict], dict[str, np.ndarray]]:
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
                     **{k: bench[k] for k in _BENCH_ORDER if k in bench and k != "name"}}]
    names = [str(r.get("name", "")) for r in rows]
    for k in per_frame:                       # per-frame data without a row still gets a row
        if k not in names:
            rows.append({"name": k})
    for r in rows:
        v = per_frame.get(str(r.get("name", "")))
        if v is not None and v.size:
            for k, val in _latency_stats(v, hop_us).items():
                r.setdefault(k, val)
    ref = _int8_row(rows)
    if ref is not None and ref.get("p50_us"):
        for r in rows:
            if r.get("p50_us") is not None:
                r["p50_vs_int8"] = float(r["p50_us"]) / float(ref["p50_us"])
    return rows, per_frame


def _int8_row(rows: list[dict]) -> dict | None:
    cands = [r for r in rows if "int8" in str(r.get("name", "")).lower()]
    if not cands:
        return None
    for r in cands:
        if "pte" in str(r.get("name", "")).lower():
            return r
    return cands[0]


def _hop_us(data: ReportData) -> float | None:
    if data.bench and data.bench.get("hop_ms"):
        return float(data.bench["hop_ms"]) * 1000.0
    if data.hop and data.sample_rate:
        return data.hop / data.sample_rate * 1e6
    return None


def _fmt_bench(key: str, v: Any) -> str:
    if key == "p50_vs_int8":
        return "—" if v is None else f"{float(v):.2f}×"
    return fmt_value(key, v)


def _bench_columns(rows: list[dict]) -> list[str]:
    return _columns(rows, _BENCH_ORDER, last=("p50_vs_int8",))



def _verdict(data: ReportData, bench_rows: list[dict]) -> tuple[str, list[str]]:
    """('pass' | 'fail' | 'none', reasons)."""
    reasons, judged = [], False
    for r in data.parity:
        if r.get("pass") is None:
            continue
        judged = True
        if not r["pass"]:
            reasons.append(f"parity {r.get('target', '?')}/{r.get('variant', '?')} failed")
    ref = _int8_row(bench_rows) if bench_rows else None
    misses = None
    if ref is not None and ref.get("deadline_misses") is not None:
        misses = int(ref["deadline_misses"])
    elif data.bench and data.bench.get("deadline_misses") is not None:
        misses = int(data.bench["deadline_misses"])
    if misses is not None:
        judged = True
        if misses:
            reasons.append(f"{misses} deadline misses")
    if not judged:
        return "none", []
    return ("fail" if reasons else "pass"), reasons


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _fmt_config(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_config(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _find_float_track(audio: dict) -> str | None:
    for name in audio:
        if str(name).strip().lower() == "float":
            return name
    for name in audio:
        low = str(name).lower()
        if low.startswith("float") or "fp32" in low:
            return name
    return None


def _pte_size_ratio(artifacts: list[dict]) -> tuple[str, str, float] | None:
    pte = [a for a in artifacts if str(a.get("file", "")).endswith(".pte") and a.get("bytes")]
    i8 = [a for a in pte if "int8" in str(a["file"]).lower()]
    f32 = [a for a in pte if "fp32" in str(a["file"]).lower() or "float" in str(a["file"]).lower()]
    if len(i8) == 1 and len(f32) == 1:
        return i8[0]["file"], f32[0]["file"], i8[0]["bytes"] / f32[0]["bytes"]
    return None


# --------------------------------------------------------------------------------------------------
# HTML

_CSS = """
:root{--fg:#1d2330;--muted:#5d6677;--line:#dde1e8;--bg:#f6f7f9;--card:#fff;--pass:#1a7f37;--pass-bg:#e6f4ea;
--fail:#c62828;--fail-bg:#fdecea;--na:#6b7280;--accent:#3b5bdb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",
"DejaVu Sans",Roboto,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px}
header{display:flex;align-items:flex-start;justify-content:space-between;gap:16px;margin-bottom:8px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:0}
.sub{color:var(--muted);font-size:13px}
.badge{display:inline-block;padding:6px 14px;border-radius:999px;font-weight:700;letter-spacing:.04em;
font-size:14px;white-space:nowrap}
.badge.pass{background:var(--pass-bg);color:var(--pass);border:1px solid #a6d8b4}
.badge.fail{background:var(--fail-bg);color:var(--fail);border:1px solid #f1b0aa}
.badge.none{background:#eef0f3;color:var(--na);border:1px solid var(--line)}
.reasons{color:var(--fail);font-size:12px;text-align:right;margin-top:4px}
section.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin:16px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:16px 0}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 14px}
.kpi .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.kpi .value{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.kpi .hint{color:var(--muted);font-size:12px}
.kpi.pass .value{color:var(--pass)} .kpi.fail .value{color:var(--fail)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{font-size:12px;color:var(--muted);font-weight:600;background:#fafbfc}
td.text,th.text{text-align:left}
tr:last-child td{border-bottom:none}
td.pass{color:var(--pass);background:var(--pass-bg);font-weight:700;text-align:center}
td.fail{color:var(--fail);background:var(--fail-bg);font-weight:700;text-align:center}
td.na{color:var(--na);text-align:center}
tr.ref td{background:#f3f6ff}
.mono{font-family:"DejaVu Sans Mono",ui-monospace,Menlo,monospace;font-size:12px}
.scroll{overflow-x:auto}
.track{margin:0 0 14px}
.track-head{display:flex;align-items:center;gap:14px;margin:0 0 6px 56px;flex-wrap:wrap}
.track-head .stats{color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums}
.bad{color:var(--fail)}
.track-head audio{height:32px;margin-left:auto;width:300px}
.spec{position:relative;margin:0 6px 30px 56px;height:150px;background:#000;border-radius:2px}
.spec img{display:block;height:100%;image-rendering:auto}
.yt,.xt{position:absolute;font-size:11px;color:var(--muted);font-variant-numeric:tabular-nums;line-height:1}
.yt{right:100%;transform:translateY(50%);padding-right:8px}
.yt::after{content:"";position:absolute;right:2px;top:50%;width:4px;border-top:1px solid #9aa1ad}
.xt{top:100%;transform:translateX(-50%);padding-top:8px}
.xt::before{content:"";position:absolute;left:50%;top:2px;height:4px;border-left:1px solid #9aa1ad}
.ylab{position:absolute;left:-54px;top:0;height:100%;writing-mode:vertical-rl;transform:rotate(180deg);
text-align:center;font-size:11px;color:var(--muted)}
.xlab{position:absolute;right:0;top:100%;padding-top:8px;font-size:11px;color:var(--muted);background:var(--card);
padding-left:6px}
.colorbar{display:flex;align-items:center;gap:10px;margin:0 0 14px 56px;font-size:12px;color:var(--muted)}
.colorbar .bar{position:relative;width:320px;height:12px}
.colorbar img{display:block;width:100%;height:100%;border-radius:2px}
.colorbar .cb{position:absolute;top:14px;transform:translateX(-50%);font-size:11px}
.colorbar-wrap{margin-bottom:22px}
h4{margin:20px 0 10px 56px;font-size:13px;color:var(--muted);font-weight:600}
svg.hist{width:100%;height:auto;display:block;font-family:inherit}
svg .grid{stroke:#e6e8ec;stroke-width:1} svg .grid-minor{stroke:#f2f3f5;stroke-width:1}
svg .frame{fill:none;stroke:#b9bfc9;stroke-width:1}
svg .tick{font-size:12px;fill:#5d6677} svg .axis{font-size:13px;fill:#1d2330}
svg .deadline{font-size:12px;fill:#d62728;font-weight:600} svg .deadline-sub{font-size:11px;fill:#d62728}
.legend{display:flex;flex-direction:column;gap:4px;margin-top:8px;font-size:13px;font-variant-numeric:tabular-nums}
.legend .sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:8px;vertical-align:-1px}
.legend .miss{color:var(--fail);font-weight:600} .legend .ok{color:var(--pass)}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;font-size:13px}
.kv .k{color:var(--muted)} .kv .v{font-family:"DejaVu Sans Mono",ui-monospace,monospace;font-size:12px;
word-break:break-all}
ul.notes{margin:0;padding-left:20px} ul.notes li{margin:3px 0}
.empty{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12px;margin-top:24px}
"""

_CSP = ("default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'")


def render_html(data: ReportData) -> str:
    """The whole self-contained page as one string."""
    e = html.escape
    sr = int(data.sample_rate)
    hop_us = _hop_us(data)
    bench_rows, per_frame = _bench_rows(data.bench, hop_us)
    verdict, reasons = _verdict(data, bench_rows)
    created = data.created or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    sub = [f"{sr / 1000:g} kHz", f"hop {data.hop} samples ({data.hop / sr * 1000:g} ms)" if sr else ""]
    for key in ("model", "name", "model_name", "variant"):
        if isinstance(data.config.get(key), (str, int, float)):
            sub.insert(0, str(data.config[key]))
            break
    sub.append(f"generated {created}")

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<link rel="icon" href="data:,">',
           f"<title>{e(data.title)}</title><style>{_CSS}</style></head><body><main>"]
    out.append(f'<header><div><h1>{e(data.title)}</h1><div class="sub">'
               f'{" · ".join(e(s) for s in sub if s)}</div></div><div>'
               f'<div class="badge {verdict}" id="verdict">{ {"pass": "PASS", "fail": "FAIL", "none": "NOT JUDGED"}[verdict] }</div>'
               + "".join(f'<div class="reasons">{e(r)}</div>' for r in reasons) + "</div></header>")
    out.append(_kpis_html(data, bench_rows, hop_us))
    if data.parity:
        out.append(_section("Parity", _table_html(data.parity, _columns(data.parity, _PARITY_ORDER),
                                                  fmt_value, "parity"), "parity"))
    if bench_rows or per_frame:
        out.append(_section(_bench_title(data.bench, hop_us), _bench_html(bench_rows, per_frame, hop_us), "latency"))
    if data.audio:
        out.append(_section("Audio and spectrograms", _audio_html(data.audio, sr, data.max_audio_s), "audio"))
    if data.artifacts:
        out.append(_section("Artifacts", _artifacts_html(data.artifacts), "artifacts"))
    if data.notes:
        out.append(_section("Notes", '<ul class="notes">' + "".join(f"<li>{e(str(n))}</li>" for n in data.notes)
                            + "</ul>", "notes"))
    if data.config:
        out.append(_section("Configuration and versions", '<div class="kv">' + "".join(
            f'<div class="k">{e(k)}</div><div class="v">{e(_fmt_config(v))}</div>'
            for k, v in _flatten(data.config)) + "</div>", "config"))
    out.append(f"<footer>pocketvqe report · {e(created)} · self-contained page: "
               f"images and audio are embedded, nothing is fetched.</footer></main></body></html>")
    return "\n".join(out)


def _section(title: str, body: str, ident: str) -> str:
    return f'<section class="card" id="{ident}"><h2>{html.escape(title)}</h2>{body}</section>'


def _bench_title(bench: dict | None, hop_us: float | None) -> str:
    t = "Latency"
    if bench and bench.get("target"):
        t += f" on {bench['target']}"
    if hop_us:
        t += f" (hop {fmt_us(hop_us)})"
    return t


def _kpis_html(data: ReportData, bench_rows: list[dict], hop_us: float | None) -> str:
    e = html.escape
    cards = []
    judged = [r for r in data.parity if r.get("pass") is not None]
    if judged:
        n_ok = sum(bool(r["pass"]) for r in judged)
        worst = [r["snr_db_vs_float"] for r in data.parity
                 if "int8" in str(r.get("variant", "")) and isinstance(r.get("snr_db_vs_float"), (int, float))]
        hint = f"worst int8 SNR vs float {fmt_value('snr_db', min(worst))} dB" if worst else "rows passing"
        cards.append(("parity", f"{n_ok}/{len(judged)} pass", hint, "pass" if n_ok == len(judged) else "fail"))
    ref = _int8_row(bench_rows)
    src = ref if ref is not None else (data.bench or {})
    if src.get("p50_us") is not None:
        name = src.get("name", "model")
        hint = f"{name} · p99 {fmt_us(float(src['p99_us']))}" if src.get("p99_us") is not None else str(name)
        cards.append(("p50 per hop", fmt_us(float(src["p50_us"])), hint, ""))
    if src.get("rtf") is not None:
        cards.append(("real-time factor", fmt_value("rtf", src["rtf"]),
                      "processing time / audio time", ""))
    if src.get("deadline_misses") is not None:
        m = int(src["deadline_misses"])
        tot = src.get("frames")
        cards.append(("deadline misses", f"{m}" + (f" / {tot}" if tot else ""),
                      f"frames slower than {fmt_us(hop_us)}" if hop_us else "frames over the hop",
                      "fail" if m else "pass"))
    fl = [r for r in bench_rows if "float" in str(r.get("name", "")).lower() and r.get("p50_vs_int8")]
    if ref is not None and fl:
        cards.append(("int8 speed-up", f"{fl[0]['p50_vs_int8']:.1f}×", f"p50 vs {fl[0]['name']}", ""))
    size = _pte_size_ratio(data.artifacts)
    if size:
        cards.append(("int8 .pte size", f"{size[2] * 100:.0f}%", f"of {size[1]}", ""))
    if not cards:
        return ""
    return '<div class="cards">' + "".join(
        f'<div class="kpi {cls}"><div class="label">{e(lab)}</div><div class="value">{e(val)}</div>'
        f'<div class="hint">{e(hint)}</div></div>' for lab, val, hint, cls in cards) + "</div>"


def _table_html(rows: list[dict], cols: list[str], fmt, ident: str, ref_row: dict | None = None) -> str:
    e = html.escape
    head = "".join(f'<th class="{"text" if _is_text(rows, c) else ""}">{e(_header(c))}</th>' for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            text = fmt(c, v)
            if c == "pass":
                cls = "na" if v is None else ("pass" if v else "fail")
            elif _is_text(rows, c):
                cls = "text"
            else:
                cls = ""
            cells.append(f'<td class="{cls}">{e(text)}</td>')
        body.append(f'<tr class="{"ref" if r is ref_row else ""}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="{ident}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _is_text(rows: list[dict], col: str) -> bool:
    return any(isinstance(r.get(col), str) for r in rows)


def _bench_html(rows: list[dict], per_frame: dict[str, np.ndarray], hop_us: float | None) -> str:
    e = html.escape
    parts = []
    if rows:
        parts.append(_table_html(rows, _bench_columns(rows), _fmt_bench, "bench", _int8_row(rows)))
        parts.append('<p class="sub">p50 / int8: median latency of each variant divided by the int8 '
                     'program\'s; RTF: median (p50) processing time per hop / hop duration.</p>')
    names = list(per_frame)
    colors = {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(names)}
    svg = _histogram_svg(per_frame, hop_us, colors)
    if svg:
        parts.append(svg)
        leg = []
        for k in names:
            v = per_frame[k]
            v = v[np.isfinite(v)]
            if not v.size:
                continue
            st = _latency_stats(v, hop_us)
            miss = ""
            if hop_us:
                m = st["deadline_misses"]
                miss = (f' · <span class="{"miss" if m else "ok"}">{m} / {v.size} frames over the deadline</span>'
                        f' · p99 = {st["p99_us"] / hop_us * 100:.2g}% of the hop')
            leg.append(f'<div><span class="sw" style="background:{colors[k]}"></span><b>{e(k)}</b> · '
                       f'p50 {e(fmt_us(st["p50_us"]))} (▼) · p99 {e(fmt_us(st["p99_us"]))} (▽) · '
                       f'max {e(fmt_us(st["max_us"]))}{miss}</div>')
        parts.append('<div class="legend">' + "".join(leg) + "</div>")
    elif rows:
        parts.append('<p class="empty">No per-frame latencies were recorded, so there is no histogram.</p>')
    return "".join(parts)


@dataclass
class _Audio:
    tracks: list          # [(name, float64 mono)] in the caller's order
    stats: dict           # name -> _track_stats(...) plus 'nonfinite'
    ref_name: str | None  # the float track the int8 ones are compared with
    errors: list          # [(label, track name, difference signal, SNR dB vs ref)]


def _audio_model(audio: dict, sr: int) -> _Audio:
    """Shared by HTML and markdown: the signals, their levels, and each int8 track's error vs float."""
    tracks, stats = [], {}
    for k, v in audio.items():
        if v is None:
            continue
        x = _as_mono_float(v)
        tracks.append((str(k), x))
        stats[str(k)] = {**_track_stats(x, sr), "nonfinite": _nonfinite(v)}
    ref_name = _find_float_track(dict(tracks))
    errors = []
    if ref_name is not None:
        ref = dict(tracks)[ref_name]
        for name, x in tracks:
            if name != ref_name and "int8" in name.lower():
                n = min(x.size, ref.size)
                broken = stats[name]["nonfinite"] or stats[ref_name]["nonfinite"]
                snr = math.nan if broken else _snr_db(ref[:n], x[:n])
                errors.append((f"{name} − {ref_name}", name, x[:n] - ref[:n], snr))
    return _Audio(tracks, stats, ref_name, errors)


def _audio_html(audio: dict, sr: int, max_s: float | None = None) -> str:
    e = html.escape
    model = _audio_model(audio, sr)
    if not model.tracks:
        return '<p class="empty">No audio.</p>'
    tracks, stats = model.tracks, model.stats
    full_dur = {name: x.size / sr for name, x in tracks}
    errors = [(label, x, snr) for label, _, x, snr in model.errors]
    if max_s:
        keep = max(1, int(max_s * sr))
        tracks = [(name, x[:keep]) for name, x in tracks]
        errors = [(name, x[:keep], snr) for name, x, snr in errors]
    specs = {name: _spectrogram_db(x, sr) for name, x in tracks}
    err_specs = {name: _spectrogram_db(x, sr) for name, x, _ in errors}
    vmax = max(float(s.max()) for s in specs.values())
    vmin = vmax - _SPEC_FLOOR_DB
    dur_max = max(x.size for _, x in tracks) / sr
    nyq = sr / 2000.0
    f_ticks = [f for f in _ticks(0.0, nyq, 4) if f <= nyq]
    t_ticks = [t for t in _ticks(0.0, dur_max, 10) if t <= 0.93 * dur_max]  # room for "time (s)"
    win, hop = _stft_params(sr)

    def panel(name: str, s_db: np.ndarray, dur: float, head: str) -> str:
        uri = _data_uri("image/png", _spectrogram_png(s_db, vmin, vmax))
        width = 100.0 * dur / dur_max if dur_max > 0 else 100.0
        axes = "".join(f'<span class="yt" style="bottom:{f / nyq * 100:.3f}%">{_tick_label(f)}</span>'
                       for f in f_ticks)
        axes += "".join(f'<span class="xt" style="left:{t / dur_max * 100:.3f}%">{_tick_label(t)}</span>'
                        for t in t_ticks)
        return (f'<div class="track">{head}<div class="spec">'
                f'<img src="{uri}" alt="spectrogram of {e(name)}" style="width:{width:.3f}%">'
                f'{axes}<span class="ylab">frequency (kHz)</span><span class="xlab">time (s)</span></div></div>')

    cb_png = encode_png(_LUT[np.arange(256)][None, :, :])
    cb_ticks = "".join(f'<span class="cb" style="left:{(d + _SPEC_FLOOR_DB) / _SPEC_FLOOR_DB * 100:.2f}%">'
                       f'{d:g}</span>'.replace("-", "−") for d in range(-int(_SPEC_FLOOR_DB), 1, 20))
    parts = [f'<div class="colorbar-wrap"><div class="colorbar"><span>level</span><div class="bar">'
             f'<img src="{_data_uri("image/png", cb_png)}" alt="colour scale">{cb_ticks}</div>'
             f'<span>dB re. loudest bin of all panels · same scale on every panel · '
             f'{win / sr * 1000:g} ms Hann, {hop / sr * 1000:g} ms hop</span></div></div>']
    for name, x in tracks:
        st = stats[name]
        info = (f'{st["duration_s"]:.2f} s · RMS {_fmt_db(st["rms_dbfs"])} dBFS · '
                f'peak {_fmt_db(st["peak_dbfs"])} dBFS')
        if x.size / sr < full_dur[name] - 1e-9:
            info += f' · showing the first {x.size / sr:g} s'
        if st["clipped"]:
            info += f' · <b class="bad">{st["clipped"]} samples beyond ±1 (clipped in playback)</b>'
        if st["nonfinite"]:
            info += f' · <b class="bad">{st["nonfinite"]} NaN/Inf samples (shown as 0)</b>'
        head = (f'<div class="track-head"><h3>{e(name)}</h3><span class="stats">{info}</span>'
                f'<audio controls preload="metadata" title="{e(name)}" '
                f'src="{_data_uri("audio/wav", encode_wav(x, sr))}"></audio></div>')
        parts.append(panel(name, specs[name], x.size / sr, head))
    if errors:
        parts.append('<h4>Quantization error (difference signal, same colour scale)</h4>')
        for name, x, snr in errors:
            st = _track_stats(x, sr)
            head = (f'<div class="track-head"><h3>{e(name)}</h3><span class="stats">'
                    f'RMS {_fmt_db(st["rms_dbfs"])} dBFS · SNR {e(fmt_value("snr_db", snr))} dB</span></div>')
            parts.append(panel(name, err_specs[name], x.size / sr, head))
    return "".join(parts)


def _artifacts_html(artifacts: list[dict]) -> str:
    e = html.escape
    rows = []
    for a in artifacts:
        n = a.get("bytes")
        sha = str(a.get("sha256") or "—")
        extra = ", ".join(f"{k}={v}" for k, v in a.items() if k not in ("file", "bytes", "sha256"))
        rows.append(f'<tr><td class="text mono">{e(str(a.get("file", "?")))}</td>'
                    f'<td>{e(fmt_bytes(int(n))) if n is not None else "—"}</td>'
                    f'<td>{e(str(n)) if n is not None else "—"}</td>'
                    f'<td class="text mono" title="{e(sha)}">{e(sha[:16] + ("…" if len(sha) > 16 else ""))}</td>'
                    f'<td class="text">{e(extra)}</td></tr>')
    return ('<div class="scroll"><table class="artifacts"><thead><tr><th class="text">file</th><th>size</th>'
            '<th>bytes</th><th class="text">sha256</th><th class="text"></th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


# --------------------------------------------------------------------------------------------------
# markdown

def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: Iterable[str], rows: Iterable[Iterable[str]], align: Sequence[str] | None = None) -> str:
    header = [_md_cell(h) for h in header]
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_rows_table(rows: list[dict], cols: list[str], fmt) -> str:
    def cell(c, v):
        t = fmt(c, v)
        return f"**{t}**" if c == "pass" and v is not None and not v else t
    align = [":---" if _is_text(rows, c) else ("---:" if c != "pass" else ":---:") for c in cols]
    return _md_table([_header(c) for c in cols], ([cell(c, r.get(c)) for c in cols] for r in rows), align)


def render_markdown(data: ReportData, html_name: str = "report.html") -> str:
    """Tables and notes for terminals and pull requests; pictures and audio stay in the HTML page."""
    hop_us = _hop_us(data)
    bench_rows, per_frame = _bench_rows(data.bench, hop_us)
    verdict, reasons = _verdict(data, bench_rows)
    sr = int(data.sample_rate)
    out = [f"# {data.title}", ""]
    line = f"**{ {'pass': 'PASS', 'fail': 'FAIL', 'none': 'NOT JUDGED'}[verdict] }**"
    if reasons:
        line += " — " + "; ".join(reasons)
    meta = [f"{sr / 1000:g} kHz", f"hop {data.hop} samples ({data.hop / sr * 1000:g} ms)"]
    if data.created:
        meta.append(f"generated {data.created}")
    out += [line + " · " + " · ".join(meta), "",
            f"Spectrograms, latency histogram and audio players: [{html_name}]({html_name})", ""]
    if data.parity:
        out += ["## Parity", "", _md_rows_table(data.parity, _columns(data.parity, _PARITY_ORDER), fmt_value), ""]
    if bench_rows:
        out += [f"## {_bench_title(data.bench, hop_us)}", "",
                _md_rows_table(bench_rows, _bench_columns(bench_rows), _fmt_bench), ""]
        if hop_us and per_frame:
            out += ["p50 / int8: median latency divided by the int8 program's. "
                    "RTF: median (p50) processing time per hop / hop duration.", ""]
    if data.audio:
        model = _audio_model(data.audio, sr)
        snr = {name: v for _, name, _, v in model.errors}
        header = ["track", "duration (s)", "RMS (dBFS)", "peak (dBFS)", "samples beyond ±1", "NaN/Inf samples"]
        if snr:
            header.append(f"SNR vs {model.ref_name} (dB)")
        rows = []
        for name, _ in model.tracks:
            st = model.stats[name]
            row = [name, f"{st['duration_s']:.2f}", _fmt_db(st["rms_dbfs"]), _fmt_db(st["peak_dbfs"]),
                   str(st["clipped"]), str(st["nonfinite"])]
            if snr:
                row.append(fmt_value("snr_db", snr.get(name)))
            rows.append(row)
        out += ["## Audio", "", _md_table(header, rows, [":---"] + ["---:"] * (len(header) - 1)), ""]
    if data.artifacts:
        rows = [[f"`{a.get('file', '?')}`", fmt_bytes(int(a["bytes"])) if a.get("bytes") is not None else "—",
                 str(a.get("bytes", "—")), f"`{a['sha256']}`" if a.get("sha256") else "—"] for a in data.artifacts]
        out += ["## Artifacts", "", _md_table(["file", "size", "bytes", "sha256"], rows,
                                              [":---", "---:", "---:", ":---"]), ""]
        size = _pte_size_ratio(data.artifacts)
        if size:
            out += [f"`{size[0]}` is {size[2] * 100:.1f}% of `{size[1]}`.", ""]
    if data.notes:
        out += ["## Notes", ""] + [f"- {str(n)}" for n in data.notes] + [""]
    if data.config:
        out += ["## Configuration and versions", "",
                _md_table(["key", "value"], ([f"`{k}`", _fmt_config(v)] for k, v in _flatten(data.config)),
                          [":---", ":---"]), ""]
    return "\n".join(out)
