"""`pocketvqe eval`: score a model on the fixed evaluation set, per scenario, against the unprocessed input.

    pocketvqe eval --model M [--set test|valid] [--n-per-scenario K] [--data ROOT] [--json out.json] [--md out.md]
                   [--scenarios noise,reverb,...] [--metrics pesq,stoi,...] [--threads N] [--seed S]

M is a checkpoint (.pt; .pt2/.pte once their loaders are registered), a peer name (speex_ns, ...) or
``identity``. The set (K clips of each scenario, seeded) is built once and cached under
ROOT/eval_sets/. Prints a markdown table (rows scenario x {input, model}); the JSON holds the
per-scenario and overall means (``scenarios.<scenario>.input`` / ``.model``) and every clip's scores.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from pocketvqe.data import default_root
from pocketvqe.errors import PocketVQEError
from pocketvqe.evaluate import (
    DEFAULT_SEED,
    eval_set_dir,
    load_clips,
    load_processor,
    markdown_table,
    report,
    run_processors,
    write_outputs,
)
from pocketvqe.metrics import GROUPS

HELP = "score a model on the fixed evaluation set per scenario (PESQ, STOI, SI-SDR, DNSMOS, AECMOS, ERLE, ...)"


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared with `pocketvqe compare`."""
    parser.add_argument("--set", dest="split", default="test", choices=["test", "valid"],
                        help="corpus split the clips come from (default test)")
    parser.add_argument("--n-per-scenario", type=int, default=8, metavar="K", help="clips per scenario (default 8)")
    parser.add_argument("--data", metavar="ROOT", default=None,
                        help="corpus folder (default $POCKETVQE_DATA or ~/.cache/pocketvqe/corpus)")
    parser.add_argument("--seed", type=int, default=None, help="evaluation set seed (default: the standard set)")
    parser.add_argument("--scenarios", default=None, metavar="LIST",
                        help="comma list of scenarios to score (default all: noise, reverb, echo_fe_st, "
                             "echo_ne_st, double_talk, interferer)")
    parser.add_argument("--metrics", default=None, metavar="LIST",
                        help="comma list of metric groups (default all that apply: pesq, stoi, si_sdr, tsos, "
                             "dnsmos, pdnsmos, aecmos, erle, interferer); DNSMOS/AECMOS are the slow ones")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for our models (default 1, like the single-threaded peers)")
    parser.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    parser.add_argument("--md", metavar="PATH", help="write the markdown table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="M",
                        help="model file (.pt checkpoint), a peer name (e.g. speex_ns) or 'identity'")
    add_common(parser)


def split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def prepare(args: argparse.Namespace):
    """(clips, which, eval_set info) from the shared options."""


    if args.n_per_scenario < 1:
        raise PocketVQEError(f"--n-per-scenario {args.n_per_scenario}: give at least 1")
    if args.threads < 1:
        raise PocketVQEError(f"--threads {args.threads}: give at least 1")
    which = split_list(args.metrics)
    if which:
        unknown = [g for g in which if g not in GROUPS]
        if unknown:
            raise PocketVQEError(f"--metrics: unknown group(s) {unknown}: choose from {', '.join(GROUPS)}")
    for path in (args.json, args.md):
        if path and Path(path).is_dir():
            raise PocketVQEError(f"output {path} is a folder: give a file path")
    root = Path(args.data).expanduser() if args.data else default_root()
    seed = DEFAULT_SEED if args.seed is None else args.seed
    clips = load_clips(root, args.split, args.n_per_scenario, seed=seed, scenarios=split_list(args.scenarios),
                       progress=not args.no_progress)
    if not clips:
        raise PocketVQEError("no clips left after --scenarios: name at least one scenario of the set")
    info = {"corpus": str(root), "split": args.split, "n_per_scenario": args.n_per_scenario, "seed": seed,
            "dir": str(eval_set_dir(root, args.split, args.n_per_scenario, seed)), "n_clips": len(clips),
            "scenarios": sorted({c.scenario for c in clips}, key=[c.scenario for c in clips].index)}
    return clips, which, info


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


def run(args: argparse.Namespace) -> int:


    t0 = time.perf_counter()
    set_threads(args.threads)
    processor = load_processor(args.model, name="model")
    clips, which, info = prepare(args)
    ev = run_processors(clips, [processor], which=which, progress=not args.no_progress)
    rep = report(ev, "eval", info, extra={"model": str(args.model)})
    md = markdown_table(rep)
    print(f"model {args.model} on {info['n_clips']} clips of the {args.split} set ({info['dir']})\n")
    print(md)
    write_outputs(rep, args.json, args.md, md)
    for path in (args.json, args.md):
        if path:
            print(f"wrote {path}")
    print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
