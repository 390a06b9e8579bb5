"""`pocketvqe device`: set up and inspect the targets a .pte runs on (host, qemu-arm64, adb, ssh).

    pocketvqe device setup qemu-arm64 [--cache DIR] [--force]   build the aarch64 native runner (once; cached)
    pocketvqe device list [--json]                               what is available / configured here
    pocketvqe device describe TARGET [--json]                    arch, OS, runtime version, emulated or not
"""
from __future__ import annotations

import argparse
import json

from pocketvqe.device_tests.native import build_runner
from pocketvqe.device_tests.targets import get_target, list_targets

HELP = "set up and inspect device targets: host, qemu-arm64, adb[:SERIAL], ssh:HOST"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("setup", help="build what a target needs (its native runner); idempotent",
                       description="Build the native runner a target runs: host-native the host build, qemu-arm64 "
                       "the aarch64 build (cross-compiled against the executorch aarch64 wheel's runtime, fetched "
                       "once). Cached; later calls find it ready and return at once.")
    p.add_argument("target", choices=["host-native", "qemu-arm64"], help="the target to set up")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="cache folder (default $POCKETVQE_CACHE/runner or ~/.cache/pocketvqe/runner)")
    p.add_argument("--force", action="store_true", help="rebuild even if the runner is built")

    p = sub.add_parser("list", help="list the targets available or configured on this machine")
    p.add_argument("--cache", metavar="DIR", default=None, help="qemu-arm64 cache folder to look in")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("describe", help="what a target is: arch, OS, runtime version, emulated or not")
    p.add_argument("target", help="host | host-native | qemu-arm64 | adb | adb:SERIAL | ssh:HOST")
    p.add_argument("--cache", metavar="DIR", default=None, help="qemu-arm64 cache folder")
    p.add_argument("--runner", metavar="PATH", default=None,
                   help="adb: the executor_runner binary built with the Android NDK (or POCKETVQE_ADB_RUNNER)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _print_kv(d: dict) -> None:
    width = max((len(k) for k in d), default=0)
    for k, v in d.items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v)) if v else "-"
        print(f"{k:<{width}}  {'-' if v is None else v}")


def run(args: argparse.Namespace) -> int:
    if args.action == "setup":
        folder = build_runner("aarch64" if args.target == "qemu-arm64" else "host", args.cache, force=args.force)
        print(f"{args.target}: {folder}/pocketvqe-runner")
        return 0

    if args.action == "list":
        rows = list_targets(cache_dir=args.cache)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        width = max(len(r["target"]) for r in rows)
        for r in rows:
            mark = {True: "yes", False: "no", None: "?"}[r["available"]]
            print(f"{r['target']:<{width}}  {mark:<3}  {r['detail']}")
        return 0

    if args.action == "describe":
        opts = {"cache_dir": args.cache, "runner": args.runner}
        info = get_target(args.target, **opts).describe()
        if args.json:
            print(json.dumps(info, indent=1, default=str))
        else:
            _print_kv(info)
        return 0
    raise AssertionError(args.action)
