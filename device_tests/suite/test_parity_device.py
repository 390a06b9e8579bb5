"""Parity of every variant on the device target: `pytest device_tests --target T` (default host).

Each program (fp32, int8 PTQ) runs on the target over a 3 s real clip with its state threaded and
is compared with the PyTorch references run on the host (see conftest.py). Tolerances:

- fp32: the manifest's, > 70 dB vs the float eager step; on other targets also > 70 dB
  vs the host run (x86 and ARM fp32 kernels agree to ~1e-7).
- int8 on the host: the manifest's, > 35 dB vs the PyTorch int8 reference.
- int8 on ARM (qemu-arm64, adb, ssh): ARM int8 kernels round differently from x86,
  so > 30 dB vs the host run of the same program and > 30 dB vs the int8 reference
  (:data:`parity.ARM_INT8`, the ARM bar), and PESQ-wb vs float within 0.02 of the host's.
"""
from __future__ import annotations

import pytest

from pocketvqe.device_tests.parity import is_arm, manifest_beside, manifest_tolerances, run_parity

ARM_PESQ_DELTA = 0.02                    # PESQ difference ARM vs host < 0.02


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_parity_on_target(device, built, parity_rows, variant):
    pte = built.paths[variant]
    tolerances = manifest_tolerances(manifest_beside(pte), pte.name, built.precision[variant])
    row = run_parity(pte, built.frames, built.init_state, built.references, target=device,
                     precision=built.precision[variant], tolerances=tolerances, sample_rate=built.sample_rate)
    parity_rows.append(row)
    assert row["frames"] == len(built.frames)
    assert row["pass"] is True, (row["failures"], row["notes"])
    if variant == "fp32":
        assert tolerances == {"snr_db_vs_float": 70.0}
        assert row["snr_db_vs_float"] > 70.0
        if device.name != "host":
            assert row["snr_db_vs_host"] > 70.0
        return
    assert tolerances == {"snr_db_vs_int8_ref": 35.0}
    if device.name == "host":
        assert row["snr_db_vs_int8_ref"] > (30.0 if is_arm("host") else 35.0)
    else:
        assert row["snr_db_vs_int8_ref"] > 30.0 and row["snr_db_vs_host"] > 30.0
        if row.get("pesq_delta") is not None:
            assert row["pesq_delta"] < ARM_PESQ_DELTA
