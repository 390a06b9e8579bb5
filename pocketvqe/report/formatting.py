"""Number and table formatting shared by the HTML page and the markdown file (so both show the same text)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

HEADERS = {
    "target": "target", "variant": "variant", "name": "variant",
    "snr_db_vs_float": "SNR vs float (dB)", "snr_db_vs_int8_ref": "SNR vs int8 ref (dB)",
    "snr_db_vs_host": "SNR vs host (dB)", "snr_db_vs_eager": "SNR vs eager (dB)",
    "snr_db_floor": "floor: vs itself, 1 LSB dither (dB)",
    "max_abs_diff": "max |Δ|", "pesq_vs_float": "PESQ vs float", "pesq_delta": "ΔPESQ",
    "pass": "result",
    "tf_min_snr_db": "teacher-forced SNR, worst output (dB)", "tf_p999_steps": "teacher-forced p99.9 (steps)",
    "tf_max_steps": "teacher-forced max (steps)",
    "p50_us": "p50 (µs)", "p90_us": "p90 (µs)", "p99_us": "p99 (µs)", "max_us": "max (µs)",
    "mean_us": "mean (µs)", "min_us": "min (µs)", "rtf": "RTF", "deadline_misses": "deadline misses",
    "frames": "frames", "threads": "threads", "p50_vs_int8": "p50 / int8",
}
PARITY_ORDER = ["target", "variant", "tf_min_snr_db", "tf_p999_steps", "tf_max_steps", "snr_db_vs_float", "snr_db_vs_int8_ref", "snr_db_vs_host",
                "snr_db_floor", "max_abs_diff", "pesq_vs_float", "pesq_delta"]
BENCH_ORDER = ["name", "p50_us", "p90_us", "p99_us", "max_us", "mean_us", "rtf", "deadline_misses", "frames"]
VERDICT_TEXT = {"pass": "PASS", "fail": "FAIL", "none": "NOT JUDGED"}


def header(key: str) -> str:
    """Column heading for a row key."""
    return HEADERS.get(key, key.replace("_", " "))


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


def fmt_bench(key: str, v: Any) -> str:
    """:func:`fmt_value` plus the ``p50 / int8`` ratio column."""
    if key == "p50_vs_int8":
        return "—" if v is None else f"{float(v):.2f}×"
    return fmt_value(key, v)


def fmt_us(us: float) -> str:
    """A duration given in microseconds, in the unit a reader expects (µs below 1 ms)."""
    if us < 1000:
        return f"{us:.3g} µs"
    return f"{us / 1000:.3g} ms"


def fmt_bytes(n: int) -> str:
    """A byte count in B, KiB, MiB or GiB."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024.0
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
    return str(n)


def fmt_db(v: float) -> str:
    """A level in dB with a typographic minus."""
    return "−∞" if math.isinf(v) else f"{v:.1f}".replace("-", "−")


def fmt_config(v: Any) -> str:
    """A configuration value: lists bracketed, floats short."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_config(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def columns(rows: Sequence[dict], order: Sequence[str], last: Sequence[str] = ("pass",)) -> list[str]:
    """Every key of ``rows``: the ones in ``order`` first, then unknown ones, then ``last``."""
    keys: list[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(k)
    head = [k for k in order if k in keys]
    tail = [k for k in last if k in keys]
    return head + [k for k in keys if k not in head and k not in tail] + tail


def bench_columns(rows: list[dict]) -> list[str]:
    """Columns of the latency table."""
    return columns(rows, BENCH_ORDER, last=("p50_vs_int8",))


def is_text(rows: list[dict], col: str) -> bool:
    """Whether a column holds text (left-aligned) rather than numbers."""
    return any(isinstance(r.get(col), str) for r in rows)
