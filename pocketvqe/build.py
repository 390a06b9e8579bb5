"""The main job: checkpoint -> fp32 + int8 .pte + manifest -> parity (host, qemu-arm64) -> bench -> report.

`pocketvqe build` and `make build` run :func:`build`; each stage prints one progress line.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_write_text

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "checkpoints"
TOLERANCES = {"fp32": {"snr_db_vs_float": 70.0}, "int8": {"snr_db_vs_int8_ref": 35.0}}


@dataclass(frozen=True)
class BuildConfig:
    config: str = "dvqe-s16"
    ckpt: str | None = None
    out: str = "build"
    calib_clips: int = 8
    clip_seconds: float = 4.0
    bench_frames: int = 1000
    seed: int = 0
    data: str | None = None
    qemu: bool = True

    def __post_init__(self):
        if self.calib_clips < 1 or self.clip_seconds <= 0.1 or self.bench_frames < 100:
            raise PocketVQEError("calib_clips >= 1, clip_seconds > 0.1 and bench_frames >= 100 are required")


def _say(i: int, n: int, msg: str) -> None:
    print(f"[{i}/{n}] {msg}", file=sys.stderr, flush=True)


def _load_model(bc: BuildConfig):
    from pocketvqe.models import get_config, init_checkpoint, load_checkpoint
    path = Path(bc.ckpt) if bc.ckpt else SHIPPED / f"{bc.config}.pt"
    if path.exists():
        enh, _ = load_checkpoint(path, expect=None if bc.ckpt else bc.config)
        return enh, str(path), True
    if bc.ckpt:
        raise PocketVQEError(f"checkpoint {path} does not exist")
    warnings.warn(f"no shipped checkpoint {path.name}: building from a seeded random init (untrained weights); "
                  "numbers check the toolchain, not sound quality", stacklevel=2)
    return init_checkpoint(get_config(bc.config), bc.seed), f"random init (seed {bc.seed})", False


def _clips(bc: BuildConfig, cfg):
    """Calibration clips (valid split) and one evaluation clip (test split) from the simulator."""
    from pocketvqe.data import SimConfig, Simulator, prepare_corpus
    root = prepare_corpus(bc.data, quick=True, progress=False) if bc.data is None else prepare_corpus(bc.data, progress=False)
    sim_cfg = SimConfig(clip_seconds=bc.clip_seconds, personalized=cfg.personalized)
    calib_sim = Simulator(root, split="valid", config=sim_cfg, seed=bc.seed)
    calib = [calib_sim[i] for i in range(bc.calib_clips)]
    test = Simulator(root, split="test", config=sim_cfg, seed=bc.seed + 1).make(0, scenario="double_talk"
                                                                               if cfg.has_far else "noise")
    return calib, test


def build(bc: BuildConfig) -> dict:
    from pocketvqe.device_tests.measure import frames_of, latency_stats, run_reference, snr_db, time_eager
    from pocketvqe.device_tests.targets import get_target
    from pocketvqe.export.program import export_program, file_entry, write_manifest, write_program

    torch.manual_seed(bc.seed)
    torch.set_num_threads(1)      # per-frame steps are tiny ops: one thread avoids OpenMP spin-waits
    n = 6
    out = Path(bc.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _say(1, n, f"model {bc.config}: loading")
    enh, source, trained = _load_model(bc)
    cfg = enh.cfg
    _say(2, n, "data: calibration and test clips from the simulator")
    calib, test = _clips(bc, cfg)
    speaker = enh.enroll(test.enroll).numpy() if cfg.personalized else None
    calib_frames = []
    for m in calib:
        spk = enh.enroll(m.enroll).numpy() if cfg.personalized else None
        calib_frames += [[torch.from_numpy(s) for s in f]
                         for f in frames_of(m.mic, m.far if cfg.has_far else None, cfg.hop, spk)]
    _say(3, n, "export: fp32 and int8 programs (XNNPACK)")
    progs = {q: export_program(enh, q, calib_frames if q == "int8" else None) for q in ("fp32", "int8")}
    paths = {q: write_program(p, out) for q, p in progs.items()}

    _say(4, n, "parity: host" + (" and qemu-arm64" if bc.qemu else ""))
    frames = frames_of(test.mic, test.far if cfg.has_far else None, cfg.hop, speaker)
    step = progs["fp32"].step
    init = step.init_state()
    y_float = run_reference(step, frames, init)
    y_int8_ref = run_reference(progs["int8"].reference, frames, init)
    stacked = {f"in{i}": np.stack([f[i] for f in frames]) for i in range(len(frames[0]))}
    targets = ["host"]
    if bc.qemu:
        from pocketvqe.device_tests.targets.qemu import Sysroot
        if Sysroot().ready():
            targets.append("qemu-arm64")
    parity, outputs = [], {"input (mic)": test.mic, "float": y_float}
    for tname in targets:
        target = get_target(tname)
        for q in ("fp32", "int8"):
            res = target.run_frames(paths[q], stacked, n_state=len(init),
                                    init_state=[s.numpy() for s in init])
            y = res.outputs[0].reshape(-1)
            row = {"target": tname, "variant": q, "snr_db_vs_float": snr_db(y_float, y),
                   "max_abs_diff": float(np.abs(y - y_float).max())}
            if q == "int8":
                row["snr_db_vs_int8_ref"] = snr_db(y_int8_ref, y)
                outputs[f"int8 {'host' if tname == 'host' else 'ARM (qemu)'}"] = y
            row["pesq_vs_float"] = _pesq(y_float, y, cfg.sample_rate)
            tol = TOLERANCES[q]
            row["pass"] = all(row[k] > v for k, v in tol.items())
            parity.append(row)
    atomic_write_text(out / "parity.json", json.dumps({"clip": test.scenario, "rows": parity}, indent=2) + "\n")

    _say(5, n, f"bench: host, one thread, {bc.bench_frames} frames per variant")
    bench = _bench(bc, step, init, paths, frames, cfg)
    atomic_write_text(out / "bench.json", json.dumps(bench, indent=2) + "\n")

    files = [paths["fp32"], paths["int8"]]
    write_manifest(out, list(progs.values()), files, TOLERANCES,
                   extra={"checkpoint": source, "trained": trained,
                          "int8_size_ratio": files[1].stat().st_size / files[0].stat().st_size})
    _say(6, n, "report")
    from pocketvqe.device_tests.report import ReportData, write_report
    notes = [] if trained else ["Built from a seeded random init: no trained checkpoint is shipped yet. "
                                "The numbers check the toolchain (export, parity, latency), not sound quality."]
    notes.append(f"Wall time {time.perf_counter() - t_start:.0f} s; export fp32 {progs['fp32'].export_seconds:.0f} s, "
                 f"int8 {progs['int8'].export_seconds:.0f} s.")
    write_report(ReportData(title=f"pocketvqe build: {cfg.name}", config={**cfg.to_dict(), "checkpoint": source},
                            sample_rate=cfg.sample_rate, hop=cfg.hop, audio=outputs, parity=parity, bench=bench,
                            artifacts=[file_entry(p) for p in files], notes=notes), out)
    summary = {"out": str(out), "parity": parity, "bench_rows": bench["rows"],
               "sizes": {q: p.stat().st_size for q, p in paths.items()}}
    return summary


def _pesq(ref: np.ndarray, test: np.ndarray, sr: int) -> float | None:
    try:
        from pesq import pesq
        return float(pesq(16000, ref, test, "wb")) if sr == 16000 else None
    except Exception:
        return None


def _bench(bc, step, init, paths, frames, cfg) -> dict:
    from pocketvqe.device_tests.measure import latency_stats, time_eager
    from pocketvqe.device_tests.targets import get_target
    reps = -(-(bc.bench_frames + 50) // len(frames))
    long = (frames * reps)[:bc.bench_frames + 50]
    stacked = {f"in{i}": np.stack([f[i] for f in long]) for i in range(len(long[0]))}
    hop_ms = 1000.0 * cfg.hop / cfg.sample_rate
    eager = time_eager(step, long, init, warmup=50)        # torch runs with one thread in build()
    host = get_target("host")
    per = {"float-eager": eager}
    for q in ("fp32", "int8"):
        res = host.run_frames(paths[q], stacked, n_state=len(init), init_state=[s.numpy() for s in init],
                              threads=1, time_it=True, warmup=50)
        per[f"{q}-pte"] = np.asarray(res.per_frame_us)
    rows = [{"name": k, **latency_stats(v, hop_ms)} for k, v in per.items()]
    int8 = latency_stats(per["int8-pte"], hop_ms)
    for r in rows:
        r["ratio_to_int8"] = r["p50_us"] / int8["p50_us"]
    return {"target": "host", "threads": 1, "hop_ms": hop_ms, **int8, "rows": rows,
            "per_frame_us": {k: [round(float(x), 2) for x in v] for k, v in per.items()}}
