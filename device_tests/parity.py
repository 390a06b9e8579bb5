"""Parity: a ``.pte`` run on a target over a whole clip (state threaded) vs its PyTorch references.

The references run on the host: the float eager step (:class:`models.step.StreamStep` of the
checkpoint) and, for int8 programs, the PyTorch int8 reference (the converted GraphModule, or the
``.pt2`` it was saved as). Each row says how close the target's enhanced waveform is to each
(SNR in dB, max abs difference, wide-band PESQ against the float output) and whether it meets the
tolerances of the program's manifest.

>>> refs = reference_outputs(frames, init, float_step=step, int8_step=gm)      # doctest: +SKIP
>>> row = run_parity("build/dvqe-s16-int8.pte", frames, init, refs, target="qemu-arm64",
...                  precision="int8", tolerances={"snr_db_vs_int8_ref": 35.0})     # doctest: +SKIP
>>> row["snr_db_vs_float"], row["snr_db_vs_int8_ref"], row["pass"]           # doctest: +SKIP

What decides PASS: teacher-forced parity (:mod:`pocketvqe.export.teacher`), on every target: each
frame the program gets the reference's own inputs and state, and every output must stay within its
bound. fp32 programs are also judged free-running (> 70 dB against the float step over the clip).
Int8 programs are not judged free-running: one rounding flip (another ISA's kernels, x86 vs ARM
requantization, the reference's float arithmetic) enters the recurrent state and is carried on, so a
correct program sits at its sensitivity floor. Their free-running numbers are the listener's view
(``fidelity``): the enhanced output against the float model's (SNR, PESQ-wb) and the floor, reported
against the int8 recipe's targets (``TOLERANCES["int8"]["fidelity"]``), never a kernel verdict.

The sensitivity floor (``snr_db_floor``): the same program on the host, run again with +-1 LSB of
16-bit dither on the mic, against its undithered run. An inaudible input change flips some of an int8
program's roundings, as another ISA's kernels or the reference's float arithmetic do; on a coarse
int8 grid each flip is a whole step of the output (and the recurrent state carries it on). The floor
measures how large those flips are on this clip: a program cannot be expected to match a reference
much better than it matches itself. Trained dvqe-s16 on the self-check clip: fp32 ~68 dB; int8 all-int8
PTQ ~7 dB, ``net.dec.3`` fp32 ~19 dB, QAT ~23 dB, and its SNR vs the int8 reference sits at the same
level in each case (docs/int8-fidelity.md).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from pocketvqe.errors import PocketVQEError
from pocketvqe.export.teacher import TEACHER_TOLERANCES, Trace, compare_trace, judge_trace, output_units, summary
from pocketvqe.models import Enhancer, ModelConfig
from pocketvqe.models.checkpoint import load_checkpoint, read_checkpoint
from pocketvqe.quant import load_quantized
from pocketvqe.signals import dithered, run_step, snr_db

from .measure import max_abs_diff, pesq_vs, stacked_inputs
from .targets import get_target

METRIC_OF_VARIANT = {"fp32": "snr_db_vs_float", "int8": "snr_db_vs_int8_ref"}


def variant_of(precision: str) -> str:
    """``fp32`` or ``int8`` (a program's ``precision``; ``ptq``/``qat`` name an int8 program's recipe)."""
    return "fp32" if str(precision).lower() in ("fp32", "none", "float") else "int8"


# ----------------------------------------------------------------------------------------------
# tolerances


def manifest_beside(pte: str | Path) -> dict:
    """The ``manifest.json`` in the program's folder (written by `pocketvqe export` / `build`)."""
    path = Path(pte).resolve().parent / "manifest.json"
    if not path.is_file():
        raise PocketVQEError(f"no manifest.json beside {pte}: parity judges a program by the tolerances its "
                             "manifest states; keep the .pte in the folder `pocketvqe export` or `pocketvqe build` "
                             "wrote (or export it again there)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PocketVQEError(f"{path} is not readable JSON ({exc}): export the program again to rewrite it") from None


def program_entry(manifest: dict, pte_name: str) -> dict | None:
    """The manifest's ``programs`` entry whose file is ``pte_name``."""
    for entry in (manifest.get("programs") or {}).values():
        if isinstance(entry, dict) and entry.get("file") == pte_name:
            return entry
    return None


def program_tolerances(tolerances: Mapping, precision: str) -> dict[str, float]:
    """A program's free-running bounds (from ``Program.tolerances``, a manifest entry's ``tolerances``)
    as {metric: minimum dB}; ``snr_db`` means "vs the float step". Int8 programs have none (teacher-forced
    parity judges them; an older manifest's int8 ``snr_db`` is ignored)."""
    if variant_of(precision) == "int8":
        return {}
    out = {k: float(v) for k, v in tolerances.items() if k.startswith("snr_db_vs_") and isinstance(v, (int, float))}
    if not out and isinstance(tolerances.get("snr_db"), (int, float)):
        out = {METRIC_OF_VARIANT[variant_of(precision)]: float(tolerances["snr_db"])}
    return out


def manifest_tolerances(manifest: dict, pte_name: str, precision: str) -> dict[str, float]:
    """{metric: minimum dB}, the free-running bounds of one program, from its entry in the manifest
    (empty for int8 programs: teacher-forced parity judges them)."""
    entry = program_entry(manifest, pte_name) or {}
    tol = entry.get("tolerances")
    out = program_tolerances(tol, precision) if isinstance(tol, dict) else {}
    if not out and (variant_of(precision) == "fp32" or not isinstance(tol, dict)):
        raise PocketVQEError(f"the manifest beside {pte_name} states no tolerance for it ({precision}): export the "
                             "program again (`pocketvqe export` writes the tolerances into manifest.json)")
    return out


def manifest_fidelity(manifest: dict, pte_name: str) -> dict[str, float]:
    """The fidelity targets of one int8 program, from its manifest entry (empty when none)."""
    tol = (program_entry(manifest, pte_name) or {}).get("tolerances") or {}
    return dict(tol.get("fidelity") or {}) if isinstance(tol, dict) else {}


def fidelity(row: Mapping, targets: Mapping[str, float]) -> dict:
    """The listener's view of an int8 row against its recipe's targets (minimum values of the row's
    ``snr_db_vs_float``, ``snr_db_floor``, ...): {targets, values, meets, misses}. Reported, not judged."""
    values = {k: row.get(k) for k in targets}
    misses = [f"{k} {v:.1f} < {targets[k]:g}" for k, v in values.items() if v is not None and not v >= targets[k]]
    meets = None if any(v is None for v in values.values()) else not misses
    return {"targets": dict(targets), "values": values, "meets": meets, "misses": misses}


def judge(row: Mapping, tolerances: Mapping[str, float]) -> tuple[bool | None, list[str]]:
    """(pass, failures): every stated metric must exceed its bound; None when a metric is missing."""
    failures, missing = [], []
    for metric, bound in tolerances.items():
        value = row.get(metric)
        if value is None:
            missing.append(metric)
        elif not value > bound:
            failures.append(f"{metric} {value:.2f} <= {bound:.2f}")
    if failures:
        return False, failures
    return (None if missing else True), [f"{m}: not measured" for m in missing]


# ----------------------------------------------------------------------------------------------
# references from files


def _same_model(cfg_dict: dict, program_cfg, source: str) -> None:
    """Refuse a reference of another model (or of another version of the program's config)."""
    other = cfg_dict.get("name") if isinstance(cfg_dict, dict) else None
    try:
        if ModelConfig.from_dict(cfg_dict) == program_cfg:         # JSON turns tuples into lists: compare configs
            return
    except (PocketVQEError, TypeError):
        pass
    if other != program_cfg.name:
        raise PocketVQEError(f"{source} is a {other or 'different'!r} model but the program is {program_cfg.name!r}: "
                             f"give the checkpoint (or .pt2) the program was exported from")
    raise PocketVQEError(f"{source} holds another version of config {other!r} than the program: give the "
                         "checkpoint (or .pt2) the program was exported from")


def load_float_reference(path: str | Path, program_cfg):
    """The float Enhancer of checkpoint ``path``, refused unless it is the program's model."""
    _same_model(read_checkpoint(path).get("config") or {}, program_cfg, str(path))
    enh, _ = load_checkpoint(path)
    return enh


def load_int8_reference(path: str | Path, program_cfg):
    """(int8 step module, float Enhancer or None) of a quantized ``.pt2``, refused unless it is the
    program's model. The float model is rebuilt from the weights the file stores, when it has them."""
    ep, meta = load_quantized(path, with_float_weights=True)
    _same_model(meta.get("config") or {}, program_cfg, str(path))
    enh = None
    if meta.get("float_state_dict") is not None:
        enh = Enhancer(program_cfg)
        enh.load_state_dict(meta["float_state_dict"])
        enh = enh.eval()
    return ep.module(), enh


def resolve_references(refs: Sequence[str], program_cfg, precision: str, manifest: dict,
                       quant_info: dict | None = None) -> tuple[object, object | None, list[str]]:
    """(float Enhancer, int8 step module or None, notes) from ``--ref`` files (checkpoints ``.pt``,
    quantized ``.pt2``), falling back on the checkpoint the manifest names and, for int8 programs,
    the ``.pt2`` the program's metadata names."""
    enh, int8, notes = None, None, []
    for ref in refs:
        p = Path(ref)
        if p.suffix == ".pt2":
            module, float_enh = load_int8_reference(p, program_cfg)
            if variant_of(precision) == "int8":
                int8 = module
            else:
                notes.append(f"{p.name} is an int8 reference but the program is fp32: only its float weights are used")
            enh = enh or float_enh
        elif p.suffix == ".pt":
            enh = load_float_reference(p, program_cfg)
        else:
            raise PocketVQEError(f"--ref {ref}: give a checkpoint (.pt) or a quantized model (.pt2)")
    source = (quant_info or {}).get("source")
    if int8 is None and variant_of(precision) == "int8" and source and Path(source).is_file():
        module, float_enh = load_int8_reference(source, program_cfg)
        int8, enh = module, enh or float_enh
        notes.append(f"int8 reference: {source} (named by the program's metadata)")
    ckpt = manifest.get("checkpoint")
    if enh is None and isinstance(ckpt, str) and ckpt.endswith(".pt") and Path(ckpt).is_file():
        enh = load_float_reference(ckpt, program_cfg)
        notes.append(f"float reference: {ckpt} (named by the manifest)")
    if enh is None:
        raise PocketVQEError("no float reference for the program: pass --ref CKPT.pt (the checkpoint it was "
                             f"exported from{'' if not ckpt else f'; the manifest names {ckpt!r}, not a file here'})")
    return enh, int8, notes


# ----------------------------------------------------------------------------------------------
# running


def reference_outputs(frames: Sequence[Sequence[np.ndarray]], init_state: Sequence, float_step,
                      int8_step=None) -> dict[str, np.ndarray]:
    """The references' enhanced waveforms on the host: ``float`` and, given ``int8_step``, ``int8_ref``."""
    init = [torch.as_tensor(np.asarray(s, np.float32)) for s in init_state]
    out = {"float": run_step(float_step, frames, init)[0]}
    if int8_step is not None:
        out["int8_ref"] = run_step(int8_step, frames, init)[0]
    return out


def run_program(target, pte: str | Path, frames, init_state: Sequence) -> tuple[np.ndarray, object]:
    """(enhanced waveform, RunResult) of ``pte`` on ``target`` over ``frames``, state threaded."""
    t = get_target(target) if isinstance(target, str) else target
    init = [np.ascontiguousarray(np.asarray(s, np.float32)) for s in init_state]
    res = t.run_frames(pte, stacked_inputs(frames), n_state=len(init), init_state=init)
    return res.outputs[0].reshape(-1), res


def teacher_forced_on(target, pte: str | Path, trace: Trace, reference, precision: str) -> dict:
    """Teacher-forced parity of ``pte`` on ``target``: every traced frame gets the reference's inputs and
    state (one job, no state threaded), each output is compared with the reference's in its units
    (:mod:`pocketvqe.export.teacher`) -> {pass, failures, frames, worst, rows}."""
    t = get_target(target) if isinstance(target, str) else target
    res = t.run_frames(pte, {f"in_{i}": x for i, x in enumerate(trace.inputs)}, n_state=0, init_state=[])
    rows = compare_trace(res.outputs, trace, output_units(reference, trace))
    ok, failures = judge_trace(rows, TEACHER_TOLERANCES[variant_of(precision)])
    return {"pass": ok, "failures": failures, "frames": len(trace.frames), "worst": summary(rows), "rows": rows}


def sensitivity_floor(pte: str | Path, frames, init_state: Sequence, host_output: np.ndarray | None = None,
                      lsb: float = 1.0) -> float:
    """SNR (dB) of ``pte`` on the host over ``frames`` with +-``lsb`` LSB mic dither against its
    undithered run (``host_output``, computed when not given): the program's own sensitivity floor."""
    if host_output is None:
        host_output, _ = run_program("host", pte, frames, init_state)
    y, _ = run_program("host", pte, dithered(frames, lsb), init_state)
    return snr_db(host_output, y)


def _compare(y: np.ndarray, ref: np.ndarray, suffix: str) -> dict:
    n = min(len(y), len(ref))
    if n == 0 or len(y) != len(ref):
        raise PocketVQEError(f"the program gave {len(y)} samples but the reference {len(ref)}: "
                             "they must run over the same frames")
    return {f"snr_db_vs_{suffix}": snr_db(ref, y), f"max_abs_diff_vs_{suffix}": max_abs_diff(ref, y)}


def run_parity(pte: str | Path, frames, init_state: Sequence, references: Mapping[str, np.ndarray], *,
               target="host", precision: str, tolerances: Mapping[str, float], sample_rate: int = 16000,
               host_output: np.ndarray | None = None, keep_output: bool = False, pesq: bool = True,
               floor: float | None | bool = True, trace: Trace | None = None, trace_reference=None,
               fidelity_targets: Mapping[str, float] | None = None) -> dict:
    """Run ``pte`` on ``target`` over ``frames`` and compare with ``references`` (``float``, and
    ``int8_ref`` for int8 programs; see :func:`reference_outputs`).

    ``tolerances`` are the program's free-running bounds (:func:`manifest_tolerances`; none for int8).
    On a target other than ``host`` the program also runs on the host (or ``host_output`` is used) for
    ``snr_db_vs_host`` (reported). With ``keep_output``
    the row carries the target's waveform under ``output`` (not JSON: drop it before writing).
    ``floor``: True measures the program's sensitivity floor on the host (:func:`sensitivity_floor`),
    a number reuses one measured before, False skips it. It is reported, never judged.
    ``trace`` (:func:`pocketvqe.export.teacher.reference_trace` of ``trace_reference``, the program's
    reference): the program also runs teacher-forced on the target (``teacher_forced``: every output's
    teacher-forced SNR against its bound); this decides ``pass`` (with the free-running bounds, if any).
    Without a trace an int8 row is not judged (``pass`` None). ``fidelity_targets`` (int8): the row's
    ``fidelity`` against them (:func:`fidelity`).
    Returns a dict: target, program, precision, variant, frames, snr_db_vs_float, max_abs_diff,
    snr_db_vs_int8_ref (int8), snr_db_vs_host (not host), pesq_vs_float, snr_db_floor, tolerances,
    pass, notes."""
    if "float" not in references:
        raise PocketVQEError("parity needs the float reference output (references['float'])")
    t = get_target(target) if isinstance(target, str) else target
    variant = variant_of(precision)
    t0 = time.perf_counter()
    y, res = run_program(t, pte, frames, init_state)
    row = {"target": t.name, "program": Path(pte).name, "precision": precision, "variant": variant,
           "frames": int(res.n_frames), "seconds": round(len(y) / sample_rate, 3), "emulated": bool(res.emulated),
           "runtime": res.extra.get("runtime_version")}
    row.update(_compare(y, references["float"], "float"))
    row["max_abs_diff"] = row["max_abs_diff_vs_float"]
    notes: list[str] = []
    if variant == "int8":
        if references.get("int8_ref") is not None:
            row.update(_compare(y, references["int8_ref"], "int8_ref"))
        else:
            row["snr_db_vs_int8_ref"] = None
            notes.append("no PyTorch int8 reference (pass --ref Q.pt2, made by `pocketvqe quantize`): reported "
                         "against the float model only, not judged against the int8 tolerance")
    row["pesq_vs_float"] = pesq_vs(references["float"], y, sample_rate) if pesq else None
    if t.name != "host":
        if host_output is None:
            host_output, _ = run_program("host", pte, frames, init_state)
        row.update(_compare(y, host_output, "host"))
        p_host = pesq_vs(references["float"], host_output, sample_rate) if pesq else None
        row["pesq_delta"] = (abs(row["pesq_vs_float"] - p_host)
                             if row["pesq_vs_float"] is not None and p_host is not None else None)
    if floor is True:
        floor = sensitivity_floor(pte, frames, init_state, y if t.name == "host" else host_output)
    row["snr_db_floor"] = None if floor is False or floor is None else float(floor)
    tol = dict(tolerances) if variant == "fp32" else {}
    row["tolerances"] = tol
    row["pass"], why = judge(row, tol) if tol else (None, [])
    row["failures"] = [w for w in why if "<=" in w]
    if trace is not None:
        tf = row["teacher_forced"] = teacher_forced_on(t, pte, trace, trace_reference, precision)
        row["failures"] += [f"teacher-forced {f}" for f in tf["failures"]]
        row["pass"] = row["pass"] is not False and tf["pass"]
    elif row["pass"] is None:
        notes.append("not judged: teacher-forced parity needs the program's reference (an int8 program's .pt2)")
    if variant == "int8" and fidelity_targets:
        row["fidelity"] = fidelity(row, fidelity_targets)
    row["notes"] = notes + [w for w in why if "<=" not in w]
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    if keep_output:
        row["output"] = y
    return row


# ----------------------------------------------------------------------------------------------
# printing

REPORT_KEYS = ("target", "variant", "tf_min_snr_db", "tf_p999_steps", "tf_max_steps", "snr_db_vs_float",
               "snr_db_vs_int8_ref", "snr_db_vs_host", "snr_db_floor", "max_abs_diff", "pesq_vs_float", "pesq_delta",
               "pass")


def teacher_columns(row: Mapping) -> dict:
    """The teacher-forced worst cases of a row as flat columns (tf_*), empty when none ran."""
    w = (row.get("teacher_forced") or {}).get("worst") or {}
    return {f"tf_{k}": w[k] for k in ("min_snr_db", "p999_steps", "max_steps") if k in w}


def report_row(row: Mapping) -> dict:
    """The columns of a parity row that the build report shows (pocketvqe.report)."""
    flat = {**row, **teacher_columns(row)}
    return {k: flat[k] for k in REPORT_KEYS if k in flat}



def _db(v) -> str:
    if v is None:
        return "-"
    return "inf" if isinstance(v, float) and math.isinf(v) else f"{v:.1f}"


def _tf_bound(r: Mapping) -> str:
    tol = TEACHER_TOLERANCES[variant_of(r.get("precision", r.get("variant", "int8")))]
    own = ", ".join(f"{k} {v:g}" for k, v in (tol.get("outputs") or {}).items())
    return f"{tol['min_snr_db']:g} dB" + (f" ({own})" if own else "")


def _tf_cell(r: Mapping) -> str:
    w = (r.get("teacher_forced") or {}).get("worst")
    if not w:
        return "-"
    parts = [f"min SNR {_db(w.get('min_snr_db'))} dB"]
    if w.get("p999_steps") is not None:
        parts.append(f"{w['p999_steps']:.2g} / {w['max_steps']:.3g} steps")
    return ", ".join(parts)


def format_parity_table(rows: Sequence[Mapping]) -> str:
    """Markdown table of parity rows (SNR in dB against each reference; tolerances in the last column)."""
    head = ("| target | program | teacher-forced (worst output; p99.9 / max steps) | SNR vs float (dB) | SNR vs int8 ref (dB) "
            "| SNR vs host (dB) | floor (dB) | max abs diff | PESQ-wb vs float | bounds | pass |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        bounds = ", ".join(f"{k.replace('snr_db_vs_', '')} > {v:g}" for k, v in (r.get("tolerances") or {}).items())
        if r.get("teacher_forced"):
            bounds += f"{', ' if bounds else ''}teacher-forced > {_tf_bound(r)}"
        ok = {True: "yes", False: "NO", None: "not judged"}[r.get("pass")]
        pesq = r.get("pesq_vs_float")
        lines.append(f"| {r['target']} | {r['program']} | {_tf_cell(r)} | {_db(r.get('snr_db_vs_float'))} | "
                     f"{_db(r.get('snr_db_vs_int8_ref'))} | {_db(r.get('snr_db_vs_host'))} | "
                     f"{_db(r.get('snr_db_floor'))} | {r['max_abs_diff']:.2e} | "
                     f"{'-' if pesq is None else f'{pesq:.3f}'} | {bounds or '-'} | {ok} |")
    return "\n".join(lines)
