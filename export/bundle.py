"""The bundled self-check (``.bpte``): the program plus K real frames and the outputs it must give.

Frames come from a real clip: the PyTorch reference of the variant (float step for fp32, the
converted int8 GraphModule for int8) streams ``warmup`` frames first so the state is a live one,
then K consecutive frames; test case k holds ``(signals_k, *state_k)`` and the reference's
``(enhanced_k, *state_k+1)``, so every case starts from the reference's own state (rounding
differences do not accumulate across cases). Personalized programs also bundle enrollment cases
(against the fp32 or, in int8 programs, the int8 enrollment step). The runtime verifies each case
with the variant's rtol/atol (``TOLERANCES``); on a phone the ExecuTorch runner does the same with
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


def _forward_cases(prog, frames: Sequence[Sequence[torch.Tensor]], k: int, warmup: int):
    if len(frames) < k + warmup:
        raise PocketVQEError(f"the bundle needs {k + warmup} frames of a real clip, got {len(frames)}: "
                             "give a longer clip or fewer --bundle-frames")
    state, cases = prog.step.init_state(), []
    with torch.no_grad():
        for t in range(warmup + k):
            inputs = (*[s.reshape(-1) for s in frames[t]], *state)
            out = tuple(o.detach().contiguous().clone() for o in prog.reference(*inputs))
            if t >= warmup:
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


INT8_QUANTA = 4     # int8 bundle slack: this many quantization steps of the largest expected output


def bundle_tolerances(prog, bpte: bytes | None = None) -> dict:
    """{method: (rtol, atol)}: the variant's for forward, the enrollment ones for enroll_step/finish.

    Given an int8 program's ``bpte``, the atol of forward (and of the int8 enroll_step) is at least
    INT8_QUANTA quantization steps (peak / 127) of the method's largest expected output: the bundle
    has one tolerance per method, and the runtime's int8 kernels may round a state tensor with a wide
    range (a trained model's AlignBlock buffers) a quantum or two away from the PyTorch reference."""
    tol = prog.tolerances
    out = {"forward": (tol["bundle_rtol"], tol["bundle_atol"])}
    if "enroll" in tol:
        e = tol["enroll"]
        out["enroll_step"] = out["enroll_finish"] = (e["bundle_rtol"], e["bundle_atol"])
    if bpte is not None and prog.precision == "int8":
        suites = _suites(bpte)
        for method in ("forward", "enroll_step"):
            if method in out:
                peak = max((float(np.abs(np.frombuffer(bytes(o.val.data), dtype=np.float32)).max())
                            for case in suites.get(method, []) for o in case.expected_outputs
                            if hasattr(o.val, "data") and len(o.val.data)), default=0.0)
                out[method] = (out[method][0], max(out[method][1], INT8_QUANTA * peak / 127))
    return out


def _suites(buffer: bytes) -> dict:
    try:
        bp = deserialize_from_flatbuffer_to_bundled_program(buffer)
    except Exception as exc:                      # flatbuffers raises assorted errors on garbage
        raise PocketVQEError(f"the .bpte is truncated or not a bundled program ({type(exc).__name__}): "
                             "export it again") from None
    return {s.method_name: s.test_cases for s in bp.method_test_suites}


def verify_bundle(buffer: bytes, tolerances: dict[str, tuple[float, float]]) -> dict:
    """Run every bundled case in the ExecuTorch runtime and compare with its expected outputs.

    Returns ``{method: {"cases": n, "rtol": r, "atol": a, "max_abs_err": e}}``; raises PocketVQEError
    naming the method and case that misses its tolerance."""
    suites = _suites(buffer)
    try:
        bundle = _load_bundled_program_from_buffer(buffer)
    except RuntimeError as exc:
        raise PocketVQEError(f"the .bpte does not load ({exc}): it is truncated or not a bundled program") from None
    report = {}
    for method, cases in suites.items():
        rtol, atol = tolerances[method]
        worst = 0.0
        for i, case in enumerate(cases):
            try:
                got = bundle.verify_result_with_bundled_expected_output(method, i, rtol, atol)
            except RuntimeError as exc:
                raise PocketVQEError(f"bundled self-check failed: {method} case {i} is outside rtol={rtol}, "
                                     f"atol={atol} ({exc}); the program does not match its reference") from None
            worst = max(worst, _max_err(case, got))
        report[method] = {"cases": len(cases), "rtol": rtol, "atol": atol, "max_abs_err": worst}
    return report


def _max_err(case, got) -> float:
    """Largest |runtime - expected| over the float outputs of one bundled case."""
    errs = [0.0]
    for want, have in zip(case.expected_outputs, got):
        if not isinstance(want.val, bp_schema.Tensor) or not isinstance(have, torch.Tensor):
            continue
        w = np.frombuffer(bytes(want.val.data), dtype=np.float32)
        errs.append(float(np.abs(have.reshape(-1).numpy().astype(np.float32) - w).max()))
    return max(errs)


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
