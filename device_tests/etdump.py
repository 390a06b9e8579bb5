"""Per-operator timings from an ETDump (``pocketvqe-runner enhance --etdump D.etdp``): the slowest operators.

The wheels' XNNPACK delegate profiles each of its operators ("Convolution (NHWC, QC8) IGEMM #3", ...);
ExecuTorch's ``Inspector`` reads the dump and gives every event one duration per frame. The table
ranks operators by their mean time per frame and also sums them by kind (the name without ``#k``).

>>> table = operator_table("int8.etdp", top=10)                     # doctest: +SKIP
>>> print(format_operator_table(table))                             # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from executorch.devtools import Inspector

from pocketvqe.errors import PocketVQEError
from pocketvqe.quiet import quiet_libraries

WRAPPERS = ("Method::execute", "DELEGATE_CALL")     # spans that contain operators, not operators


def _forward_block(inspector):
    """The event block of the streamed method: the one with the most events (metadata methods are tiny)."""
    blocks = [b for b in inspector.event_blocks if b.name == "Execute" and b.events]
    if not blocks:
        raise PocketVQEError("the ETDump holds no execution events: record it with `pocketvqe-runner enhance --etdump`")
    return max(blocks, key=lambda b: len(b.events))


def operator_table(etdump: str | os.PathLike, etrecord: str | os.PathLike | None = None, top: int = 10) -> dict[str, Any]:
    """{frames, execute_us (p50 of Method::execute), operators_us (sum of operator means), rows (top
    operators: name, kind, mean_us, p50_us, share), kinds (every kind: n, mean_us, share)}."""
    path = Path(etdump)
    if not path.is_file():
        raise PocketVQEError(f"{path} does not exist: record one with `pocketvqe-runner enhance PROGRAM --etdump {path.name}`")
    quiet_libraries()
    try:
        ins = Inspector(etdump_path=str(path), etrecord=None if etrecord is None else str(etrecord))
    except Exception as exc:  # noqa: BLE001 - the inspector raises whatever its parser meets
        raise PocketVQEError(f"{path} does not read as an ETDump ({type(exc).__name__}: {str(exc)[:100]}): "
                             "record it again") from None
    block = _forward_block(ins)
    ops, execute = [], None
    for e in block.events:
        if e.perf_data is None:
            continue
        us = np.asarray(e.perf_data.raw, np.float64) * 1e3          # the inspector reports milliseconds
        if e.name == "Method::execute":
            execute = us
        elif e.name not in WRAPPERS:
            ops.append((e.name, us))
    if not ops:
        raise PocketVQEError(f"{path} has no per-operator events: the runtime was built without delegate profiling")
    total = sum(float(us.mean()) for _, us in ops)
    rows = sorted(({"operator": n, "kind": re.sub(r" #\d+$", "", n), "mean_us": float(us.mean()),
                    "p50_us": float(np.median(us)), "share": float(us.mean()) / total} for n, us in ops),
                  key=lambda r: -r["mean_us"])
    kinds: dict[str, dict] = {}
    for r in rows:
        k = kinds.setdefault(r["kind"], {"kind": r["kind"], "n": 0, "mean_us": 0.0})
        k["n"] += 1
        k["mean_us"] += r["mean_us"]
    for k in kinds.values():
        k["share"] = k["mean_us"] / total
    return {"etdump": str(path), "frames": int(len(ops[0][1])),
            "execute_us_p50": None if execute is None else float(np.median(execute)),
            "operators_us": total, "n_operators": len(rows), "rows": rows[:top],
            "kinds": sorted(kinds.values(), key=lambda k: -k["mean_us"])}


def format_operator_table(t: dict[str, Any]) -> str:
    head = (f"{t['n_operators']} operators over {t['frames']} frames; operators sum to {t['operators_us']:.1f} us "
            f"per frame" + (f", Method::execute p50 {t['execute_us_p50']:.1f} us" if t["execute_us_p50"] else ""))
    lines = [head, "", "| # | operator | mean us | p50 us | share |", "|---:|---|---:|---:|---:|"]
    lines += [f"| {i} | {r['operator']} | {r['mean_us']:.1f} | {r['p50_us']:.1f} | {100 * r['share']:.1f} % |"
              for i, r in enumerate(t["rows"], 1)]
    lines += ["", "| kind | ops | mean us per frame | share |", "|---|---:|---:|---:|"]
    lines += [f"| {k['kind']} | {k['n']} | {k['mean_us']:.1f} | {100 * k['share']:.1f} % |" for k in t["kinds"][:12]]
    return "\n".join(lines)
