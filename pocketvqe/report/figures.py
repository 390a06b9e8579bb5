"""The report's pictures, drawn with matplotlib's Agg canvas and returned as PNG ``data:`` URIs.

Figures are as wide as the page's content column (:data:`WIDTH_PX`), so they show at 1:1, and every
spectrogram panel has the same plot box and time axis, so panels line up under each other.
"""
from __future__ import annotations

import base64
import io
import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from scipy.signal import stft

from .formatting import fmt_us

CMAP = "inferno"          # perceptually uniform, prints fine in grey
SPEC_FLOOR_DB = 80.0      # colour range below the loudest bin of all panels
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
DEADLINE_COLOR = "#d62728"
WIDTH_PX = 1026           # the page's content width (main 1120 px less paddings and borders)
LEFT_PX = 56              # plot box's left edge; the page indents track headings by as much
DPI = 100

_SPEC_PX = (6, 8, 36, 150)      # spectrogram panel: top, right, bottom margins and plot height
_HIST_PX = (34, 24, 52, 256)    # latency histogram: the same

_NICE_STEPS = (1, 2, 2.5, 5, 10)  # tick steps (times a power of ten)
_MUTED, _FG = "#5d6677", "#1d2330"
_RC = {
    "font.family": "DejaVu Sans", "font.size": 8.5, "axes.unicode_minus": True,
    "axes.edgecolor": "#b9bfc9", "axes.linewidth": 0.8, "axes.labelcolor": _MUTED, "axes.labelsize": 8.5,
    "xtick.color": "#9aa1ad", "ytick.color": "#9aa1ad", "xtick.labelcolor": _MUTED, "ytick.labelcolor": _MUTED,
    "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "figure.facecolor": "white", "savefig.facecolor": "white",
}


@contextmanager
def _figure(width_px: int, height_px: int) -> Iterator[Figure]:
    """A figure on its own Agg canvas (no pyplot state), with the report's style."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        yield fig


def _axes(fig: Figure, width_px: int, margins: tuple[int, int, int, int]):
    """Axes with a plot box placed in pixels: ``LEFT_PX`` from the left, then top/right/bottom/height."""
    top, right, bottom, height = margins
    total = top + height + bottom
    return fig.add_axes((LEFT_PX / width_px, bottom / total, (width_px - LEFT_PX - right) / width_px,
                         height / total))


def _png_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})   # no version stamp: same input, same bytes
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------------------------------
# spectrograms

def stft_params(sr: int) -> tuple[int, int]:
    """(window, hop) in samples: 32 ms Hann, 75 % overlap."""
    win = max(16, int(round(sr * 0.032)) // 2 * 2)
    return win, win // 4


def spectrogram_db(x: np.ndarray, sr: int) -> np.ndarray:
    """Log-magnitude STFT in dB, shape ``(freq_bins, frames)``."""
    win, hop = stft_params(sr)
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    _, _, z = stft(x, fs=sr, window="hann", nperseg=win, noverlap=win - hop, boundary=None, padded=True)
    return 20.0 * np.log10(np.abs(z) + 1e-12)


def _pool_time(s: np.ndarray, max_cols: int) -> np.ndarray:
    """Max-pool frames down to at most ``max_cols`` columns, so short loud events stay visible."""
    cols = s.shape[1]
    if cols <= max_cols:
        return s
    k = int(math.ceil(cols / max_cols))
    s = np.pad(s, ((0, 0), (0, (-cols) % k)), mode="edge")
    return s.reshape(s.shape[0], -1, k).max(axis=2)


def spectrograms(tracks: Sequence[np.ndarray], extra: Sequence[np.ndarray], sr: int) -> tuple[list[str], list[str]]:
    """One PNG per signal, on one colour scale and one time axis, both set by ``tracks``.

    ``extra`` (the int8 error signals) is drawn on that same scale, so a quiet error looks quiet.
    """
    specs = [spectrogram_db(x, sr) for x in tracks]
    extra_specs = [spectrogram_db(x, sr) for x in extra]
    vmax = max(float(s.max()) for s in specs)
    vmin = vmax - SPEC_FLOOR_DB
    dur_max = max(x.size for x in tracks) / sr

    def panel(s_db: np.ndarray, dur: float) -> str:
        top, right, bottom, height = _SPEC_PX
        with _figure(WIDTH_PX, top + height + bottom) as fig:
            ax = _axes(fig, WIDTH_PX, _SPEC_PX)
            cmap = matplotlib.colormaps[CMAP]
            ax.set_facecolor(cmap(0.0))
            if dur > 0:                               # an empty track leaves an empty plot box
                ax.imshow(_pool_time(s_db, WIDTH_PX - LEFT_PX - right), origin="lower", aspect="auto",
                          extent=(0.0, dur, 0.0, sr / 2000.0), cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="antialiased")
            ax.set_xlim(0.0, dur_max if dur_max > 0 else 1.0)
            ax.set_ylim(0.0, sr / 2000.0)
            ax.xaxis.set_major_locator(MaxNLocator(8, steps=_NICE_STEPS))
            ax.yaxis.set_major_locator(MaxNLocator(4, steps=_NICE_STEPS))
            ax.set_xlabel("time (s)", loc="right", labelpad=1)
            ax.set_ylabel("frequency (kHz)")
            return _png_uri(fig)

    return ([panel(s, x.size / sr) for s, x in zip(specs, tracks)],
            [panel(s, x.size / sr) for s, x in zip(extra_specs, extra)])


def colorbar() -> str:
    """The spectrograms' colour scale, in dB below the loudest bin."""
    with _figure(340, 34) as fig:
        ax = fig.add_axes((0.03, 0.58, 0.94, 0.36))
        bar = fig.colorbar(ScalarMappable(Normalize(-SPEC_FLOOR_DB, 0.0), CMAP), cax=ax, orientation="horizontal",
                           ticks=np.arange(-SPEC_FLOOR_DB, 1.0, 20.0))
        bar.outline.set_visible(False)
        ax.tick_params(length=3, pad=1)
        return _png_uri(fig)


# --------------------------------------------------------------------------------------------------
# latency histogram

def latency_histogram(per_frame: dict[str, np.ndarray], hop_us: float | None, colors: dict[str, str]) -> str:
    """Per-frame latency of each variant on a log axis, with p50 (▼) / p99 (▽) marks and the deadline.

    Frames past the deadline are also drawn one by one (a rug on the time axis), so single late frames
    do not vanish in the bins. Returns ``''`` when there is no positive finite latency to draw.
    """
    series = {k: v[np.isfinite(v) & (v > 0)] for k, v in per_frame.items()}
    series = {k: v for k, v in series.items() if v.size}
    if not series:
        return ""
    allv = np.concatenate(list(series.values()))
    lo = float(allv.min()) / 1.3
    hi = max(float(allv.max()), hop_us or 0.0) * 1.3
    edges = np.logspace(math.log10(lo), math.log10(hi), 91)
    hists = {k: np.histogram(v, bins=edges)[0] / v.size * 100.0 for k, v in series.items()}
    ymax = max(float(h.max()) for h in hists.values()) * 1.12 or 1.0

    top, right, bottom, height = _HIST_PX
    with _figure(WIDTH_PX, top + height + bottom) as fig:
        ax = _axes(fig, WIDTH_PX, _HIST_PX)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0.0, ymax)
        ax.xaxis.set_major_locator(LogLocator(10.0, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_locator(LogLocator(10.0, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_us(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(MaxNLocator(5, steps=_NICE_STEPS))
        ax.tick_params(labelsize=9)
        ax.grid(True, which="major", color="#e6e8ec", lw=1)
        ax.grid(True, which="minor", axis="x", color="#f2f3f5", lw=1)
        ax.set_axisbelow(True)
        ax.set_xlabel("per-frame latency (log scale)", color=_FG, fontsize=10)
        ax.set_ylabel("frames (%)", color=_FG, fontsize=10)
        for k, h in hists.items():
            ax.stairs(h, edges, fill=True, color=colors[k], alpha=0.18, lw=0)
            ax.stairs(h, edges, color=colors[k], lw=1.6)
        marks = ax.get_xaxis_transform()          # x in data, y in axes fractions
        for k, v in series.items():
            for q, filled in ((50, True), (99, False)):
                x = float(np.percentile(v, q))
                ax.axvline(x, color=colors[k], lw=1, ls="-" if filled else (0, (3, 3)), alpha=0.75)
                ax.plot([x], [1.045], marker="v", ms=8, mec=colors[k], mew=1.4, mfc=colors[k] if filled else "white",
                        transform=marks, clip_on=False)
        if hop_us:
            ax.axvline(hop_us, color=DEADLINE_COLOR, lw=2, ls=(0, (6, 4)))
            misses = sum(int(np.count_nonzero(v > hop_us)) for v in series.values())
            ax.annotate(f"deadline = hop {fmt_us(hop_us)}", (hop_us, 1.0), xycoords=marks, xytext=(-5, -12),
                        textcoords="offset points", ha="right", color=DEADLINE_COLOR, fontsize=9, weight="bold")
            ax.annotate(f"{misses} frame{'s' if misses != 1 else ''} over it, all variants", (hop_us, 1.0),
                        xycoords=marks, xytext=(-5, -24), textcoords="offset points", ha="right",
                        color=DEADLINE_COLOR, fontsize=8.5)
            for k, v in series.items():
                late = v[v > hop_us][:200]
                if late.size:
                    ax.plot(late, np.full(late.size, 0.02), "o", ms=7, mfc=colors[k], mec=DEADLINE_COLOR,
                            mew=1.2, transform=marks, clip_on=False)
        return _png_uri(fig)
