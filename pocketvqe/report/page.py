"""The self-contained ``report.html``: one page, no script, every image and sound embedded as a ``data:`` URI.

A Content-Security-Policy forbids every other source, so a stray external reference shows up as a console
error in the browser check (:mod:`pocketvqe.report.browser`).
"""
from __future__ import annotations

import base64
import html
import io
import wave
from datetime import datetime, timezone

import numpy as np

from . import figures
from .formatting import (
    PARITY_ORDER,
    VERDICT_TEXT,
    bench_columns,
    columns,
    fmt_bench,
    fmt_bytes,
    fmt_config,
    fmt_db,
    fmt_us,
    fmt_value,
    header,
    is_text,
)
from .model import (
    ReportData,
    as_mono_float,
    audio_model,
    bench_rows,
    bench_title,
    flatten,
    hop_us,
    int8_row,
    latency_stats,
    pte_size_ratio,
    track_stats,
    verdict,
)

_INDENT = f"{figures.LEFT_PX / figures.WIDTH_PX * 100:.3f}%"   # headings start where the figures' plot box does

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
img.fig{display:block;width:100%;height:auto}
.track{margin:0 0 10px}
.track-head{display:flex;align-items:center;gap:14px;margin:0 0 2px INDENT;flex-wrap:wrap}
.track-head .stats{color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums}
.bad{color:var(--fail)}
.track-head audio{height:32px;margin-left:auto;width:300px}
.colorbar{display:flex;align-items:flex-start;gap:10px;margin:0 0 18px INDENT;font-size:12px;color:var(--muted)}
.colorbar img{display:block;width:340px;height:auto}
h4{margin:20px 0 10px INDENT;font-size:13px;color:var(--muted);font-weight:600}
.legend{display:flex;flex-direction:column;gap:4px;margin-top:8px;font-size:13px;font-variant-numeric:tabular-nums}
.legend .sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:8px;vertical-align:-1px}
.legend .miss{color:var(--fail);font-weight:600} .legend .ok{color:var(--pass)}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;font-size:13px}
.kv .k{color:var(--muted)} .kv .v{font-family:"DejaVu Sans Mono",ui-monospace,monospace;font-size:12px;
word-break:break-all}
ul.notes{margin:0;padding-left:20px} ul.notes li{margin:3px 0}
.empty{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12px;margin-top:24px}
""".replace("INDENT", _INDENT)

_CSP = ("default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'")

e = html.escape


def encode_wav(x: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV bytes; samples beyond [-1, 1] are clipped."""
    pcm = np.clip(np.round(as_mono_float(x) * 32767.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


def render_html(data: ReportData) -> str:
    """The whole self-contained page as one string."""
    sr = int(data.sample_rate)
    hop = hop_us(data)
    rows, per_frame = bench_rows(data.bench, hop)
    result, reasons = verdict(data, rows)
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
               f'<div class="badge {result}" id="verdict">{VERDICT_TEXT[result]}</div>'
               + "".join(f'<div class="reasons">{e(r)}</div>' for r in reasons) + "</div></header>")
    out.append(_kpis_html(data, rows, hop))
    if data.parity:
        out.append(_section("Parity", _table_html(data.parity, columns(data.parity, PARITY_ORDER),
                                                  fmt_value, "parity"), "parity"))
    if rows or per_frame:
        out.append(_section(bench_title(data.bench, hop), _bench_html(rows, per_frame, hop), "latency"))
    if data.audio:
        out.append(_section("Audio and spectrograms", _audio_html(data.audio, sr, data.max_audio_s), "audio"))
    if data.artifacts:
        out.append(_section("Artifacts", _artifacts_html(data.artifacts), "artifacts"))
    if data.notes:
        out.append(_section("Notes", '<ul class="notes">' + "".join(f"<li>{e(str(n))}</li>" for n in data.notes)
                            + "</ul>", "notes"))
    if data.config:
        out.append(_section("Configuration and versions", '<div class="kv">' + "".join(
            f'<div class="k">{e(k)}</div><div class="v">{e(fmt_config(v))}</div>'
            for k, v in flatten(data.config)) + "</div>", "config"))
    out.append(f"<footer>pocketvqe report · {e(created)} · self-contained page: "
               f"images and audio are embedded, nothing is fetched.</footer></main></body></html>")
    return "\n".join(out)


def _section(title: str, body: str, ident: str) -> str:
    return f'<section class="card" id="{ident}"><h2>{e(title)}</h2>{body}</section>'


def _kpis_html(data: ReportData, rows: list[dict], hop: float | None) -> str:
    cards = []
    judged = [r for r in data.parity if r.get("pass") is not None]
    if judged:
        n_ok = sum(bool(r["pass"]) for r in judged)
        worst = [r["snr_db_vs_float"] for r in data.parity
                 if "int8" in str(r.get("variant", "")) and isinstance(r.get("snr_db_vs_float"), (int, float))]
        hint = f"worst int8 SNR vs float {fmt_value('snr_db', min(worst))} dB" if worst else "rows passing"
        cards.append(("parity", f"{n_ok}/{len(judged)} pass", hint, "pass" if n_ok == len(judged) else "fail"))
    ref = int8_row(rows)
    src = ref if ref is not None else (data.bench or {})
    if src.get("p50_us") is not None:
        name = src.get("name", "model")
        hint = f"{name} · p99 {fmt_us(float(src['p99_us']))}" if src.get("p99_us") is not None else str(name)
        cards.append(("p50 per hop", fmt_us(float(src["p50_us"])), hint, ""))
    if src.get("rtf") is not None:
        cards.append(("real-time factor", fmt_value("rtf", src["rtf"]), "processing time / audio time", ""))
    if src.get("deadline_misses") is not None:
        m = int(src["deadline_misses"])
        tot = src.get("frames")
        cards.append(("deadline misses", f"{m}" + (f" / {tot}" if tot else ""),
                      f"frames slower than {fmt_us(hop)}" if hop else "frames over the hop",
                      "fail" if m else "pass"))
    fl = [r for r in rows if "float" in str(r.get("name", "")).lower() and r.get("p50_vs_int8")]
    if ref is not None and fl:
        cards.append(("int8 speed-up", f"{fl[0]['p50_vs_int8']:.1f}×", f"p50 vs {fl[0]['name']}", ""))
    size = pte_size_ratio(data.artifacts)
    if size:
        cards.append(("int8 .pte size", f"{size[2] * 100:.0f}%", f"of {size[1]}", ""))
    if not cards:
        return ""
    return '<div class="cards">' + "".join(
        f'<div class="kpi {cls}"><div class="label">{e(lab)}</div><div class="value">{e(val)}</div>'
        f'<div class="hint">{e(hint)}</div></div>' for lab, val, hint, cls in cards) + "</div>"


def _table_html(rows: list[dict], cols: list[str], fmt, ident: str, ref_row: dict | None = None) -> str:
    head = "".join(f'<th class="{"text" if is_text(rows, c) else ""}">{e(header(c))}</th>' for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c == "pass":
                cls = "na" if v is None else ("pass" if v else "fail")
            else:
                cls = "text" if is_text(rows, c) else ""
            cells.append(f'<td class="{cls}">{e(fmt(c, v))}</td>')
        body.append(f'<tr class="{"ref" if r is ref_row else ""}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="{ident}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _bench_html(rows: list[dict], per_frame: dict[str, np.ndarray], hop: float | None) -> str:
    parts = []
    if rows:
        parts.append(_table_html(rows, bench_columns(rows), fmt_bench, "bench", int8_row(rows)))
        parts.append('<p class="sub">p50 / int8: median latency of each variant divided by the int8 '
                     'program\'s; RTF: median (p50) processing time per hop / hop duration.</p>')
    names = list(per_frame)
    colors = {k: figures.PALETTE[i % len(figures.PALETTE)] for i, k in enumerate(names)}
    png = figures.latency_histogram(per_frame, hop, colors)
    if png:
        late = []   # the histogram's rug, as text: hovering the picture lists every frame past the deadline
        for k in names:
            v = per_frame[k]
            v = v[np.isfinite(v) & (v > (hop or np.inf))][:200]
            if v.size:
                late.append(f"{k} over the deadline: " + ", ".join(fmt_us(float(x)) for x in v))
        parts.append(f'<img class="fig" src="{png}" alt="per-frame latency histogram"'
                     + (f' title="{e(chr(10).join(late))}"' if late else "") + ">")
        leg = []
        for k in names:
            v = per_frame[k]
            v = v[np.isfinite(v)]
            if not v.size:
                continue
            st = latency_stats(v, hop)
            miss = ""
            if hop:
                m = st["deadline_misses"]
                miss = (f' · <span class="{"miss" if m else "ok"}">{m} / {v.size} frames over the deadline</span>'
                        f' · p99 = {st["p99_us"] / hop * 100:.2g}% of the hop')
            leg.append(f'<div><span class="sw" style="background:{colors[k]}"></span><b>{e(k)}</b> · '
                       f'p50 {e(fmt_us(st["p50_us"]))} (▼) · p99 {e(fmt_us(st["p99_us"]))} (▽) · '
                       f'max {e(fmt_us(st["max_us"]))}{miss}</div>')
        parts.append('<div class="legend">' + "".join(leg) + "</div>")
    elif rows:
        parts.append('<p class="empty">No per-frame latencies were recorded, so there is no histogram.</p>')
    return "".join(parts)


def _audio_html(audio: dict, sr: int, max_s: float | None = None) -> str:
    model = audio_model(audio, sr)
    if not model.tracks:
        return '<p class="empty">No audio.</p>'
    tracks, stats = model.tracks, model.stats
    full_dur = {name: x.size / sr for name, x in tracks}
    errors = [(label, x, snr) for label, _, x, snr in model.errors]
    if max_s:
        keep = max(1, int(max_s * sr))
        tracks = [(name, x[:keep]) for name, x in tracks]
        errors = [(name, x[:keep], snr) for name, x, snr in errors]
    track_pngs, error_pngs = figures.spectrograms([x for _, x in tracks], [x for _, x, _ in errors], sr)
    win, hop = figures.stft_params(sr)

    def panel(name: str, png: str, head: str) -> str:
        return f'<div class="track">{head}<img class="fig" src="{png}" alt="spectrogram of {e(name)}"></div>'

    parts = [f'<div class="colorbar"><span>level</span><img src="{figures.colorbar()}" alt="colour scale">'
             f'<span>dB re. loudest bin of all panels · same scale on every panel · '
             f'{win / sr * 1000:g} ms Hann, {hop / sr * 1000:g} ms hop</span></div>']
    for (name, x), png in zip(tracks, track_pngs):
        st = stats[name]
        info = (f'{st["duration_s"]:.2f} s · RMS {fmt_db(st["rms_dbfs"])} dBFS · '
                f'peak {fmt_db(st["peak_dbfs"])} dBFS')
        if x.size / sr < full_dur[name] - 1e-9:
            info += f' · showing the first {x.size / sr:g} s'
        if st["clipped"]:
            info += f' · <b class="bad">{st["clipped"]} samples beyond ±1 (clipped in playback)</b>'
        if st["nonfinite"]:
            info += f' · <b class="bad">{st["nonfinite"]} NaN/Inf samples (shown as 0)</b>'
        head = (f'<div class="track-head"><h3>{e(name)}</h3><span class="stats">{info}</span>'
                f'<audio controls preload="metadata" title="{e(name)}" '
                f'src="{_data_uri("audio/wav", encode_wav(x, sr))}"></audio></div>')
        parts.append(panel(name, png, head))
    if errors:
        parts.append('<h4>Quantization error (difference signal, same colour scale)</h4>')
        for (name, x, snr), png in zip(errors, error_pngs):
            st = track_stats(x, sr)
            head = (f'<div class="track-head"><h3>{e(name)}</h3><span class="stats">'
                    f'RMS {fmt_db(st["rms_dbfs"])} dBFS · SNR {e(fmt_value("snr_db", snr))} dB</span></div>')
            parts.append(panel(name, png, head))
    return "".join(parts)


def _artifacts_html(artifacts: list[dict]) -> str:
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
