"""The `pocketvqe` console script: one subcommand per stage, each in `pocketvqe/commands/<name>.py`.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so `pocketvqe info` stays fast.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import sys

from . import __version__
from .errors import PocketVQEError

COMMANDS: dict[str, str] = {
    "info": "pocketvqe.commands.info",
    "init": "pocketvqe.commands.init",
    "enhance": "pocketvqe.commands.enhance",
    "data": "pocketvqe.commands.data",
    "train": "pocketvqe.commands.train",
    "eval": "pocketvqe.commands.eval",
    "compare": "pocketvqe.commands.compare",
    "quantize": "pocketvqe.commands.quantize",
    "quant-report": "pocketvqe.commands.quant_report",
    "export": "pocketvqe.commands.export",
    "device": "pocketvqe.commands.device",
    "runner": "pocketvqe.commands.runner",
    "parity": "pocketvqe.commands.parity",
    "bench": "pocketvqe.commands.bench",
    "build": "pocketvqe.commands.build",
}


def _available() -> dict[str, str]:
    return {name: mod for name, mod in COMMANDS.items() if importlib.util.find_spec(mod) is not None}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pocketvqe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pocketvqe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = (argv or [None])[0]
    for name, modname in _available().items():
        if wanted in (None, name) or wanted.startswith("-"):
            mod = importlib.import_module(modname)
            p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
        else:  # keep the listing in --help without importing every module
            sub.add_parser(name, help="")
    return parser


def os_problem(exc: OSError) -> str:
    """A file system error as one sentence that names the path and the fix."""
    where = f" {exc.filename}" if exc.filename else ""
    fix = {errno.EACCES: "choose a folder you can write to (--out) or fix its permissions",
           errno.EROFS: "the file system is read-only: choose another output folder (--out)",
           errno.ENOSPC: "the disk is full: free space or choose another output folder",
           errno.EEXIST: "a file is in the way: give a folder path that does not exist as a file",
           errno.ENOTDIR: "a file is in the way: give a folder path that does not exist as a file",
           errno.EISDIR: "that is a folder: give a file path",
           errno.ENOENT: "check the path"}.get(exc.errno, "check the path and its permissions")
    return f"cannot use{where}: {exc.strerror or exc}; {fix}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except PocketVQEError as exc:
        print(f"pocketvqe {args.command}: error: {exc}", file=sys.stderr)
        return 1                  # 2 is argparse's: a usage error
    except OSError as exc:        # the file system said no: name the path and what to do, not a traceback
        print(f"pocketvqe {args.command}: error: {os_problem(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
