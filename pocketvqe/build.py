"""The main job: checkpoint -> fp32 + int8 .pte + manifest -> parity (host, qemu-arm64) -> bench -> report.

Besides the programs, ``<out>/runner-aarch64/`` holds the native runner for ARM Linux (binary + its
ExecuTorch libraries, listed with sha256 in the manifest); ARM parity and the ARM check of each bundled
self-check run through it under qemu, and the bench times each program through the native host runner
beside the Python binding and the float eager step.

`pocketvqe build` and `make build` run :func:`build`; each stage prints one line. The programs come
from the same export step as `pocketvqe export` (:func:`pocketvqe.export.package`) with the same
int8 recipe (:func:`pocketvqe.quant.recommended_ptq`), so the same seed gives the same bytes.
What the ExecuTorch runtime prints goes to ``<out>/runtime.log``.
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from pocketvqe.device_tests.bench import BenchConfig, run_bench
from pocketvqe.device_tests.native import NativeRunner, build_runner, copy_runner
from pocketvqe.device_tests.parity import program_tolerances, reference_outputs, report_row, run_parity
from pocketvqe.errors import PocketVQEError
from pocketvqe.export import Packaged, package, seed_everything, self_check_clip, write_manifest
from pocketvqe.export.bundle import bundle_tolerances
from pocketvqe.export.program import file_entry
from pocketvqe.export.teacher import reference_trace
from pocketvqe.fileio import write_json
from pocketvqe.models import get_config, init_checkpoint, load_checkpoint
from pocketvqe.quant import RECIPES, int8_reference, recommended_ptq
from pocketvqe.quiet import runtime_log
from pocketvqe.report import ReportData, write_report
from pocketvqe.report.model import bench_rows, hop_us, verdict

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "checkpoints"


@dataclass(frozen=True)
class BuildConfig:
    """What `pocketvqe build` builds. ``int8``: ``ptq`` (post-training quantization with the config's
    measured recipe) or a quantized ``.pt2`` (e.g. from QAT). ``keep_float`` / ``observer`` /
    ``dynamic`` (and ``calib_clips`` / ``calib_seconds``) override that recipe (None: the recipe's).
    ``seed`` seeds calibration (the recipe's seed) and picks the self-check and parity clip (test
    split, seed + 1), as `pocketvqe export --seed` does."""

    config: str = "dvqe-s16"
    ckpt: str | None = None
    int8: str = "ptq"
    keep_float: tuple[str, ...] | None = None
    observer: str | None = None
    dynamic: tuple[str, ...] | None = None
    out: str = "build"
    bench_frames: int = 1000
    seed: int = 0
    data: str | None = None
    qemu: bool = True
    calib_clips: int | None = None
    calib_seconds: float | None = None

    def __post_init__(self):
        if self.int8 != "ptq" and not str(self.int8).endswith(".pt2"):
            raise PocketVQEError(f"--int8 {self.int8!r}: give ptq, or the .pt2 that `pocketvqe quantize --mode qat` "
                                 "wrote (QAT needs a fine-tuning run first)")
        if self.bench_frames < 100:
            raise PocketVQEError(f"bench_frames={self.bench_frames}: give at least 100 frames (p99 needs them)")

    def ptq(self):
        """The PTQ config: the recipe measured for the config, with this build's overrides."""
        overrides = {k: v for k, v in (("keep_float", self.keep_float), ("observer", self.observer),
                                       ("dynamic", self.dynamic), ("calib_clips", self.calib_clips),
                                       ("calib_seconds", self.calib_seconds)) if v is not None}
        return recommended_ptq(self.config, seed=self.seed, **overrides)


def _say(i: int, n: int, msg: str) -> None:
    print(f"[{i}/{n}] {msg}", file=sys.stderr, flush=True)


def _load_model(bc: BuildConfig):
    path = Path(bc.ckpt) if bc.ckpt else SHIPPED / f"{bc.config}.pt"
    if path.exists():
        enh, _ = load_checkpoint(path, expect=None if bc.ckpt else bc.config)
        return enh, str(path), True
    if bc.ckpt:
        raise PocketVQEError(f"checkpoint {path} does not exist")
    warnings.warn(f"no shipped checkpoint {path.name}: building from a seeded random init (untrained weights); "
                  "numbers check the toolchain, not sound quality", stacklevel=2)
    return init_checkpoint(get_config(bc.config), bc.seed), f"random init (seed {bc.seed})", False


def _parity(progs: dict[str, Packaged], clip, frames, targets: list[str]) -> tuple[list[dict], dict]:
    """Parity rows of every program on every target over ``frames`` (the clip's), and the waveforms
    the report plays."""
    step = progs["fp32"].program.step
    init = step.init_state()
    refs = reference_outputs(frames, init, step, progs["int8"].program.reference)
    rows, outputs, host_out, floors = [], {"input (mic)": clip.mic, "float": refs["float"]}, {}, {}
    names = ["enhanced", *step.state_names]
    traces = {q: reference_trace(done.program.reference, frames, init, names) for q, done in progs.items()}
    for tname in targets:
        for precision, done in progs.items():
            prog = done.program
            row = run_parity(done.pte, frames, init, refs, target=tname, precision=precision,
                             tolerances=program_tolerances(prog.tolerances, precision),
                             sample_rate=step.cfg.sample_rate, host_output=host_out.get(precision), keep_output=True,
                             floor=floors.get(precision, True), trace=traces[precision],
                             trace_reference=prog.reference, fidelity_targets=prog.tolerances.get("fidelity"))
            y = row.pop("output")
            if tname == "host":
                host_out[precision], floors[precision] = y, row["snr_db_floor"]
            if precision == "int8":
                outputs[f"int8 {'host' if tname == 'host' else 'ARM (qemu)'}"] = y
            rows.append(row)
    return rows, outputs


def _notes(progs: dict[str, Packaged], rows: list[dict], trained: bool, int8_from: str, sizes: dict,
           wall: float) -> list[str]:
    notes = [] if trained else ["Built from a seeded random init: no trained checkpoint is shipped yet. "
                                "The numbers check the toolchain (export, parity, latency), not sound quality."]
    for done in progs.values():
        c = done.checks
        if c.enroll_cosine_vs_checkpoint is not None:
            notes.append(f"{done.program.name}: on-device enrollment (enroll_step/enroll_finish) gives a speaker "
                         f"embedding with cosine {c.enroll_cosine_vs_checkpoint:.5f} to the checkpoint's "
                         f"({'meets' if c.enroll_ok else 'BELOW'} {c.enroll_cosine_required}).")
        if not c.snr_ok:
            notes.append(f"{done.program.name}: self-check SNR vs its reference {c.snr_db_vs_reference:.1f} dB, "
                         f"below its {c.snr_db_required:g} dB bar (floor {c.snr_db_floor:.1f} dB).")
    for r in rows:
        fid = r.get("fidelity")
        if fid and r["target"] == "host":
            v = fid["values"]
            notes.append(f"int8 free-running on the build clip (the listener's view, not a kernel check): "
                         f"{v.get('snr_db_vs_float', float('nan')):.1f} dB from the float model, floor "
                         f"{v.get('snr_db_floor', float('nan')):.1f} dB; the recipe's targets "
                         + ", ".join(f"{k} >= {t:g}" for k, t in fid["targets"].items())
                         + (f": MISSED ({'; '.join(fid['misses'])})" if fid["misses"] else ": met"))
    notes.append(f"int8 program: {int8_from}; {sizes['int8']:,} B, {sizes['int8'] / sizes['fp32']:.1%} of the fp32 "
                 f"program's {sizes['fp32']:,} B.")
    notes.append(f"Wall time {wall:.0f} s; export fp32 {progs['fp32'].program.export_seconds:.0f} s, "
                 f"int8 {progs['int8'].program.export_seconds:.0f} s.")
    return notes


def _arm_bundle_checks(progs: dict[str, Packaged], runner: Path) -> dict:
    """Each program's bundled self-check (.bpte) re-run by the aarch64 runner under qemu, each method at
    its bundle tolerances: {precision: {pass, methods: {method: {cases, rtol, atol, min_snr_db,
    snr_db_per_output, max_abs_err, pass}}}}."""
    arm = NativeRunner(runner)
    out = {}
    for precision, done in progs.items():
        bpte = done.pte.with_suffix(".bpte")
        methods = {}
        for method, (rtol, atol, min_snr) in bundle_tolerances(done.program, bpte.read_bytes()).items():
            rep = arm.verify(bpte, rtol, atol, min_snr, method=method)
            methods[method] = {"cases": len(rep["cases"]), "rtol": rtol, "atol": atol, "min_snr_db": min_snr,
                               "pass": rep["pass"], "snr_db_per_output": [o["snr_db"] for o in rep["outputs"]],
                               "max_abs_err": max((c["max_abs_err"] for c in rep["cases"]), default=None)}
        out[precision] = {"pass": all(m["pass"] for m in methods.values()), "methods": methods}
    return out


def _runner_entry(runner: Path, out: Path) -> dict:
    """The manifest's record of the runner folder: arch, executorch version and every file with sha256."""
    info = NativeRunner(runner).info
    files = sorted(p for p in runner.rglob("*") if p.is_file())
    return {"folder": runner.name, "arch": info.get("arch"), "executorch": info.get("executorch"),
            "files": [{**file_entry(p), "file": p.relative_to(out).as_posix()} for p in files]}


def _which_recipe(bc: BuildConfig) -> str:
    """Which int8 recipe the build uses and why: the one measured for the config (quant.RECIPES, chosen
    because it met the fidelity targets: docs/int8-fidelity.md), that one with this build's overrides,
    the defaults for a config without one, or a given .pt2."""
    if bc.int8 != "ptq":
        return f"the quantized model {bc.int8}"
    if bc.config not in RECIPES:
        return f"PTQ with the defaults: {bc.config} has no measured recipe in quant.RECIPES"
    if bc.ptq() == recommended_ptq(bc.config, seed=bc.seed):
        return (f"PTQ with {bc.config}'s measured recipe from quant.RECIPES, chosen because it meets the int8 "
                "fidelity targets on the test split")
    return f"PTQ, {bc.config}'s measured recipe with this build's overrides"


def export_programs(enh, bc: BuildConfig, log: Path | None = None, say=lambda i, msg: None
                    ) -> tuple[dict[str, Packaged], object, str]:
    """The fp32 and int8 programs of the build, written to ``bc.out``: the same calls, with the same
    recipe and seeds, as `pocketvqe export` makes -> ({"fp32": ..., "int8": ...}, the self-check clip,
    how the int8 reference was made)."""
    say(2, f"int8 reference ({_which_recipe(bc)}) and the self-check clip")
    int8 = int8_reference(enh, bc.int8, bc.ptq(), data=bc.data, progress=True)
    clip = self_check_clip(enh, None, bc.data, seed=bc.seed + 1)
    say(3, f"export: fp32 and int8 programs (XNNPACK), bundled self-checks; int8: {int8.describe()}")
    with runtime_log(log):
        progs = {"fp32": package(enh, None, clip, bc.out), "int8": package(enh, int8, clip, bc.out)}
    return progs, clip, int8.describe()


def build(bc: BuildConfig) -> dict:
    seed_everything(bc.seed)
    n = 6
    out = Path(bc.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runtime.log"
    log.unlink(missing_ok=True)
    t_start = time.perf_counter()
    _say(1, n, f"model {bc.config}: loading")
    enh, source, trained = _load_model(bc)
    cfg = enh.cfg
    progs, clip, int8_from = export_programs(enh, bc, log, say=lambda i, msg: _say(i, n, msg))
    write_manifest(out, list(progs.values()))              # now: parity and bench check the bytes against it
    frames = clip.frames(cfg.hop, tensors=False)          # parity and bench run over the same clip
    sizes = {q: p.pte.stat().st_size for q, p in progs.items()}
    targets = ["host"] + (["qemu-arm64"] if bc.qemu else [])
    _say(4, n, f"parity: {' and '.join(targets)}")
    runner = None
    if bc.qemu:                # built once per machine and cached (~15 s); --no-qemu skips ARM parity
        try:
            with runtime_log(log):
                runner = copy_runner(build_runner("aarch64"), out / "runner-aarch64")
        except PocketVQEError as exc:
            raise PocketVQEError(f"{exc} (or build without ARM parity: pocketvqe build --no-qemu)") from None
    with runtime_log(log):
        parity, outputs = _parity(progs, clip, frames, targets)
    arm_bundle = _arm_bundle_checks(progs, runner) if runner else {}
    write_json(out / "parity.json", {"clip": clip.source, "rows": parity, "bundle_arm": arm_bundle})

    _say(5, n, f"bench: host, one thread, {bc.bench_frames} frames per variant")
    step = progs["fp32"].program.step
    with runtime_log(log):
        bench = run_bench(progs["int8"].pte, frames, step.init_state(),
                          hop_ms=1000.0 * cfg.hop / cfg.sample_rate, config=BenchConfig(frames=bc.bench_frames),
                          float_step=step, others={"fp32-pte": progs["fp32"].pte}, native=True)
    for r in bench["rows"]:
        r["ratio_to_int8"] = r["ratio_to_main"]
    write_json(out / "bench.json", bench)

    write_manifest(out, list(progs.values()),
                   extra={"checkpoint": source, "trained": trained, "int8_size_ratio": sizes["int8"] / sizes["fp32"],
                          "int8_from": int8_from, **({"runner": _runner_entry(runner, out)} if runner else {})})
    _say(6, n, "report")
    notes = _notes(progs, parity, trained, int8_from, sizes, time.perf_counter() - t_start)
    files = [f for p in progs.values() for f in p.files]
    data = ReportData(title=f"pocketvqe build: {cfg.name}", config={**cfg.to_dict(), "checkpoint": source},
                      sample_rate=cfg.sample_rate, hop=cfg.hop, audio=outputs,
                      parity=[report_row(r) for r in parity], bench=bench,
                      artifacts=[file_entry(p) for p in files], notes=notes, checks=_checks(progs, arm_bundle))
    write_report(data, out)
    result, reasons = verdict(data, bench_rows(data.bench, hop_us(data))[0])
    return {"out": str(out), "parity": parity, "bundle_arm": arm_bundle, "bench": bench, "bench_rows": bench["rows"],
            "sizes": sizes, "checks": {q: p.checks.to_dict() for q, p in progs.items()},
            "verdict": result, "failures": reasons}


def _checks(progs: dict[str, Packaged], arm_bundle: dict) -> list[dict]:
    """The export self-check of each program (host: bundle, teacher-forced, enrollment) and its bundle
    re-run on ARM, as the report's verdict counts them."""
    out = [{"check": f"self-check {q} (host)", "pass": p.checks.passed, "why": "; ".join(p.checks.failures(p.program.name))}
           for q, p in progs.items()]
    for q, c in arm_bundle.items():
        bad = [m for m, r in c["methods"].items() if not r["pass"]]
        out.append({"check": f"bundled self-check {q} (qemu-arm64)", "pass": c["pass"],
                    "why": f"{', '.join(bad)} outside tolerance" if bad else ""})
    return out
