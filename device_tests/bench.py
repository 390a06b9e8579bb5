"""Real-time factor: per-frame latency of a ``.pte`` on a target, against the hop it must keep up with.

Every frame is timed on its own (``time.perf_counter_ns`` around each execute, state threaded):
p50 / p90 / p99 / max, RTF = p50 / hop, and the deadline misses (frames slower than the hop), which
decide whether audio glitches. On the host the float eager PyTorch step and other programs (the
fp32 ``.pte``) are timed in the same run, one after the other on the same frames and thread count,
and each row carries its ratio to the program under test.

>>> res = run_bench("build/dvqe-s16-ptq.pte", frames, init, hop_ms=10.0, float_step=step,
...                 others={"fp32-pte": "build/dvqe-s16-fp32.pte"})              # doctest: +SKIP
>>> res["p50_us"], res["rtf"], [(r["name"], r["ratio_to_main"]) for r in res["rows"]]  # doctest: +SKIP

Emulated targets (qemu-arm64) are refused: their timings mean nothing; they check
numerics only (`pocketvqe parity`).
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pocketvqe.errors import PocketVQEError

from .measure import latency_stats, rss_kb, stacked_inputs
from .targets import get_target


@dataclass(frozen=True)
class BenchConfig:
    """frames: timed frames per variant (>= 1000 for a p99 worth the name, >= 100 allowed);
    warmup: untimed calls first; threads: ExecuTorch / torch intra-op threads.

    >>> BenchConfig(frames=1000).warmup
    50
    """

    frames: int = 1000
    warmup: int = 50
    threads: int = 1

    def __post_init__(self):
        if not isinstance(self.frames, int) or self.frames < 100:
            raise PocketVQEError(f"bench frames={self.frames!r}: time at least 100 frames (1000 for a stable p99)")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise PocketVQEError(f"bench warmup={self.warmup!r} must be an integer >= 0")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise PocketVQEError(f"bench threads={self.threads!r} must be an integer >= 1")


def row_name(precision: str) -> str:
    """``fp32-pte`` or ``int8-pte`` for a program of ``precision``."""
    return f"{precision}-pte"


def native_name(name: str) -> str:
    """The row of a program timed through the native runner: ``int8-pte`` -> ``int8-native``."""
    return name.replace("-pte", "") + "-native"


def cycle_frames(frames: Sequence, n: int) -> list:
    """``frames`` repeated (clip looped) and cut to ``n`` frames."""
    if not frames:
        raise PocketVQEError("bench needs at least one frame of input")
    reps = -(-n // len(frames))
    return (list(frames) * reps)[:n]


def refuse_emulated(target) -> None:
    if getattr(target, "emulated", False):
        raise PocketVQEError(f"{target.name} is emulated: latency under emulation means nothing, so "
                             "bench refuses it. Time on host, a phone (--target adb) or an ARM board (--target "
                             "ssh:HOST); on qemu-arm64 check numerics with `pocketvqe parity --target qemu-arm64`")


def time_eager(step_fn, frames: Sequence[Sequence[np.ndarray]], init_state: Sequence, warmup: int,
               threads: int) -> np.ndarray:
    """Per-frame latency (us) of a PyTorch step: ``warmup`` untimed calls on frame 0, then every frame
    timed with the state threaded (as the targets do)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        state = [torch.as_tensor(np.asarray(s, np.float32)) for s in init_state]
        inputs = [[torch.from_numpy(np.ascontiguousarray(s)) for s in sig] for sig in frames]
        times = np.empty(len(inputs))
        with torch.no_grad():
            for _ in range(warmup):
                step_fn(*inputs[0], *state)
            for t, sig in enumerate(inputs):
                t0 = time.perf_counter_ns()
                res = step_fn(*sig, *state)
                times[t] = (time.perf_counter_ns() - t0) / 1e3
                state = list(res[1:])
    finally:
        torch.set_num_threads(before)
    return times


def time_program(target, pte: str | Path, frames, init_state: Sequence, warmup: int, threads: int) -> dict:
    """{per_frame_us, load_ms, peak_rss_kb, rss_growth_kb, timing} of one program on ``target``."""
    refuse_emulated(target)
    init = [np.ascontiguousarray(np.asarray(s, np.float32)) for s in init_state]
    before, _ = rss_kb()
    res = target.run_frames(pte, stacked_inputs(frames), n_state=len(init), init_state=init, threads=threads,
                            time_it=True, warmup=warmup)
    after, peak = rss_kb()
    if res.per_frame_us is None:
        raise PocketVQEError(f"{target.name} returned no timings for {Path(pte).name}: it cannot time programs")
    out = {"per_frame_us": np.asarray(res.per_frame_us, np.float64), "load_ms": res.load_ms, "timing": res.timing}
    if target.name == "host":   # in-process: the process peak includes torch; the growth is the program's
        out["peak_rss_kb"] = peak
        out["rss_growth_kb"] = None if before is None or after is None else max(after - before, 0)
    else:
        out["peak_rss_kb"] = res.peak_rss_kb
        out["rss_growth_kb"] = None
    return out


def run_bench(pte: str | Path, frames, init_state: Sequence, *, hop_ms: float, target="host",
              config: BenchConfig = BenchConfig(), name: str = "int8-pte", float_step=None,
              others: Mapping[str, str | Path] | None = None, keep_per_frame: bool = True,
              native: bool = False) -> dict:
    """Time ``pte`` on ``target`` over ``config.frames`` frames (``frames`` looped as needed); on the
    host also ``float_step`` (row ``float-eager``) and every program in ``others`` (name -> path);
    with ``native``, every program again through the native host runner (rows ``*-native``: what an
    app calling ``Module::execute`` pays, no Python around the call).

    Returns {target, threads, hop_ms, frames, p50_us, p90_us, p99_us, max_us, rtf, deadline_misses,
    load_ms, peak_rss_kb, rss_growth_kb, rows: [{name, p50_us, ..., ratio_to_main}], per_frame_us}."""
    t = get_target(target) if isinstance(target, str) else target
    refuse_emulated(t)
    if hop_ms <= 0:
        raise PocketVQEError(f"hop_ms={hop_ms} must be positive (hop / sample rate)")
    run = cycle_frames(frames, config.frames)
    timed: dict[str, dict] = {}
    notes: list[str] = []
    if t.name == "host":
        if float_step is not None:
            timed["float-eager"] = {"per_frame_us": time_eager(float_step, run, init_state, config.warmup,
                                                               config.threads)}
        for other, path in (others or {}).items():
            timed[other] = time_program(t, path, run, init_state, config.warmup, config.threads)
    elif float_step is not None or others:
        notes.append(f"{t.name}: only the program itself is timed (the float step and other programs run on host)")
    timed[name] = time_program(t, pte, run, init_state, config.warmup, config.threads)
    if native and t.name == "host":
        nt = get_target("host-native")
        for key, path in [*(others or {}).items(), (name, pte)]:
            timed[native_name(key)] = time_program(nt, path, run, init_state, config.warmup, config.threads)
    main = latency_stats(timed[name]["per_frame_us"], hop_ms)
    rows = []
    for key in ("float-eager", "fp32-pte", "int8-pte", "fp32-native", "int8-native", *timed):
        if key in timed and key not in {r["name"] for r in rows}:
            stats = latency_stats(timed[key]["per_frame_us"], hop_ms)
            rows.append({"name": key, **stats, "ratio_to_main": stats["p50_us"] / main["p50_us"],
                         "load_ms": timed[key].get("load_ms")})
    main_run = timed[name]
    result = {"target": t.name, "program": Path(pte).name, "name": name, "threads": config.threads,
              "warmup": config.warmup, "hop_ms": hop_ms, **main, "load_ms": main_run["load_ms"],
              "peak_rss_kb": main_run["peak_rss_kb"], "rss_growth_kb": main_run["rss_growth_kb"],
              "timing": main_run["timing"], "rows": rows, "notes": notes}
    if keep_per_frame:
        result["per_frame_us"] = {k: [round(float(x), 2) for x in v["per_frame_us"]] for k, v in timed.items()}
    return result


def format_bench_table(result: Mapping) -> str:
    """Markdown table: one row per variant, latency in us, RTF, misses, ratio to the program under test."""
    lines = [f"bench {result['program']} on {result['target']}: {result['threads']} thread(s), {result['frames']} "
             f"frames after {result['warmup']} warm-up calls, hop {result['hop_ms']:.2f} ms",
             "",
             f"| variant | p50 us | p90 us | p99 us | max us | RTF (p50/hop) | deadline misses | x {result['name']} |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['p50_us']:.1f} | {r['p90_us']:.1f} | {r['p99_us']:.1f} | {r['max_us']:.1f} | "
                     f"{r['rtf']:.4f} | {r['deadline_misses']} | {r['ratio_to_main']:.2f} |")
    mem = []
    if result.get("load_ms") is not None:
        mem.append(f"load {result['load_ms']:.1f} ms")
    if result.get("rss_growth_kb") is not None:
        mem.append(f"RSS growth while loading + running {result['rss_growth_kb'] / 1024:.1f} MiB")
    if result.get("peak_rss_kb") is not None:
        what = "process peak RSS (includes torch)" if result["target"] == "host" else "peak RSS"
        mem.append(f"{what} {result['peak_rss_kb'] / 1024:.1f} MiB")
    if mem:
        lines += ["", "; ".join(mem)]
    return "\n".join(lines)
