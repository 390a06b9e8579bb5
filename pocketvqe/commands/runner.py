"""`pocketvqe runner`: the native runner (C++, `native/`): build it for the host and aarch64, read its ETDumps.

    pocketvqe runner build [--arch host|aarch64|all] [--out DIR] [--force]   build (cached); --out copies the folder
    pocketvqe runner etdump D.etdp [--etrecord R] [--top N] [--json]          the slowest operators per frame

The runner itself: `RUNNER/pocketvqe-runner enhance PROGRAM.pte --mic M.wav --far F.wav --out Y.wav --json L.json`,
`... verify PROGRAM.bpte --rtol R --atol A`, `... info PROGRAM.pte` (aarch64 on x86: prefix
`qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu`). See docs/native.md.
"""
from __future__ import annotations

import argparse
import json

from pocketvqe.device_tests.etdump import format_operator_table, operator_table
from pocketvqe.device_tests.native import ARCHES, build_runner, copy_runner

HELP = "build the native runner (host, aarch64) and turn its ETDumps into per-operator tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("build", help="build pocketvqe-runner (cached by arch, executorch version and sources)")
    p.add_argument("--arch", choices=[*ARCHES, "all"], default="all", help="what to build for (default all)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="copy each runner folder to DIR/runner-<arch> (a self-contained folder: binary + lib/)")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="build cache (default $POCKETVQE_CACHE/runner or ~/.cache/pocketvqe/runner)")
    p.add_argument("--force", action="store_true", help="rebuild even if a cached build matches")
    p = sub.add_parser("etdump", help="per-operator timings of an ETDump (pocketvqe-runner enhance --etdump)")
    p.add_argument("etdump", help="the .etdp file")
    p.add_argument("--etrecord", default=None, help="the program's .etrecord (written beside it by export)")
    p.add_argument("--top", type=int, default=10, help="operators to list (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        for arch in (ARCHES if args.arch == "all" else (args.arch,)):
            folder = build_runner(arch, args.cache, force=args.force)
            if args.out:
                folder = copy_runner(folder, f"{args.out}/runner-{arch}")
            print(f"{arch}: {folder}/pocketvqe-runner")
        return 0
    if args.action == "etdump":
        table = operator_table(args.etdump, args.etrecord, top=args.top)
        print(json.dumps(table, indent=1) if args.json else format_operator_table(table))
        return 0
    raise AssertionError(args.action)
