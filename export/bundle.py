"""The bundled self-check (``.bpte``): the program plus K real frames and the outputs it must give.

Frames come from a real clip: the PyTorch reference of the variant (float step for fp32, the
converted int8 GraphModule for int8) streams ``warmup`` frames first so the state is a live one,
then K consecutive frames; test case k holds ``(signals_k, *state_k)`` and the reference's
``(enhanced_k, *state_k+1)``, so every case starts from the reference's own state (rounding
differences do not accumulate across cases). Personalized programs also bundle enrollment cases
(against the fp32 or, in int8 programs, the int8 enrollment step). The runtime verifies each case
with the tolerances of :func:`bundle_tolerances` (int8: each output in its own units); on a phone the ExecuTorch runner does the same with
the ``.bpte``.

>>> data = make_bundle(prog, frames, k=8)          # frames: per-hop signal tuples of a real clip
>>> report = verify_bundle(data)                    # raises PocketVQEError on a mismatch
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from executorch.devtools import BundledProgram
from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
from executorch.devtools.bundled_program.schema import bundled_program_schema as bp_schema
from executorch.devtools.bundled_program.serialize import (
    deserialize_from_flatbuffer_to_bundled_program,
    serialize_from_bundled_program_to_flatbuffer,
)
from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

from pocketvqe.errors import PocketVQEError
from pocketvqe.models.step import EnrollFinish, enroll_pcm
from pocketvqe.signals import dithered, run_step, snr_db

from .lower import load_method
from .teacher import TEACHER_TOLERANCES, Trace, output_bound, output_snr_db, output_units


def _loudest_window(prog, frames, k: int, warmup: int) -> int:
    """The first frame (>= ``warmup``) of the ``k`` consecutive frames where the reference's enhanced
    output is loudest: the bundle checks the program where there is speech to get wrong."""
    state, energy = prog.step.init_state(), []
    with torch.no_grad():
        for sig in frames:
            out = prog.reference(*[s.reshape(-1) for s in sig], *state)
            energy.append(float(torch.sum(torch.as_tensor(out[0]).double() ** 2)))
            state = list(out[1:])
    window = np.convolve(np.asarray(energy[warmup:]), np.ones(k), mode="valid")
    return warmup + int(np.argmax(window))


def _forward_cases(prog, frames: Sequence[Sequence[torch.Tensor]], k: int, warmup: int):
    if len(frames) < k + warmup:
        raise PocketVQEError(f"the bundle needs {k + warmup} frames of a real clip, got {len(frames)}: "
                             "give a longer clip or fewer --bundle-frames")
    start = _loudest_window(prog, frames, k, warmup)
    state, cases = prog.step.init_state(), []
    with torch.no_grad():
        for t in range(start + k):
            inputs = (*[s.reshape(-1) for s in frames[t]], *state)
            out = tuple(o.detach().contiguous().clone() for o in prog.reference(*inputs))
            if t >= start:
                cases.append((inputs, out))
            state = list(out[1:])
    return cases


def _enroll_cases(prog, frames, k: int):
    enroll, cases_step = prog.enroll, []
    ref = prog.enroll_reference if prog.enroll_reference is not None else enroll
    acc = enroll.init_state()
    with torch.no_grad():
        for t in range(len(frames)):
            inputs = (frames[t][0].reshape(-1), *acc)
            out = tuple(o.detach().contiguous().clone() for o in ref(*inputs))
            if t >= len(frames) - k:
                cases_step.append((inputs, out))
            acc = list(out)
        finish = EnrollFinish(enroll)
        cases_finish = [(tuple(acc), (finish(*acc),))]
    return cases_step, cases_finish


def test_cases(prog, frames: Sequence[Sequence[torch.Tensor]], k: int = 8, warmup: int = 50) -> dict:
    """{method name: [(inputs, expected outputs), ...]} for the bundle."""
    out = {"forward": _forward_cases(prog, frames, k, warmup)}
    if prog.enroll is not None:
        out["enroll_step"], out["enroll_finish"] = _enroll_cases(prog, frames[:warmup + k], k)
    return out


def make_bundle(prog, frames: Sequence[Sequence[torch.Tensor]], k: int = 8, warmup: int = 50) -> bytes:
    """Serialized BundledProgram (.bpte) of ``prog`` with ``k`` forward cases (and enrollment cases)."""
    if prog.et_program is None:
        raise PocketVQEError(f"{prog.name}: bundling needs the ExecuTorch program manager (export_program keeps it)")
    suites = [MethodTestSuite(name, [MethodTestCase(inputs=list(i), expected_outputs=list(o)) for i, o in cases])
              for name, cases in test_cases(prog, frames, k, warmup).items()]
    return serialize_from_bundled_program_to_flatbuffer(BundledProgram(prog.et_program, suites))


def _case_array(value) -> np.ndarray | None:
    """A bundled tensor's values (float32), or None for a non-tensor value."""
    if not isinstance(value.val, bp_schema.Tensor):
        return None
    return np.frombuffer(bytes(value.val.data), dtype=np.float32)


def output_atols(reference, cases, steps: float, rel: float) -> list[float]:
    """One atol per output of a method's bundled ``cases`` (an int8 program's): ``steps`` quantization
    steps where the int8 graph quantizes the output (its scale, :func:`export.teacher.output_units`),
    else ``rel`` of its peak over the cases (fp32 outputs of an int8 program, states without one grid)."""
    outs = [np.stack([_case_array(c.expected_outputs[k]) for c in cases])
            for k in range(len(cases[0].expected_outputs))]
    trace = Trace(list(range(len(cases))), [], outs, [str(k) for k in range(len(outs))])
    units = output_units(reference, trace)
    return [steps * u if u else rel * float(np.abs(o).max()) for u, o in zip(units, outs)]


def bundle_tolerances(prog, bpte: bytes | None = None) -> dict:
    """{method: (rtol, atol, min_snr_db)} of the bundled self-check.

    Two bounds per output, both checked by the Python runtime here and by the native runner on a device
    (``pocketvqe-runner verify --rtol R --atol A[,A1,..] --min-snr-db S[,S1,..]``):
    - every element within ``atol + rtol |expected|`` (``atol`` one value, or one per output): gross
      faults, a NaN, a wrong element anywhere. fp32: the variant's rtol/atol. int8 given its ``bpte``:
      rtol 0 and each output in its own units, ``bundle_steps`` of its quantization step (``bundle_rel``
      of its peak where it has no single grid);
    - each output's SNR over the method's cases (expected energy over error energy) at least
      ``min_snr_db`` (one value, or one per output): the teacher-forced bounds of the precision
      (:data:`export.teacher.TEACHER_TOLERANCES`), since each case is a teacher-forced frame. This one
      catches what hides under an int8 program's one-step flips: an output gain of 0.9 is 20 dB on
      the enhanced PCM."""
    tol = prog.tolerances
    names = {"forward": ["enhanced", *prog.step.state_names]}
    out = {"forward": (tol["bundle_rtol"], tol["bundle_atol"])}
    refs = {"forward": prog.reference}
    if "enroll" in tol:
        e = tol["enroll"]
        out["enroll_step"] = out["enroll_finish"] = (e["bundle_rtol"], e["bundle_atol"])
        refs["enroll_step"] = prog.enroll_reference if prog.enroll_reference is not None else prog.enroll
        refs["enroll_finish"] = None
    if bpte is not None and prog.precision == "int8":
        suites = _suites(bpte)
        for method, reference in refs.items():
            t = tol if method == "forward" else tol["enroll"]
            if suites.get(method):
                out[method] = (0.0, output_atols(reference, suites[method], t["bundle_steps"], t["bundle_rel"]))
    bounds = TEACHER_TOLERANCES[prog.precision]
    return {m: (rtol, atol, [output_bound(bounds, n) for n in names[m]] if m in names else bounds["min_snr_db"])
            for m, (rtol, atol) in out.items()}


def _suites(buffer: bytes) -> dict:
    try:
        bp = deserialize_from_flatbuffer_to_bundled_program(buffer)
    except Exception as exc:                      # flatbuffers raises assorted errors on garbage
        raise PocketVQEError(f"the .bpte is truncated or not a bundled program ({type(exc).__name__}): "
                             "export it again") from None
    return {s.method_name: s.test_cases for s in bp.method_test_suites}


def verify_bundle(buffer: bytes, tolerances: dict[str, tuple]) -> dict:
    """Run every bundled case in the ExecuTorch runtime and check each output ``k``: every element within
    ``atol[k] + rtol * |expected|`` and its SNR over the method's cases at least ``min_snr_db[k]``
    (:func:`bundle_tolerances`; ``atol`` and ``min_snr_db`` one value for all outputs or one per output).

    Returns ``{method: {"cases", "rtol", "atol", "min_snr_db", "max_abs_err", "max_err_per_output",
    "snr_db_per_output"}}``; raises PocketVQEError naming the method and output that miss a bound."""
    suites = _suites(buffer)
    try:
        bundle = _load_bundled_program_from_buffer(buffer)
    except RuntimeError as exc:
        raise PocketVQEError(f"the .bpte does not load ({exc}): it is truncated or not a bundled program") from None
    report = {}
    for method, cases in suites.items():
        rtol, atol, *bound = tolerances[method]
        min_snr = bound[0] if bound else float("-inf")          # (rtol, atol): elements only
        n_out = len(cases[0].expected_outputs)
        atols, snrs = _per_output(atol, n_out, method, "atol"), _per_output(min_snr, n_out, method, "min_snr_db")
        worst, want_all, got_all = [0.0] * n_out, [[] for _ in range(n_out)], [[] for _ in range(n_out)]
        for i, case in enumerate(cases):
            try:     # the runtime's own check at the widest bound; each output's own bounds below
                got = bundle.verify_result_with_bundled_expected_output(method, i, rtol, max(atols))
            except RuntimeError as exc:
                raise PocketVQEError(f"bundled self-check failed: {method} case {i} is outside rtol={rtol}, "
                                     f"atol={max(atols):.3g} ({exc}); the program does not match its reference") from None
            for k, (want, have) in enumerate(zip(case.expected_outputs, got)):
                w = _case_array(want)
                if w is None or not isinstance(have, torch.Tensor):
                    continue
                h = have.reshape(-1).numpy().astype(np.float32)
                err = np.abs(h - w)
                worst[k] = max(worst[k], float(err.max()) if np.all(np.isfinite(err)) else float("inf"))
                want_all[k].append(w)
                got_all[k].append(h)
                if not np.all(err <= atols[k] + rtol * np.abs(w)):
                    raise PocketVQEError(f"bundled self-check failed: {method} case {i}, output {k}, is "
                                         f"{worst[k]:.3g} from its expected value (atol {atols[k]:.3g}, rtol "
                                         f"{rtol}); the program does not match its reference")
        snr = [output_snr_db(np.concatenate(g), np.concatenate(w)) if w else float("inf")
               for g, w in zip(got_all, want_all)]
        low = [k for k in range(n_out) if not snr[k] >= snrs[k]]
        if low:
            k = low[0]
            raise PocketVQEError(f"bundled self-check failed: {method} output {k} is {snr[k]:.1f} dB from its "
                                 f"expected values over the {len(cases)} cases (min {snrs[k]:g} dB); the program "
                                 "does not match its reference")
        report[method] = {"cases": len(cases), "rtol": rtol, "atol": atol, "min_snr_db": min_snr,
                          "max_abs_err": max(worst), "max_err_per_output": worst, "snr_db_per_output": snr}
    return report


def _per_output(value, n: int, method: str, what: str) -> list[float]:
    values = [float(value)] * n if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != n:
        raise PocketVQEError(f"{method}: {len(values)} {what} values for {n} outputs: give one, or one per output")
    return values


def program_fidelity(prog, frames) -> dict[str, float]:
    """The program (ExecuTorch runtime) over ``frames``: ``snr_db_vs_reference``, SNR (dB) against its
    PyTorch reference, and ``snr_db_floor``, SNR of its run with +-1 LSB mic dither against its own
    undithered run (its sensitivity floor, see ``device_tests.parity``)."""
    method = load_method(prog.buffer)
    run = lambda *a: method.execute(a)  # noqa: E731
    got, _ = run_step(run, frames, prog.step.init_state())
    want, _ = run_step(prog.reference, frames, prog.step.init_state())
    return {"snr_db_vs_reference": snr_db(want, got),
            "snr_db_floor": snr_db(got, run_step(run, dithered(frames), prog.step.init_state())[0])}


def enroll_fidelity(prog, pcm) -> float:
    """Cosine between the speaker embedding the program's own ``enroll_step``/``enroll_finish`` compute
    from ``enroll_pcm`` (model rate, ExecuTorch runtime) and the float checkpoint's (``Enhancer.enroll``):
    what a phone enrolling on the device gets, against the embedding the model was trained with."""
    if prog.enroll is None:
        raise PocketVQEError(f"{prog.name} has no enrollment methods")
    step, finish = load_method(prog.buffer, "enroll_step"), load_method(prog.buffer, "enroll_finish")
    got = enroll_pcm(pcm, prog.step.cfg.hop, prog.enroll.init_state(), lambda *a: step.execute(a),
                     lambda *a: finish.execute(a)[0])
    want = prog.step.enhancer.enroll(np.asarray(pcm, np.float32)).reshape(-1)
    return float(torch.nn.functional.cosine_similarity(want.double(), got.double(), dim=0))
