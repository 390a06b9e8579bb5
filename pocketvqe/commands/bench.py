"""`pocketvqe bench`: per-frame latency of a .pte on a target; on host also the float step and the fp32 .pte.

    pocketvqe bench --pte build/dvqe-s16-ptq.pte [--target host] [--threads 1] [--frames 1000] [--json out.json]

RTF = p50 / hop; deadline misses are frames slower than the hop. Emulated targets (qemu-arm64)
are refused: timings under emulation mean nothing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from pocketvqe.audio import read_audio, resample
from pocketvqe.device_tests.bench import BenchConfig, format_bench_table, refuse_emulated, row_name, run_bench
from pocketvqe.device_tests.measure import speech_like
from pocketvqe.device_tests.parity import load_float_reference
from pocketvqe.device_tests.targets import get_target
from pocketvqe.errors import PocketVQEError
from pocketvqe.export.runner import ProgramModel
from pocketvqe.fileio import write_json
from pocketvqe.models.step import StreamStep
from pocketvqe.signals import frames_of

HELP = "per-frame latency (p50/p90/p99/max, RTF, deadline misses) of a .pte; on host vs float eager and fp32"


def add_arguments(p):
    p.add_argument("--pte", required=True, help="the program (.pte)")
    p.add_argument("--target", default="host", help="host | adb[:SERIAL] | ssh:HOST (qemu-arm64 is refused: emulated)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (ExecuTorch pool and torch); default 1")
    p.add_argument("--frames", type=int, default=1000, help="timed frames per variant (>= 100; default 1000)")
    p.add_argument("--warmup", type=int, default=50, help="untimed calls before timing (default 50)")
    p.add_argument("--ckpt", help="float checkpoint for the float-eager row (default: the one the manifest names)")
    p.add_argument("--mic", help="recording to feed (looped; any rate). Default: a seeded synthetic speech-like signal")
    p.add_argument("--cache", metavar="DIR", help="qemu-arm64 sysroot cache folder")
    p.add_argument("--runner", metavar="PATH", help="adb: executor_runner built with the Android NDK")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON (with every frame's time)")


def _float_step(args, prog, manifest: dict, notes: list):
    """The float eager StreamStep of --ckpt or of the manifest's checkpoint, or None (with a note)."""

    ckpt = args.ckpt or manifest.get("checkpoint")
    if args.ckpt or (isinstance(ckpt, str) and ckpt.endswith(".pt") and Path(ckpt).is_file()):
        return StreamStep(load_float_reference(ckpt, prog.cfg)).eval()
    why = f"the manifest names {ckpt!r}, not a checkpoint file here" if ckpt else "no manifest names one"
    notes.append(f"float-eager not timed: no checkpoint ({why}); pass --ckpt CKPT.pt")
    return None


def _frames(args, prog, notes: list):

    cfg = prog.cfg
    if args.mic:
        x, sr = read_audio(args.mic, what="mic")
        mic = resample(x, sr, cfg.sample_rate).astype(np.float32)
        notes.append(f"input: {args.mic} looped")
    else:
        mic = speech_like(10.0, cfg.sample_rate, seed=0)
        notes.append("input: 10 s seeded synthetic speech-like signal, looped (pass --mic for a recording)")
    far = 0.5 * speech_like(len(mic) / cfg.sample_rate, cfg.sample_rate, seed=1) if cfg.has_far else None
    speaker = None
    if cfg.personalized:
        rng = np.random.default_rng(0)
        speaker = rng.standard_normal(cfg.speaker_dim).astype(np.float32)
        speaker /= np.linalg.norm(speaker)
        notes.append("speaker embedding: a seeded random unit vector (latency does not depend on it)")
    return frames_of(mic, far, cfg.hop, speaker)


def run(args) -> int:



    config = BenchConfig(frames=args.frames, warmup=args.warmup, threads=args.threads)
    target = get_target(args.target, cache_dir=args.cache, runner=args.runner)
    refuse_emulated(target)
    torch.set_num_threads(args.threads)
    pte = Path(args.pte)
    if args.json and Path(args.json).resolve() in {Path(p).resolve() for p in (pte, args.mic, args.ckpt) if p}:
        raise PocketVQEError(f"--json {args.json} is one of the inputs: pick another path")
    prog = ProgramModel(pte)
    cfg = prog.cfg
    manifest_path = pte.resolve().parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    notes: list[str] = []
    name = row_name(prog.precision)
    step = _float_step(args, prog, manifest, notes) if target.name == "host" else None
    others = {}
    fp32 = pte.parent / f"{cfg.name}-fp32.pte"
    if target.name == "host" and name == "int8-pte":
        if fp32.is_file():
            others["fp32-pte"] = fp32
        else:
            notes.append(f"fp32-pte not timed: no {fp32.name} beside the program")
    frames = _frames(args, prog, notes)
    init = [s.numpy() for s in prog.init_state()]
    hop_ms = 1000.0 * cfg.hop / cfg.sample_rate
    print(f"bench: {pte.name} ({cfg.name}, {prog.precision}) on {target.name}, {config.frames} frames per variant",
          file=sys.stderr, flush=True)
    res = run_bench(pte, frames, init, hop_ms=hop_ms, target=target, config=config, name=name,
                    float_step=step, others=others)
    res = {"model": cfg.name, **res, "notes": notes + res["notes"]}
    print(format_bench_table(res))
    for note in res["notes"]:
        print(f"note: {note}")
    if args.json:
        write_json(args.json, res)
    return 0
