"""`pocketvqe info`: what a registered model config is (params, MACs per frame, latency, state)."""
from __future__ import annotations

import json

from pocketvqe.models import get_config, list_configs
from pocketvqe.models.profile import describe

HELP = "show a model config: sample rate, hop, params, MACs per frame, latency, state shapes"


def add_arguments(p):
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", help="registered config name (see --list)")
    g.add_argument("--list", action="store_true", help="list the registered configs")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    if args.list:
        rows = [describe(get_config(n)) for n in list_configs()]
        if args.json:
            print(json.dumps([{k: v for k, v in r.items() if k != "state"} for r in rows], indent=2))
        else:
            print(f"{'name':<10} {'rate':>6} {'hop':>4} {'params':>10} {'MACs/frame':>12}  far  pers")
            for r in rows:
                print(f"{r['name']:<10} {r['sample_rate']:>6} {r['hop']:>4} {r['params']:>10,} "
                      f"{r['macs_per_frame']:>12,}  {'yes' if r['far_end'] else 'no ':<4} "
                      f"{'yes' if r['personalized'] else 'no'}")
        return 0
    info = describe(get_config(args.config))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for k, v in info.items():
        if k != "state":
            print(f"{k:<26} {v:,}" if k in ("params", "macs_per_frame") else f"{k:<26} {v}")
    print("state tensors:")
    for k, v in info["state"].items():
        print(f"  {k:<24} {tuple(v)}")
    return 0
