"""`pocketvqe init`: write a randomly initialised (seeded) checkpoint of a registered config."""
from __future__ import annotations

from pocketvqe.models import get_config, init_checkpoint, save_checkpoint

HELP = "write a randomly initialised checkpoint (seeded) of a registered config"


def add_arguments(p):
    p.add_argument("--config", required=True, help="registered config name")
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    enh = init_checkpoint(get_config(args.config), args.seed)
    path = save_checkpoint(args.out, enh, meta={"init_seed": args.seed, "trained_steps": 0})
    print(f"wrote {path} ({sum(p.numel() for p in enh.parameters()):,} params, seed {args.seed})")
    return 0
