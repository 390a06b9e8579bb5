"""`pocketvqe compare`: the evaluation clips through every available peer (and our models), side by side.

    pocketvqe compare [--set test] [--model M ...] [--peers all|none|name,...] [--delta-vs NAME]
                      [--json out.json] [--md out.md] [--n-per-scenario K] [--data ROOT] [--scenarios LIST]
                      [--metrics LIST] [--threads N]

Peers: deepfilternet3, rnnoise, webrtc_ns, speex_ns (noise suppressors: every clip) and speex_aec
(echo canceller: echo clips only). Every output is delay-aligned and scored with the same metrics
as `pocketvqe eval`; each system's real-time factor is measured in the same run.
"""
from __future__ import annotations

import argparse
import sys
import time

from pocketvqe.errors import PocketVQEError
from pocketvqe.evaluate import (
    PeerProcessor,
    check_reference,
    delta_table,
    deltas,
    load_processor,
    markdown_table,
    report,
    run_processors,
    write_outputs,
)
from pocketvqe.export import INT8_DELTA_TARGETS
from pocketvqe.peers import PEERS, available_peers

from .eval import add_common, prepare, set_threads, split_list

HELP = "run the evaluation clips through DeepFilterNet3, RNNoise, WebRTC NS, Speex NS/AEC (and models); one table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="M",
                        help="also score this model file (.pt); repeat for more")
    parser.add_argument("--peers", default="all", metavar="LIST",
                        help="'all' (every peer installed here; missing ones are listed), 'none', or a comma "
                             "list of deepfilternet3, rnnoise, webrtc_ns, speex_ns, speex_aec")
    parser.add_argument("--delta-vs", metavar="NAME", default=None,
                        help="also a table of every system's per-scenario judges minus NAME's (a --model's file stem, "
                             "e.g. the float checkpoint beside its int8 program), against the int8 delta targets")
    add_common(parser)


def select_peers(spec: str) -> tuple[list, dict[str, str]]:
    """(processors, skipped {name: reason}) for --peers."""

    spec = (spec or "all").strip()
    if spec == "none":
        return [], {}
    if spec == "all":
        status = available_peers()
        return ([PeerProcessor(s.name) for s in status if s.available],
                {s.name: s.reason for s in status if not s.available})
    names = split_list(spec) or []
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise PocketVQEError(f"--peers: unknown peer(s) {unknown}: choose from {', '.join(PEERS)}, all or none")
    return [PeerProcessor(n) for n in dict.fromkeys(names)], {}


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    set_threads(args.threads)
    models = [load_processor(m) for m in args.model]
    peers, skipped = select_peers(args.peers)
    processors = models + peers
    if not processors:
        raise PocketVQEError("nothing to compare: no peer is installed here (pip install '.[peers]') and no "
                             "--model was given")
    if args.delta_vs:
        check_reference(args.delta_vs, [p.name for p in processors])         # before any clip is run
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    clips, which, info = prepare(args)
    ev = run_processors(clips, processors, which=which, progress=not args.no_progress)
    ev.skipped = skipped
    rep = report(ev, "compare", info)
    md = markdown_table(rep)
    if args.delta_vs:
        d = deltas(rep, args.delta_vs)
        rep["deltas"] = {"reference": args.delta_vs, "targets": INT8_DELTA_TARGETS, "scenarios": d}
        md += "\n" + delta_table(d, args.delta_vs)
    print(f"{len(processors)} systems on {info['n_clips']} clips of the {args.split} set ({info['dir']})\n")
    print(md)
    write_outputs(rep, args.json, args.md, md)
    for path in (args.json, args.md):
        if path:
            print(f"wrote {path}")
    print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
