"""Build report: one self-contained ``report.html`` (tables, spectrograms, latency histogram, audio players)
and a terminal/PR-friendly ``report.md`` with the same numbers; :mod:`.browser` checks the page in Chromium.

>>> data = ReportData(title="DeepVQE-S int8", config={"model": "deepvqe_s"}, sample_rate=16000, hop=160,
...                   audio={"input (mic)": mic, "float": y_float, "int8 host": y_int8},   # doctest: +SKIP
...                   parity=[{"target": "host", "variant": "int8", "snr_db_vs_float": 31.2, "pass": True}])
>>> html_path, md_path = write_report(data, "out/report")                                # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from pocketvqe.fileio import atomic_write_text

from .browser import CHROMIUM_FLAGS, BrowserError, PageCheck, check_page, find_chromium
from .formatting import fmt_bytes, fmt_us, fmt_value
from .markdown import render_markdown
from .model import ReportData
from .page import encode_wav, render_html

__all__ = ["ReportData", "write_report", "render_html", "render_markdown", "encode_wav",
           "fmt_value", "fmt_us", "fmt_bytes",
           "check_page", "find_chromium", "PageCheck", "BrowserError", "CHROMIUM_FLAGS"]


def write_report(data: ReportData, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``out_dir`` (created if needed), each atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if data.created is None:
        data = replace(data, created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    atomic_write_text(html_path, render_html(data))
    atomic_write_text(md_path, render_markdown(data, html_name=html_path.name))
    for p in (html_path, md_path):   # the temp file behind the atomic write is 0600; reports get shared
        os.chmod(p, 0o644)
    return html_path, md_path
