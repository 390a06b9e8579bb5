"""`pocketvqe quant-report`: per-layer SQNR of the int8 step against the float step, worst first,
and the smallest keep_float set found (greedy) that meets an end-to-end SQNR target.

    pocketvqe quant-report --ckpt X.pt [--calib-clips 4] [--calib-seconds 2] [--target-sqnr 30]
                           [--top 10] [--max-trials 8] [--json report.json]
"""
from __future__ import annotations

import json

from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_write_text, json_safe
from pocketvqe.models import load_checkpoint
from pocketvqe.quant import PTQConfig, calibration_frames, format_table, propose_keep_float, sensitivity
from pocketvqe.quant.config import OBSERVERS

HELP = "per-layer int8 SQNR ranking and a mixed-precision (keep_float) proposal"


def add_arguments(p):
    p.add_argument("--ckpt", required=True, help="float checkpoint (.pt)")
    p.add_argument("--config", help="expected model config name: refuse a checkpoint of another config")
    p.add_argument("--calib-clips", type=int, default=4, help="calibration clips, also the measured audio (default 4)")
    p.add_argument("--calib-seconds", type=float, default=2.0, help="seconds per clip (default 2)")
    p.add_argument("--observer", choices=OBSERVERS, default="percentile", help="activation observer (default percentile)")
    p.add_argument("--keep-float", default="", help="comma list of modules already kept fp32")
    p.add_argument("--int8-dsp", action="store_true", help="quantize the STFT/compression/CCM too")
    p.add_argument("--target-sqnr", type=float, default=30.0, metavar="DB",
                   help="end-to-end SQNR target of the keep_float proposal (default 30 dB)")
    p.add_argument("--max-trials", type=int, default=8, help="re-quantizations the proposal may try (default 8)")
    p.add_argument("--top", type=int, default=10, help="rows of the ranking to print (default 10)")
    p.add_argument("--data", help="corpus folder")
    p.add_argument("--seed", type=int, default=0, help="calibration clip seed")
    p.add_argument("--json", metavar="PATH", help="write the full report (every node) and the proposal as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:


    if args.max_trials < 0 or args.top < 1:
        raise PocketVQEError("--max-trials must be >= 0 and --top >= 1")
    enh, _ = load_checkpoint(args.ckpt, expect=args.config)
    cfg = PTQConfig(observer=args.observer, calib_clips=args.calib_clips, calib_seconds=args.calib_seconds,
                    keep_float=tuple(t.strip() for t in args.keep_float.split(",") if t.strip()),
                    float_dsp=not args.int8_dsp, seed=args.seed)
    progress = not args.no_progress
    calib = calibration_frames(enh, cfg.calib_clips, cfg.calib_seconds, cfg.seed, data=args.data, progress=progress)
    rep = sensitivity(enh, cfg, calib, progress=progress)
    print(format_table(rep, top=args.top))
    prop = propose_keep_float(enh, cfg, calib, args.target_sqnr, report=rep, max_trials=args.max_trials,
                              progress=progress)
    state = "meets" if prop.met else "does not meet"
    print(f"\nproposal: keep_float = {', '.join(prop.keep_float) or '(none)'} -> end-to-end SQNR "
          f"{prop.sqnr_db:.1f} dB (int8 everywhere: {prop.baseline_db:.1f} dB); {state} the {args.target_sqnr:g} dB "
          f"target after {len(prop.trials)} trial(s)")
    if prop.keep_float:
        print(f"use: pocketvqe quantize --ckpt {args.ckpt} --keep-float {','.join(prop.keep_float)} --out q.pt2")
    if args.json:
        doc = {"report": rep.to_dict(), "proposal": prop.to_dict(), "calibration": calib.summary,
               "ptq_config": cfg.to_dict()}
        atomic_write_text(args.json, json.dumps(json_safe(doc), indent=1, default=str) + "\n")
    return 0
