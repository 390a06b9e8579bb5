"""The terminal / pull-request ``report.md``: the page's tables and notes as text, no pictures or audio."""
from __future__ import annotations

from typing import Iterable, Sequence

from .formatting import (
    PARITY_ORDER,
    VERDICT_TEXT,
    bench_columns,
    columns,
    fmt_bench,
    fmt_bytes,
    fmt_config,
    fmt_db,
    fmt_value,
    header,
    is_text,
)
from .model import ReportData, audio_model, bench_rows, bench_title, flatten, hop_us, pte_size_ratio, verdict


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(head: Iterable[str], rows: Iterable[Iterable[str]], align: Sequence[str] | None = None) -> str:
    head = [_md_cell(h) for h in head]
    align = align or ["---"] * len(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_rows_table(rows: list[dict], cols: list[str], fmt) -> str:
    def cell(c, v):
        t = fmt(c, v)
        return f"**{t}**" if c == "pass" and v is not None and not v else t
    align = [":---" if is_text(rows, c) else ("---:" if c != "pass" else ":---:") for c in cols]
    return _md_table([header(c) for c in cols], ([cell(c, r.get(c)) for c in cols] for r in rows), align)


def render_markdown(data: ReportData, html_name: str = "report.html") -> str:
    """Tables and notes for terminals and pull requests; pictures and audio stay in the HTML page."""
    hop = hop_us(data)
    rows, per_frame = bench_rows(data.bench, hop)
    result, reasons = verdict(data, rows)
    sr = int(data.sample_rate)
    out = [f"# {data.title}", ""]
    line = f"**{VERDICT_TEXT[result]}**"
    if reasons:
        line += " — " + "; ".join(reasons)
    meta = [f"{sr / 1000:g} kHz", f"hop {data.hop} samples ({data.hop / sr * 1000:g} ms)"]
    if data.created:
        meta.append(f"generated {data.created}")
    out += [line + " · " + " · ".join(meta), "",
            f"Spectrograms, latency histogram and audio players: [{html_name}]({html_name})", ""]
    if data.parity:
        out += ["## Parity", "", _md_rows_table(data.parity, columns(data.parity, PARITY_ORDER), fmt_value), ""]
    if rows:
        out += [f"## {bench_title(data.bench, hop)}", "", _md_rows_table(rows, bench_columns(rows), fmt_bench), ""]
        if hop and per_frame:
            out += ["p50 / int8: median latency divided by the int8 program's. "
                    "RTF: median (p50) processing time per hop / hop duration.", ""]
    if data.audio:
        model = audio_model(data.audio, sr)
        snr = {name: v for _, name, _, v in model.errors}
        head = ["track", "duration (s)", "RMS (dBFS)", "peak (dBFS)", "samples beyond ±1", "NaN/Inf samples"]
        if snr:
            head.append(f"SNR vs {model.ref_name} (dB)")
        table = []
        for name, _ in model.tracks:
            st = model.stats[name]
            row = [name, f"{st['duration_s']:.2f}", fmt_db(st["rms_dbfs"]), fmt_db(st["peak_dbfs"]),
                   str(st["clipped"]), str(st["nonfinite"])]
            if snr:
                row.append(fmt_value("snr_db", snr.get(name)))
            table.append(row)
        out += ["## Audio", "", _md_table(head, table, [":---"] + ["---:"] * (len(head) - 1)), ""]
    if data.artifacts:
        table = [[f"`{a.get('file', '?')}`", fmt_bytes(int(a["bytes"])) if a.get("bytes") is not None else "—",
                  str(a.get("bytes", "—")), f"`{a['sha256']}`" if a.get("sha256") else "—"] for a in data.artifacts]
        out += ["## Artifacts", "", _md_table(["file", "size", "bytes", "sha256"], table,
                                              [":---", "---:", "---:", ":---"]), ""]
        size = pte_size_ratio(data.artifacts)
        if size:
            out += [f"`{size[0]}` is {size[2] * 100:.1f}% of `{size[1]}`.", ""]
    if data.notes:
        out += ["## Notes", ""] + [f"- {str(n)}" for n in data.notes] + [""]
    if data.config:
        out += ["## Configuration and versions", "",
                _md_table(["key", "value"], ([f"`{k}`", fmt_config(v)] for k, v in flatten(data.config)),
                          [":---", ":---"]), ""]
    return "\n".join(out)
