"""`pocketvqe export`: checkpoint -> DIR/<model>-<precision>.pte, .bpte, .etrecord and manifest.json.

>>> pocketvqe export --ckpt x.pt --precision int8 --out build/            # doctest: +SKIP
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pocketvqe.errors import PocketVQEError
from pocketvqe.export import package, seed_everything, self_check_clip, write_manifest
from pocketvqe.models import load_checkpoint
from pocketvqe.quant import int8_reference, recommended_ptq

HELP = "export a checkpoint as an ExecuTorch program (.pte + bundled self-check .bpte + manifest)"
# --quant, the older spelling: its words -> (precision, recipe)
QUANT_WORDS = {"none": ("fp32", None), "fp32": ("fp32", None), "ptq": ("int8", "ptq"), "int8": ("int8", "ptq"),
               "qat": ("int8", "qat")}


def add_arguments(p):
    p.add_argument("--ckpt", required=True, help="float checkpoint (.pt)")
    p.add_argument("--precision", choices=("fp32", "int8"), help="program precision (default fp32)")
    p.add_argument("--recipe", choices=("ptq", "qat"),
                   help="how the int8 reference is made: ptq (calibrated here with the config's measured recipe, "
                        "the default) or qat (give the fine-tuned model with --quantized)")
    p.add_argument("--quantized", help="an int8 model made by `pocketvqe quantize` (.pt2, PTQ or QAT) to lower")
    p.add_argument("--quant", help="older spelling: none|fp32 (= --precision fp32), ptq|int8 (= --precision int8), "
                   "qat or PATH.pt2 (= --quantized PATH)")
    p.add_argument("--calib-clips", type=int, help="PTQ calibration clips (default: the config's recipe)")
    p.add_argument("--calib-seconds", type=float, help="length of each calibration clip (default: the recipe's)")
    p.add_argument("--bundle-frames", type=int, default=8, help="real frames in the bundled self-check (.bpte)")
    p.add_argument("--clip", help="a real recording (wav, any rate) for the self-check instead of a simulated clip; "
                   "personalized models enroll on its first 3 s")
    p.add_argument("--data", help="corpus root (default: $POCKETVQE_DATA, else a quick corpus in the cache)")
    p.add_argument("--no-etrecord", action="store_true", help="skip the ETRecord (devtools) file")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration clips (the recipe's seed field)")
    p.add_argument("--out", required=True, help="output folder")


def resolve_int8(args) -> tuple[str, str | None]:
    """(precision, int8 source: "ptq", a .pt2 path, or None for fp32) from the flags."""
    precision, recipe, quantized = args.precision, args.recipe, args.quantized
    if args.quant is not None:
        word = str(args.quant)
        if word.endswith(".pt2"):
            quantized = quantized or word
        elif word.lower() in QUANT_WORDS:
            p, r = QUANT_WORDS[word.lower()]
            precision, recipe = precision or p, recipe or r
        else:
            raise PocketVQEError(f"unknown --quant {word!r}: use --precision fp32|int8 (and --recipe ptq|qat, "
                                 "--quantized PATH.pt2)")
    if quantized is not None:
        precision = precision or "int8"
    precision = precision or "fp32"
    if precision == "fp32":
        if recipe is not None or quantized is not None:
            raise PocketVQEError("--recipe and --quantized describe an int8 program: add --precision int8")
        return "fp32", None
    if recipe == "qat" and quantized is None:
        raise PocketVQEError("--recipe qat lowers a fine-tuned model: give it with --quantized PATH.pt2 "
                             "(made by `pocketvqe quantize --mode qat`)")
    return "int8", quantized or "ptq"


def _say(i: int, n: int, msg: str) -> None:
    print(f"[{i}/{n}] {msg}", file=sys.stderr, flush=True)


def run(args) -> int:
    if args.bundle_frames < 1:
        raise PocketVQEError("--bundle-frames must be >= 1")
    precision, source = resolve_int8(args)
    t0 = time.perf_counter()
    seed_everything(args.seed)
    n = 4
    _say(1, n, f"loading {args.ckpt}")
    enh, _ = load_checkpoint(args.ckpt)
    overrides = {k: v for k, v in (("calib_clips", args.calib_clips), ("calib_seconds", args.calib_seconds),
                                   ("seed", args.seed)) if v is not None}
    config = recommended_ptq(enh.cfg.name, **overrides)
    int8 = None
    if precision == "int8":
        _say(2, n, f"int8 reference: {'PTQ' if source == 'ptq' else source}, calibration {config.calib_clips} x "
                   f"{config.calib_seconds:g} s simulated clips")
        int8 = int8_reference(enh, source, config, data=args.data, progress=True)
    else:
        _say(2, n, "fp32: no quantization")
    clip = self_check_clip(enh, args.clip, args.data, seed=args.seed + 1)
    _say(3, n, f"export {enh.cfg.name} ({precision}{'; ' + int8.describe() if int8 else ''}) through XNNPACK; "
               f"self-check: {args.bundle_frames} bundled frames, SNR on the clip")
    done = package(enh, int8, clip, args.out, bundle_frames=args.bundle_frames, etrecord=not args.no_etrecord)
    _say(4, n, f"writing {args.out}")
    manifest = write_manifest(args.out, [done], extra={"checkpoint": str(args.ckpt),
                                                       "int8_source": None if int8 is None else str(source)},
                              merge=True)
    prog = done.program
    summary = {"program": str(done.pte), "bytes": {Path(f).name: Path(f).stat().st_size for f in done.files},
               "delegated_share": prog.delegation["delegated_share"],
               "undelegated_compute_ops": prog.delegation["undelegated_compute_ops"],
               "checks": done.checks.to_dict(), "export_seconds": round(prog.export_seconds, 1),
               "wall_seconds": round(time.perf_counter() - t0, 1), "manifest": str(manifest)}
    print(json.dumps(summary, indent=2, default=float))
    for line in done.checks.failures(prog.name):
        print(line, file=sys.stderr)
    return 0 if done.checks.passed else 1
