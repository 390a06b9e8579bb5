"""`pocketvqe parity`: run a .pte on a target over a recording and compare it with its references.

    pocketvqe parity --pte build/dvqe-s16-ptq.pte --ref ckpt.pt --ref q.pt2 --mic in.wav --far f.wav \\
        --target qemu-arm64 --json parity.json

The program runs on the target over the whole clip with its state threaded; the float model (the
checkpoint) and, for int8 programs, the PyTorch int8 reference (a ``.pt2``) run on the host. The
verdict is teacher-forced (each frame from the reference's own inputs and state; fp32 programs also
free-running against the float model). Exit status 1 when the program fails, or when it cannot be
judged (an int8 program without its int8 reference).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from pocketvqe.audio import match_length, read_audio, resample
from pocketvqe.device_tests.parity import (
    format_parity_table,
    manifest_beside,
    manifest_fidelity,
    manifest_tolerances,
    reference_outputs,
    resolve_references,
    run_parity,
)
from pocketvqe.device_tests.targets import get_target
from pocketvqe.errors import PocketVQEError
from pocketvqe.export.runner import ProgramModel
from pocketvqe.export.teacher import reference_trace
from pocketvqe.fileio import write_json
from pocketvqe.models.step import StreamStep
from pocketvqe.signals import frames_of

HELP = "run a .pte on a target over a recording; SNR / PESQ vs the float and int8 references, pass/fail"


def add_arguments(p):
    p.add_argument("--pte", required=True, help="the program (.pte); its manifest.json must be beside it")
    p.add_argument("--ref", action="append", default=[], metavar="CKPT|Q.pt2",
                   help="reference: the float checkpoint (.pt) and/or the int8 model (.pt2, also holds the float "
                        "weights); repeatable. Default: the checkpoint the manifest names, the .pt2 the program names")
    p.add_argument("--mic", required=True, help="microphone recording (any rate; resampled to the model's)")
    p.add_argument("--far", help="far-end signal (echo-cancelling models; silent if not given)")
    p.add_argument("--enroll", help="enrollment recording of the target speaker (personalized models)")
    p.add_argument("--channel", type=int, help="channel to use from multi-channel files (0-based)")
    p.add_argument("--target", default="host", help="host | qemu-arm64 | adb[:SERIAL] | ssh:HOST (default host)")
    p.add_argument("--cache", metavar="DIR", help="qemu-arm64 sysroot cache folder")
    p.add_argument("--runner", metavar="PATH", help="adb: executor_runner built with the Android NDK")
    p.add_argument("--no-pesq", action="store_true", help="skip PESQ-wb (it needs >= 0.25 s of speech)")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON")


def _signal(path, rate: int, what: str, channel, notes: list):
    x, sr = read_audio(path, channel=channel, what=what)
    if sr != rate:
        notes.append(f"{what} {path} is {sr} Hz: resampled to the model's {rate} Hz")
        x = resample(x, sr, rate)
    return x.astype("float32")


def _inputs(args, cfg, enh, notes: list):
    """(mic, far or None, speaker or None) at the model's rate."""

    rate, hop = cfg.sample_rate, cfg.hop
    mic = _signal(args.mic, rate, "mic", args.channel, notes)
    if len(mic) < 2 * hop:
        raise PocketVQEError(f"mic {args.mic} is {len(mic)} samples at {rate} Hz, shorter than two hops "
                             f"({2 * hop}): give a longer recording (a few seconds)")
    far = None
    if args.far and not cfg.has_far:
        raise PocketVQEError(f"model {cfg.name} has no far-end input: drop --far")
    if cfg.has_far:
        if args.far:
            far = match_length(_signal(args.far, rate, "far-end", args.channel, notes), len(mic))
        else:
            far = np.zeros_like(mic)
            notes.append("no --far: the far-end input is silent")
    speaker = None
    if args.enroll and not cfg.personalized:
        raise PocketVQEError(f"model {cfg.name} is not personalized: drop --enroll")
    if cfg.personalized:
        if not args.enroll:
            raise PocketVQEError(f"model {cfg.name} is personalized: pass --enroll ENROLL.wav (the target speaker alone)")
        speaker = enh.enroll(_signal(args.enroll, rate, "enrollment", args.channel, notes)).numpy().reshape(-1)
    return mic, far, speaker


def run(args) -> int:



    torch.set_num_threads(1)
    pte = Path(args.pte)
    if args.json and Path(args.json).resolve() in {Path(p).resolve() for p in (args.mic, args.far, args.enroll, pte) if p}:
        raise PocketVQEError(f"--json {args.json} is one of the inputs: pick another path")
    target = get_target(args.target, cache_dir=args.cache, runner=args.runner)
    prog = ProgramModel(pte)
    manifest = manifest_beside(pte)
    tolerances = manifest_tolerances(manifest, pte.name, prog.precision)
    quant_info = json.loads(prog.metadata.get("quant_json") or "{}")
    enh, int8, notes = resolve_references(args.ref, prog.cfg, prog.precision, manifest, quant_info)
    cfg = prog.cfg
    mic, far, speaker = _inputs(args, cfg, enh, notes)
    step = StreamStep(enh).eval()
    init = step.init_state()
    if [tuple(s.shape) for s in init] != [tuple(s) for s in prog.state_shapes]:
        raise PocketVQEError(f"{pte.name} has state shapes {prog.state_shapes} but the reference model "
                             f"{[tuple(s.shape) for s in init]}: give the checkpoint the program was exported from")
    frames = frames_of(mic, far, cfg.hop, speaker)
    print(f"parity: {pte.name} ({cfg.name}, {prog.precision}) on {target.name}, {len(frames)} frames "
          f"({len(frames) * cfg.hop / cfg.sample_rate:.1f} s)", file=sys.stderr, flush=True)
    refs = reference_outputs(frames, init, step, int8)
    teacher = int8 if prog.precision == "int8" else step          # what each frame's inputs and state come from
    trace = None
    if teacher is not None:
        trace = reference_trace(teacher, frames, init, ["enhanced", *prog.state_names])
    else:
        notes.append("no int8 reference (--ref Q.pt2): no teacher-forced parity")
    row = run_parity(pte, frames, init, refs, target=target, precision=prog.precision, tolerances=tolerances,
                     sample_rate=cfg.sample_rate, pesq=not args.no_pesq, trace=trace, trace_reference=teacher,
                     fidelity_targets=manifest_fidelity(manifest, pte.name))
    row = {"model": cfg.name, **row, "notes": notes + row["notes"]}
    print(format_parity_table([row]))
    for note in row["notes"]:
        print(f"note: {note}")
    for failure in row["failures"]:
        print(f"FAIL: {failure}")
    if args.json:
        write_json(args.json, row)
    if row["pass"] is None:
        print("pocketvqe parity: error: the program was not judged: pass its int8 reference with --ref Q.pt2 "
              "(`pocketvqe quantize` writes it)", file=sys.stderr)
    return 0 if row["pass"] else 1
