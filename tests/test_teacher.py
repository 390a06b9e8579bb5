"""Teacher-forced parity (pocketvqe.export.teacher) fails on real faults and passes correct programs.

A seeded dvqe-s16 (non-trivial BatchNorm statistics) on a real clip (LibriVox speech + an echo of
another passage + noise), exported fp32 and int8 (PTQ, the config recipe, small calibration). Each
mutation must fail teacher-forced parity against the correct program's reference; the correct
programs must pass it, on the host and (fp32 GRU mutation, int8 correct) on qemu-arm64 through
`device_tests.parity.run_parity`:

- output gain x0.9 (int8): the enhanced output's teacher-forced SNR falls to 20 dB;
- one GRU gate's weights x1.1 (a real exported program of the mutated model, fp32);
- two state tensors swapped (int8: ``mic_stft`` and ``far_stft`` returned in each other's place);
- the far end delayed by one frame (int8: the program fed the previous hop's far end);
- an int8 program checked against another program's reference (a model of another seed).
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from pocketvqe.device_tests.parity import reference_outputs, run_parity
from pocketvqe.export.lower import load_method
from pocketvqe.export.program import export_program, write_program
from pocketvqe.export.teacher import TEACHER_TOLERANCES, reference_trace, teacher_forced
from pocketvqe.models import get_config, init_checkpoint
from pocketvqe.quant import int8_reference
from pocketvqe.signals import frames_of

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
OTHER = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0920.wav"


def _clip(seconds: float = 2.0):
    near = sf.read(LIBRIVOX, dtype="float32")[0][: int(seconds * 16000)]
    far = sf.read(OTHER, dtype="float32")[0][: int(seconds * 16000)]
    rng = np.random.default_rng(0)
    mic = near + 0.3 * np.concatenate([np.zeros(640, np.float32), far[:-640]]) \
        + 0.01 * rng.standard_normal(len(near)).astype(np.float32)
    return mic.astype(np.float32), far


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    torch.manual_seed(0)
    enh = init_checkpoint(get_config("dvqe-s16"), 0, bn_stats=True)
    mic, far = _clip()
    frames = frames_of(mic, far, enh.cfg.hop)
    calib = frames_of(mic, far, enh.cfg.hop, tensors=True)[:100]
    out = tmp_path_factory.mktemp("teacher")
    progs = {"fp32": export_program(enh), "int8": export_program(enh, int8_reference(enh, calibration=calib))}
    paths = {q: write_program(p, out) for q, p in progs.items()}
    names = ["enhanced", *progs["fp32"].step.state_names]
    return {"enh": enh, "frames": frames, "progs": progs, "paths": paths, "names": names, "out": out}


def _check(made, precision, call, reference=None, frames=None):
    prog = made["progs"][precision]
    return teacher_forced(call, reference or prog.reference, frames or made["frames"], prog.step.init_state(),
                          made["names"], precision, k=24)


def _execute(prog):
    method = load_method(prog.buffer)
    return lambda a: list(method.execute(a))


def test_correct_programs_pass_on_the_host(made):
    for precision in ("fp32", "int8"):
        r = _check(made, precision, _execute(made["progs"][precision]))
        assert r["pass"], (precision, r["failures"])
        assert r["worst"]["min_snr_db"] >= TEACHER_TOLERANCES[precision]["min_snr_db"]


def test_output_gain_fails(made):
    run = _execute(made["progs"]["int8"])
    r = _check(made, "int8", lambda a: [o * 0.9 if i == 0 else o for i, o in enumerate(run(a))])
    assert not r["pass"] and any(f.startswith("enhanced:") for f in r["failures"])


def test_swapped_state_tensors_fail(made):
    run = _execute(made["progs"]["int8"])
    r = _check(made, "int8", lambda a: (lambda o: [o[0], o[2], o[1], *o[3:]])(run(a)))
    assert not r["pass"] and any(f.startswith(("mic_stft:", "far_stft:")) for f in r["failures"])


def test_far_end_one_frame_late_fails(made):
    """The program is fed the previous hop's far end (a delay bug in the app's buffering)."""
    run, late = _execute(made["progs"]["int8"]), {"prev": None}

    def delayed(a):
        far = a[1]
        a = [a[0], late["prev"] if late["prev"] is not None else torch.zeros_like(far), *a[2:]]
        late["prev"] = far
        return run(a)

    frames = made["frames"]
    prog = made["progs"]["int8"]
    trace = reference_trace(prog.reference, frames, prog.step.init_state(), made["names"], k=len(frames))
    r = teacher_forced(delayed, prog.reference, frames, prog.step.init_state(), made["names"], "int8", trace=trace)
    assert not r["pass"], r["worst"]


def test_another_programs_reference_fails(made):
    other = init_checkpoint(get_config("dvqe-s16"), 7, bn_stats=True)
    mic_frames = made["frames"]
    calib = [[torch.from_numpy(np.ascontiguousarray(x)) for x in f] for f in mic_frames[:100]]
    ref = int8_reference(other, calibration=calib).step
    r = _check(made, "int8", _execute(made["progs"]["int8"]), reference=ref)
    assert not r["pass"] and r["worst"]["min_snr_db"] < 0


@pytest.mark.slow
def test_gru_gate_scaled_fails_on_host_and_arm(made):
    """A real program of the mutated model (the GRU's update-gate input weights x1.1), checked against
    the correct model's reference on the host and on qemu-arm64 (the native aarch64 runner); the
    correct program passes the same check there."""
    enh = made["enh"]
    state = {k: v.clone() for k, v in enh.state_dict().items()}
    try:
        with torch.no_grad():
            enh.net.bottleneck.gru.iz.weight.mul_(1.1)
        bad = write_program(export_program(enh), made["out"] / "mutant")
    finally:
        enh.load_state_dict(state)
    good = made["progs"]["fp32"]
    frames, init = made["frames"], good.step.init_state()
    trace = reference_trace(good.reference, frames, init, made["names"], k=24)
    refs = reference_outputs(frames, [s.numpy() for s in init], good.reference)
    for target in ("host", "qemu-arm64"):
        for pte, expect in ((made["paths"]["fp32"], True), (bad, False)):
            row = run_parity(pte, frames, [s.numpy() for s in init], refs, target=target, precision="fp32",
                             tolerances={"snr_db_vs_float": 70.0}, pesq=False, floor=False, trace=trace,
                             trace_reference=good.reference, host_output=None)
            assert row["teacher_forced"]["pass"] is expect, (target, pte.name, row["teacher_forced"]["failures"])
            if not expect:
                assert any(f.startswith("net.gru:") for f in row["teacher_forced"]["failures"])
