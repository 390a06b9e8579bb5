"""The `pocketvqe` console script: one subcommand per stage, each in `pocketvqe/commands/<name>.py`.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so `pocketvqe info` stays fast.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import os
import signal
import sys
import threading
import traceback

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
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print its traceback (or set POCKETVQE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv or [] if a != "--debug"), None)
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
    debug = args.debug or os.environ.get("POCKETVQE_DEBUG", "") not in ("", "0")
    previous = _raise_on_sigterm()
    try:
        return int(args._run(args) or 0)
    except PocketVQEError as exc:
        return _stop(args.command, f"error: {exc}", 1, debug)          # 2 is argparse's: a usage error
    except OSError as exc:        # the file system said no: name the path and what to do, not a traceback
        return _stop(args.command, f"error: {os_problem(exc)}", 1, debug)
    except KeyboardInterrupt:     # outputs are written atomically: an interrupted run leaves none behind
        return _stop(args.command, "interrupted: no partial file is left (outputs are written atomically)", 130, debug)
    except Terminated:
        return _stop(args.command, "terminated (SIGTERM): no partial file is left (outputs are written atomically)",
                     128 + signal.SIGTERM, debug)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM (``kill``, a job scheduler, a CI timeout) as an exception in the main thread: every ``with``
    block unwinds as on Ctrl-C, so an atomic output's temporary file is removed instead of left behind
    (the default action ends the process on the spot)."""


def _raise_on_sigterm():
    """Install the SIGTERM -> :class:`Terminated` handler; returns the previous handler (None when not on
    the main thread, where Python cannot install one)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()
    return signal.signal(signal.SIGTERM, handler)


def _stop(command: str, line: str, code: int, debug: bool) -> int:
    """One ``pocketvqe COMMAND: ...`` line on stderr (the traceback above it with ``debug``) -> exit code."""
    if debug:
        traceback.print_exc()
    print(f"pocketvqe {command}: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
