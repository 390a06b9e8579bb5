"""`pocketvqe data`: build the offline corpus, show it, write a fixed evaluation set.

    pocketvqe data prepare [--root DIR] [--quick] [--sources asterisk,tts,noise,rooms]
                           [--speech DIR ...] [--noise DIR ...] [--rir DIR ...] [--farend DIR ...]
    pocketvqe data info [--root DIR]
    pocketvqe data eval-set --out DIR [--root DIR] [--split test] [--n 8] [--seed N] [--personalized]
"""
from __future__ import annotations

import argparse

from ..data import SimConfig, default_root, load_manifest, make_eval_set, prepare_corpus

HELP = "build the offline training corpus (prepare), show it (info), write a fixed evaluation set (eval-set)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    root_help = "corpus folder (default $POCKETVQE_DATA or ~/.cache/pocketvqe/corpus)"

    p = sub.add_parser("prepare", help="download, decode and generate the corpus (cached: re-running is a no-op)")
    p.add_argument("--root", help=root_help)
    p.add_argument("--sources", help="comma list of sources or groups (all, quick, asterisk, tts, noise, none, "
                                     "asterisk-en, pocketsphinx, piper, flite, festival, espeak-ng, sonic-pi, alsa, "
                                     "rooms, synthetic); default all, or only rooms+synthetic with own folders")
    p.add_argument("--quick", action="store_true",
                   help="a small corpus for tests/CI (asterisk-en, espeak-ng, rooms, synthetic)")
    for kind, what in (("speech", "clean speech (LibriSpeech, DNS clean, VCTK)"), ("noise", "noise"),
                       ("rir", "room impulse responses"), ("farend", "far-end speech (AEC Challenge)")):
        p.add_argument(f"--{kind}", action="append", default=[], metavar="DIR",
                       help=f"folder of your own {what}; repeat for more")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("info", help="files, hours and speakers per kind and split")
    p.add_argument("--root", help=root_help)

    p = sub.add_parser("eval-set", help="write a seeded evaluation set (wavs + eval_set.json)")
    p.add_argument("--root", help=root_help)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--n", type=int, default=8, help="clips per scenario (default 8)")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--clip-seconds", type=float, default=6.0)
    p.add_argument("--personalized", action="store_true", help="include the interferer scenario")
    p.add_argument("--no-echo", action="store_true", help="noise/reverb scenarios only (no far-end)")


def run(args: argparse.Namespace) -> int:

    root = args.root or default_root()
    if args.data_command == "prepare":
        path = prepare_corpus(root, sources=args.sources, speech_dirs=args.speech, noise_dirs=args.noise,
                              rir_dirs=args.rir, farend_dirs=args.farend, progress=not args.no_progress,
                              quick=args.quick)
        print(load_manifest(path).summary())
        print(f"manifest: {path}")
    elif args.data_command == "info":
        print(load_manifest(root).summary())
    else:
        echo = {} if not args.no_echo else {"p_echo_fe_st": 0.0, "p_echo_ne_st": 0.0, "p_double_talk": 0.0}
        cfg = SimConfig(clip_seconds=args.clip_seconds, personalized=args.personalized, **echo)
        clips = make_eval_set(root, split=args.split, n_per_scenario=args.n, seed=args.seed, config=cfg,
                              out_dir=args.out)
        print(f"{len(clips)} clips ({', '.join(sorted({c.scenario for c in clips}))}) in {args.out}")
    return 0
