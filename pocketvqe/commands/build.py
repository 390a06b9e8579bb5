"""`pocketvqe build`: the main job, checkpoint -> fp32 + int8 .pte + self-check + parity + bench + report."""
from __future__ import annotations

import json
import sys

from pocketvqe.build import BuildConfig, build
from pocketvqe.device_tests.bench import format_bench_table
from pocketvqe.device_tests.parity import format_parity_table
from pocketvqe.quant.config import OBSERVERS
from pocketvqe.report.formatting import VERDICT_TEXT

HELP = "checkpoint -> fp32 + int8 .pte, manifest, parity (host, qemu-arm64), bench and report"


def add_arguments(p):
    p.add_argument("--config", default="dvqe-s16", help="config name (uses the shipped checkpoint)")
    p.add_argument("--ckpt", help="checkpoint to build instead of the shipped one")
    p.add_argument("--int8", "--quant", dest="int8", default="ptq",
                   help="the int8 program: ptq (post-training quantization with the config's measured recipe) or a "
                        "quantized model Q.pt2 from `pocketvqe quantize` (e.g. --mode qat); --quant is the older name")
    p.add_argument("--keep-float", nargs="*", default=None, metavar="MODULE",
                   help="PTQ: modules kept fp32 (default: the config's measured recipe, none for the shipped "
                        "configs; give the flag alone for none)")
    p.add_argument("--dynamic", nargs="*", default=None, metavar="MODULE",
                   help="PTQ: modules with int8 weights and per-frame (dynamic) activation ranges (default: the "
                        "config's measured recipe: net.mic net.far net.align net.dec, every conv and linear but the "
                        "GRU's, for dvqe-s16 and pvqe-s16; give the flag alone for none)")
    p.add_argument("--observer", choices=OBSERVERS, default=None,
                   help="PTQ activation observer (default: the config's measured recipe, percentile for the shipped "
                        "configs)")
    p.add_argument("--out", default="build", help="output folder")
    p.add_argument("--bench-frames", type=int, default=1000)
    p.add_argument("--data", help="corpus root (default: a quick corpus in the cache)")
    p.add_argument("--no-qemu", action="store_true", help="skip the qemu-arm64 parity run")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    bc = BuildConfig(config=args.config, ckpt=args.ckpt, int8=args.int8,
                     keep_float=None if args.keep_float is None else tuple(args.keep_float),
                     observer=args.observer, dynamic=None if args.dynamic is None else tuple(args.dynamic),
                     out=args.out, bench_frames=args.bench_frames, data=args.data, qemu=not args.no_qemu,
                     seed=args.seed)
    summary = build(bc)
    print(format_parity_table(summary["parity"]))
    print(format_bench_table(summary["bench"]))
    print(json.dumps({"out": summary["out"], "sizes": summary["sizes"]}, indent=2))
    if summary["verdict"] == "fail":
        print(f"pocketvqe build: FAIL: {'; '.join(summary['failures'])} (see {args.out}/report.html)", file=sys.stderr)
        return 1
    print(f"pocketvqe build: {VERDICT_TEXT[summary['verdict']]} ({args.out}/report.html)", file=sys.stderr)
    return 0
