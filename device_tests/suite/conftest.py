"""The device suite: `pytest device_tests/suite --target T` (host, qemu-arm64, adb[:SERIAL], ssh:HOST).

Session fixtures build the programs once: a seeded ``--device-config`` model (default dvqe-s16)
with non-trivial BatchNorm statistics, exported fp32 and int8 (PTQ calibrated on real speech) with
their manifest, and a short real clip (Debian pocketsphinx-testdata LibriVox speech: near-end
talker + an echo of a far-end talker + noise). ``qemu-arm64`` and ``host-native`` build their native
runner first when it is not there yet (cached under ~/.cache/pocketvqe/runner, ~15 s the first time).
The parity table of the session is printed at the end.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pocketvqe.audio import read_audio, resample
from pocketvqe.device_tests.parity import format_parity_table, reference_outputs
from pocketvqe.device_tests.targets import get_target
from pocketvqe.device_tests.targets.native import NativeTarget
from pocketvqe.export.program import export_program, write_manifest, write_program
from pocketvqe.export.teacher import reference_trace
from pocketvqe.models import get_config, init_checkpoint
from pocketvqe.models.checkpoint import save_checkpoint
from pocketvqe.quant import int8_reference
from pocketvqe.signals import frames_of

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLIP_SECONDS = 3.0
CALIB_SECONDS = 3.0

torch.set_num_threads(1)          # one step is many tiny ops: one thread avoids OpenMP spin-waits


def pytest_addoption(parser):
    group = parser.getgroup("pocketvqe device suite")
    group.addoption("--target", default="host",
                    help="device target for the parity suite: host | host-native | qemu-arm64 | adb[:SERIAL] | ssh:HOST "
                         "(default host)")
    group.addoption("--device-config", default="dvqe-s16", help="model config the suite exports (default dvqe-s16)")


@dataclasses.dataclass
class Built:
    """What the session exported: program paths per variant, the references' outputs, the clip."""

    out: Path
    paths: dict
    precision: dict
    frames: list
    init_state: list
    references: dict
    traces: dict              # per variant: the reference's teacher-forced trace (export.teacher)
    teachers: dict            # per variant: the reference module the trace came from
    sample_rate: int
    export_seconds: dict


def _say(msg: str) -> None:
    print(f"[device suite] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def device(request):
    """The target under test, ready to run (native targets: runner built when missing)."""
    spec = request.config.getoption("--target")
    target = get_target(spec)
    if isinstance(target, NativeTarget):
        if not target.ready():
            _say(f"building the {target.name} native runner (once; cached)")
        target.runner                     # noqa: B018 - builds it now, not inside the first test
    return target


def librivox_speech() -> np.ndarray:
    """The LibriVox recordings of pocketsphinx-testdata, concatenated (about 25 s, 16 kHz)."""
    files = sorted(LIBRIVOX.glob("*.wav"))
    assert files, (f"no LibriVox recordings in {LIBRIVOX}: install the Debian package pocketsphinx-testdata "
                   "(one of the Makefile's system packages)")
    return np.concatenate([resample(*read_audio(f), 16000) for f in files])


def make_clip(cfg, seconds: float, near_at: float, far_at: float, seed: int):
    """(mic, far or None, near-end speech) at the model's rate: near-end talker + an echo of the
    far-end talker (40 ms late, a decaying 30 ms tail) + noise about 20 dB below the speech."""
    rng = np.random.default_rng(seed)
    speech = librivox_speech()
    n16 = int(seconds * 16000)
    near, far = (speech[int(t * 16000):int(t * 16000) + n16] for t in (near_at, far_at))
    assert len(near) == len(far) == n16, f"the LibriVox recordings hold {len(speech) / 16000:.1f} s only"
    h = np.zeros(int(0.07 * 16000))
    tail = np.arange(int(0.03 * 16000))
    h[int(0.04 * 16000):] = 0.4 * np.exp(-tail / 80.0) * rng.standard_normal(len(tail)) / 3
    echo = np.convolve(far, h)[:n16]
    noise = rng.standard_normal(n16) * 0.1 * np.sqrt(np.mean(near ** 2))
    mic = near + (echo if cfg.has_far else 0) + noise
    to_rate = (lambda x: resample(np.asarray(x, np.float32), 16000, cfg.sample_rate).astype(np.float32))
    return to_rate(mic), (to_rate(far) if cfg.has_far else None), to_rate(near)


def seeded_enhancer(name: str, seed: int = 0):
    """A seeded model with non-trivial BatchNorm statistics."""
    return init_checkpoint(get_config(name), seed, bn_stats=True)


@pytest.fixture(scope="session")
def built(request, tmp_path_factory) -> Built:
    """fp32 and int8 programs of the session's model, exported once, with manifest and references."""
    name = request.config.getoption("--device-config")
    out = tmp_path_factory.mktemp("device-suite")
    enh = seeded_enhancer(name)
    cfg = enh.cfg
    ckpt = save_checkpoint(out / f"{name}.pt", enh)
    mic, far, near = make_clip(cfg, CLIP_SECONDS, near_at=0.5, far_at=13.0, seed=1)
    speaker = enh.enroll(near).numpy().reshape(-1) if cfg.personalized else None
    frames = frames_of(mic, far, cfg.hop, speaker)
    cmic, cfar, cnear = make_clip(cfg, CALIB_SECONDS, near_at=4.5, far_at=18.0, seed=2)
    cspk = enh.enroll(cnear).numpy().reshape(-1) if cfg.personalized else None
    calib = frames_of(cmic, cfar, cfg.hop, cspk, tensors=True)
    progs, seconds = {}, {}
    for precision in ("fp32", "int8"):
        t0 = time.perf_counter()
        _say(f"exporting {name} {precision} (XNNPACK; int8: the config's PTQ recipe)")
        int8 = int8_reference(enh, calibration=calib) if precision == "int8" else None
        progs[precision] = export_program(enh, int8)
        seconds[precision] = round(time.perf_counter() - t0, 1)
    paths = {v: write_program(p, out) for v, p in progs.items()}
    write_manifest(out, list(progs.values()), list(paths.values()), extra={"checkpoint": str(ckpt)})
    step = progs["fp32"].step
    init = [s.numpy() for s in step.init_state()]
    refs = reference_outputs(frames, init, step, progs["int8"].reference)
    names = ["enhanced", *step.state_names]
    traces = {v: reference_trace(p.reference, frames, init, names) for v, p in progs.items()}
    return Built(out=out, paths=paths, precision={v: p.precision for v, p in progs.items()}, frames=frames,
                 init_state=init, references=refs, traces=traces, teachers={v: p.reference for v, p in progs.items()},
                 sample_rate=cfg.sample_rate, export_seconds=seconds)


ROWS_KEY = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def parity_rows(request) -> list:
    """Parity rows of the session, printed as a table at the end."""
    rows = request.config.stash.setdefault(ROWS_KEY, [])
    return rows


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = config.stash.get(ROWS_KEY, [])
    if rows:
        terminalreporter.write_sep("-", "parity on the device target")
        terminalreporter.write_line(format_parity_table(rows))
