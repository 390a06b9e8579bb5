"""The one export step: lower a program, bundle its self-check, verify it, write it, say if it passes.

`pocketvqe export` and `pocketvqe build` both call :func:`package`; what they write is the same for
the same inputs (same seed, same recipe: the same ``.pte`` bytes).

>>> clip = self_check_clip(enhancer)                                    # a real simulated clip
>>> fp32 = package(enhancer, None, clip, "build/")                      # build/dvqe-s16-fp32.pte
>>> int8 = package(enhancer, int8_reference(enhancer), clip, "build/")  # build/dvqe-s16-int8.pte
>>> write_manifest("build/", [fp32, int8]); int8.checks.passed
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pocketvqe.audio import read_audio, resample
from pocketvqe.data import SimConfig, Simulator, corpus_root
from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_write_bytes
from pocketvqe.models import Enhancer
from pocketvqe.quant import Int8Reference
from pocketvqe.signals import frames_of

from . import program as P
from .bundle import bundle_tolerances, enroll_fidelity, make_bundle, program_fidelity, verify_bundle
from .lower import load_method
from .teacher import teacher_forced


@dataclass(frozen=True)
class SelfCheckClip:
    """The real clip a program is checked on (model rate): ``mic``, ``far`` (None without a far end),
    ``enroll`` (enrollment audio of personalized models, else None), the float model's ``speaker``
    embedding of it, and where it came from (``source``: a file or ``simulated <split> <scenario>``)."""

    mic: np.ndarray
    far: np.ndarray | None
    enroll: np.ndarray | None
    speaker: np.ndarray | None
    source: str

    def frames(self, hop: int, tensors: bool = True) -> list[list]:
        return frames_of(self.mic, self.far, hop, self.speaker, tensors=tensors)


def self_check_clip(enhancer: Enhancer, path: str | Path | None = None, data=None, seed: int = 1,
                    seconds: float = 4.0) -> SelfCheckClip:
    """The recording at ``path`` (any rate; far end silent, enrollment on its first 3 s) or one
    simulated clip of the test split (``seed``; double talk for a model with a far end, else noisy
    speech; enrollment audio of the clip's speaker for personalized models)."""
    cfg = enhancer.cfg
    if path is not None:
        x, sr = read_audio(path, what="self-check clip")
        mic = resample(x, sr, cfg.sample_rate)
        far, enroll, source = (np.zeros_like(mic) if cfg.has_far else None), mic[:3 * cfg.sample_rate], str(path)
    else:
        scenario = "double_talk" if cfg.has_far else "noise"
        sim = Simulator(corpus_root(data), split="test", seed=seed,
                        config=SimConfig(clip_seconds=float(seconds), personalized=cfg.personalized))
        m = sim.make(0, scenario=scenario)
        mic, far, enroll, source = m.mic, (m.far if cfg.has_far else None), m.enroll, f"simulated test {scenario}"
    enroll = enroll if cfg.personalized else None
    speaker = enhancer.enroll(enroll).float().reshape(-1).numpy() if enroll is not None else None
    return SelfCheckClip(np.asarray(mic, np.float32), None if far is None else np.asarray(far, np.float32),
                         enroll, speaker, source)


@dataclass
class Checks:
    """What the export verified. ``bundle``: per method, the bundled cases the runtime re-ran
    (cases, rtol, atol, max_abs_err; a miss raises). ``teacher_forced``: each output of the program,
    fed the reference's own inputs and state every frame, against the reference's (:mod:`export.teacher`),
    must pass too. ``snr_db_vs_reference``: the program's enhanced clip against its PyTorch reference,
    free-running, which an fp32 program must bring to ``snr_db_required`` (int8: None, reported, not
    judged: a correct int8 program sits at its floor); ``snr_db_floor``: the program against itself
    under +-1 LSB of mic dither (how far two correct runs can differ).
    Personalized programs: the cosine of the program's own enrollment to the checkpoint's embedding."""

    bundle: dict
    snr_db_vs_reference: float
    snr_db_required: float | None
    snr_db_floor: float
    teacher_forced: dict | None = None
    enroll_cosine_vs_checkpoint: float | None = None
    enroll_cosine_required: float | None = None

    @property
    def snr_ok(self) -> bool:
        return self.snr_db_required is None or self.snr_db_vs_reference >= self.snr_db_required

    @property
    def enroll_ok(self) -> bool:
        return self.enroll_cosine_vs_checkpoint is None or self.enroll_cosine_vs_checkpoint >= self.enroll_cosine_required

    @property
    def passed(self) -> bool:
        tf_ok = self.teacher_forced is not None and bool(self.teacher_forced["pass"])
        return self.snr_ok and self.enroll_ok and tf_ok

    def to_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return {**d, "pass": self.passed}

    def failures(self, name: str) -> list[str]:
        """One sentence per missed check, naming the fix."""
        out = []
        if self.teacher_forced is not None and not self.teacher_forced["pass"]:
            out.append(f"{name}: teacher-forced parity against its reference failed: "
                       + "; ".join(self.teacher_forced["failures"][:4]) + " (manifest: checks.teacher_forced)")
        if not self.snr_ok:
            out.append(f"{name}: SNR vs its reference {self.snr_db_vs_reference:.1f} dB is below the "
                       f"{self.snr_db_required} dB this precision must meet (manifest: checks.pass = false); the "
                       f"program matches itself under +-1 LSB input dither to {self.snr_db_floor:.1f} dB (its "
                       "sensitivity floor)")
        if not self.enroll_ok:
            out.append(f"{name}: the program's own enrollment gives a speaker embedding with cosine "
                       f"{self.enroll_cosine_vs_checkpoint:.4f} to the checkpoint's, below the required "
                       f"{self.enroll_cosine_required} (manifest: checks.pass = false); calibrate on more or longer "
                       "clips (PTQConfig calib_clips / calib_seconds)")
        return out


@dataclass
class Packaged:
    """A written program: ``program`` (:class:`export.program.Program`), ``pte``, ``files`` (the
    .pte, its .bpte and, when kept, its .etrecord) and its ``checks``."""

    program: P.Program
    pte: Path
    checks: Checks
    files: list[Path] = field(default_factory=list)


def check(prog: P.Program, clip: SelfCheckClip, bundle_frames: int = 8) -> tuple[bytes, Checks]:
    """Bundle ``bundle_frames`` frames of ``clip`` into a .bpte, verify it with the runtime, and
    measure the program on the whole clip -> (bpte bytes, checks)."""
    frames = clip.frames(prog.step.cfg.hop)
    bpte = make_bundle(prog, frames, k=bundle_frames)
    fidelity = program_fidelity(prog, frames)
    method = load_method(prog.buffer)
    tf = teacher_forced(lambda a: method.execute(a), prog.reference, frames, prog.step.init_state(),
                        ["enhanced", *prog.step.state_names], prog.precision)
    try:
        bundle = verify_bundle(bpte, bundle_tolerances(prog, bpte))
    except PocketVQEError as exc:
        raise PocketVQEError(f"{prog.name}: {exc}") from None
    checks = Checks(bundle=bundle,
                    snr_db_vs_reference=round(fidelity["snr_db_vs_reference"], 2),
                    snr_db_required=prog.tolerances.get("snr_db"), snr_db_floor=round(fidelity["snr_db_floor"], 2),
                    teacher_forced={k: v for k, v in tf.items() if k != "rows"} | {"rows": tf["rows"]})
    if prog.enroll is not None and clip.enroll is not None:     # the device's own enrollment vs the checkpoint's
        checks.enroll_cosine_vs_checkpoint = round(enroll_fidelity(prog, clip.enroll), 5)
        checks.enroll_cosine_required = prog.tolerances["enroll"]["cosine_vs_checkpoint"]
    return bpte, checks


def package(enhancer: Enhancer, int8: Int8Reference | None, clip: SelfCheckClip, out_dir: str | Path, *,
            bundle_frames: int = 8, etrecord: bool = True) -> Packaged:
    """Export (fp32 when ``int8`` is None), check and write ``out_dir/<model>-<precision>.pte`` with
    its ``.bpte`` (and ``.etrecord``). The manifest is the caller's (:func:`write_manifest`), since a
    folder may describe several programs."""
    prog = P.export_program(enhancer, int8, etrecord=etrecord)
    bpte, checks = check(prog, clip, bundle_frames)
    prog.extra["checks"] = checks.to_dict()
    out = Path(out_dir)
    pte = P.write_program(prog, out)
    atomic_write_bytes(out / f"{prog.name}.bpte", bpte)
    files = [pte, out / f"{prog.name}.bpte"]
    if etrecord:
        files.append(P.write_etrecord(prog, out / f"{prog.name}.etrecord"))
    return Packaged(prog, pte, checks, files)


def write_manifest(out_dir: str | Path, packaged: list[Packaged], extra: dict | None = None,
                   merge: bool = False) -> Path:
    """manifest.json describing ``packaged`` (see :func:`export.program.write_manifest`)."""
    files = [f for p in packaged for f in p.files]
    return P.write_manifest(out_dir, [p.program for p in packaged], files, extra=extra, merge=merge)


def seed_everything(seed: int) -> None:
    """The seeds and thread setting every export runs under (one thread: the per-frame steps are tiny
    ops, and OpenMP spin-waits would only add noise to the timings and the runtime's rounding)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)
