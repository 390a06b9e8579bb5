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
from pocketvqe.fileio import atomic_write_bytes, atomic_write_text

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "checkpoints"


@dataclass(frozen=True)
class BuildConfig:
    config: str = "dvqe-s16"
    ckpt: str | None = None
    quant: str = "ptq"               # the int8 program: ptq (calibrated here) or a quantized .pt2 (e.g. from QAT)
    # PTQ recipe: None takes the one measured for the config (quant.RECIPES: dvqe-s16 gives the last
    # decoder block, which outputs the CCM mask, per-frame activation ranges; pvqe-s16 the same, on
    # histogram ranges).
    keep_float: tuple[str, ...] | None = None
    observer: str | None = None
    dynamic: tuple[str, ...] | None = None
    out: str = "build"
    calib_clips: int = 8
    clip_seconds: float = 4.0
    bench_frames: int = 1000
    seed: int = 0
    data: str | None = None
    qemu: bool = True

    def __post_init__(self):
        if self.quant != "ptq" and not str(self.quant).endswith(".pt2"):
            raise PocketVQEError(f"--quant {self.quant!r}: give ptq, or the .pt2 that `pocketvqe quantize --mode qat` "
                                 "wrote (QAT needs a fine-tuning run first)")
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
    from pocketvqe.device_tests.bench import BenchConfig, run_bench
    from pocketvqe.device_tests.measure import frames_of, json_safe
    from pocketvqe.device_tests.parity import manifest_tolerances, reference_outputs, report_row, run_parity
    from pocketvqe.export.bundle import bundle_tolerances, enroll_checks, make_bundle, verify_bundle
    from pocketvqe.export.program import export_program, file_entry, write_etrecord, write_manifest, write_program
    from pocketvqe.quant import recommended_ptq

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
    ptq, int8_from = None, f"from {bc.quant}"
    if bc.quant == "ptq":
        ptq = recommended_ptq(cfg.name, **{k: v for k, v in (("keep_float", bc.keep_float), ("observer", bc.observer),
                                                             ("dynamic", bc.dynamic)) if v is not None})
        kept = [f"{', '.join(ptq.keep_float)} fp32"] if ptq.keep_float else []
        kept += [f"{', '.join(ptq.dynamic)} int8 with per-frame activation ranges"] if ptq.dynamic else []
        int8_from = f"PTQ, {ptq.observer} ranges, {'; '.join(kept) or 'all int8'}"
    _say(3, n, f"export: fp32 and int8 programs (XNNPACK), bundled self-checks; int8: {int8_from}")
    progs = {"fp32": export_program(enh, "fp32", etrecord=True),
             "int8": export_program(enh, bc.quant, calib_frames, etrecord=True, ptq_config=ptq)}
    frames = frames_of(test.mic, test.far if cfg.has_far else None, cfg.hop, speaker)
    files, paths, checks = [], {}, {}
    for q, prog in progs.items():
        paths[q] = write_program(prog, out)
        bpte = make_bundle(prog, [[torch.from_numpy(x) for x in f] for f in frames], k=8)
        checks[q] = verify_bundle(bpte, bundle_tolerances(prog, bpte))
        prog.extra["checks"] = {"bundle": checks[q]}
        if prog.enroll is not None:       # the program's own enrollment, as on the phone, vs the checkpoint's
            prog.extra["checks"].update(enroll_checks(prog, test.enroll))
        atomic_write_bytes(out / f"{prog.name}.bpte", bpte)
        files += [paths[q], out / f"{prog.name}.bpte", write_etrecord(prog, out / f"{prog.name}.etrecord")]

    _say(4, n, "parity: host" + (" and qemu-arm64" if bc.qemu else ""))
    step = progs["fp32"].step
    init = step.init_state()
    refs = reference_outputs(frames, init, step, progs["int8"].reference)
    targets = ["host"]
    if bc.qemu:
        from pocketvqe.device_tests.targets.qemu import Sysroot
        if Sysroot().ready():
            targets.append("qemu-arm64")
    parity, outputs, host_out, floors = [], {"input (mic)": test.mic, "float": refs["float"]}, {}, {}
    for tname in targets:
        for q, prog in progs.items():
            row = run_parity(paths[q], frames, init, refs, target=tname, quant=prog.quant,
                             tolerances=manifest_tolerances({"tolerances": {prog.quant: prog.tolerances}},
                                                            paths[q].name, prog.quant),
                             sample_rate=cfg.sample_rate, host_output=host_out.get(q), keep_output=True,
                             floor=floors.get(q, True))
            y = row.pop("output")
            if tname == "host":
                host_out[q], floors[q] = y, row["snr_db_floor"]
            if q == "int8":
                outputs[f"int8 {'host' if tname == 'host' else 'ARM (qemu)'}"] = y
            parity.append(row)
    atomic_write_text(out / "parity.json", json.dumps(json_safe({"clip": test.scenario, "rows": parity}), indent=2) + "\n")

    _say(5, n, f"bench: host, one thread, {bc.bench_frames} frames per variant")
    bench = run_bench(paths["int8"], frames, init, hop_ms=1000.0 * cfg.hop / cfg.sample_rate,
                      config=BenchConfig(frames=bc.bench_frames), float_step=step,
                      others={"fp32-pte": paths["fp32"]})
    for r in bench["rows"]:
        r["ratio_to_int8"] = r["ratio_to_main"]
    atomic_write_text(out / "bench.json", json.dumps(json_safe(bench), indent=2) + "\n")

    sizes = {q: p.stat().st_size for q, p in paths.items()}
    write_manifest(out, list(progs.values()), files,
                   extra={"checkpoint": source, "trained": trained, "int8_size_ratio": sizes["int8"] / sizes["fp32"],
                          "int8_from": int8_from})
    _say(6, n, "report")
    from pocketvqe.device_tests.report import ReportData, write_report
    notes = [] if trained else ["Built from a seeded random init: no trained checkpoint is shipped yet. "
                                "The numbers check the toolchain (export, parity, latency), not sound quality."]
    for prog in progs.values():
        cos, need = (prog.extra["checks"].get(k) for k in ("enroll_cosine_vs_checkpoint", "enroll_cosine_required"))
        if cos is not None:
            notes.append(f"{prog.name}: on-device enrollment (enroll_step/enroll_finish) gives a speaker embedding "
                         f"with cosine {cos:.5f} to the checkpoint's ({'meets' if cos >= need else 'BELOW'} {need}).")
    notes.append(f"int8 program: {int8_from}; {sizes['int8']:,} B, {sizes['int8'] / sizes['fp32']:.1%} of the fp32 "
                 f"program's {sizes['fp32']:,} B.")
    notes.append(f"Wall time {time.perf_counter() - t_start:.0f} s; export fp32 {progs['fp32'].export_seconds:.0f} s, "
                 f"int8 {progs['int8'].export_seconds:.0f} s.")
    write_report(ReportData(title=f"pocketvqe build: {cfg.name}", config={**cfg.to_dict(), "checkpoint": source},
                            sample_rate=cfg.sample_rate, hop=cfg.hop, audio=outputs,
                            parity=[report_row(r) for r in parity], bench=bench,
                            artifacts=[file_entry(p) for p in files], notes=notes), out)
    return {"out": str(out), "parity": parity, "bench": bench, "bench_rows": bench["rows"], "sizes": sizes,
            "bundle": checks}
