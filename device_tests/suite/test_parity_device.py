"""Parity of every variant on the device target: `pytest device_tests --target T` (default host).

Each program (fp32, int8 PTQ) runs on the target over a 3 s real clip with its state threaded and
is compared with the PyTorch references run on the host (see conftest.py), then teacher-forced (each
frame from the reference's own inputs and state, :mod:`pocketvqe.export.teacher`), which decides:

- fp32: every output teacher-forced within 70 dB of the float step, and free-running > 70 dB vs the
  float step (the manifest's); on other targets also > 70 dB vs the host run (x86 and ARM fp32 kernels
  agree to ~1e-7).
- int8: every output teacher-forced within 25 dB of the int8 reference, on every target (free-running,
  a correct int8 program sits at its own sensitivity floor, so it is reported, not judged); on ARM the
  enhanced output's PESQ-wb vs float within 0.02 of the host's.
"""
from __future__ import annotations

import pytest

from pocketvqe.device_tests.parity import manifest_beside, manifest_tolerances, run_parity
from pocketvqe.export.teacher import TEACHER_TOLERANCES

ARM_PESQ_DELTA = 0.02                    # PESQ difference ARM vs host < 0.02


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_parity_on_target(device, built, parity_rows, variant):
    pte = built.paths[variant]
    tolerances = manifest_tolerances(manifest_beside(pte), pte.name, built.precision[variant])
    row = run_parity(pte, built.frames, built.init_state, built.references, target=device,
                     precision=built.precision[variant], tolerances=tolerances, sample_rate=built.sample_rate,
                     trace=built.traces[variant], trace_reference=built.teachers[variant])
    parity_rows.append(row)
    assert row["frames"] == len(built.frames)
    assert row["pass"] is True, (row["failures"], row["notes"])
    worst = row["teacher_forced"]["worst"]["min_snr_db"]
    assert worst >= TEACHER_TOLERANCES[variant]["min_snr_db"]
    if variant == "fp32":
        assert tolerances == {"snr_db_vs_float": 70.0}
        assert row["snr_db_vs_float"] > 70.0
        if device.name != "host":
            assert row["snr_db_vs_host"] > 70.0
        return
    assert tolerances == {}
    if device.name != "host" and row.get("pesq_delta") is not None:
        assert row["pesq_delta"] < ARM_PESQ_DELTA
