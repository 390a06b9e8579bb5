"""`pocketvqe enhance`: run a model file (checkpoint, .pt2 or .pte) on a wav file."""
from __future__ import annotations

from pathlib import Path

from pocketvqe.audio import read_audio, write_audio
from pocketvqe.errors import PocketVQEError
from pocketvqe.inference import enhance_arrays, load_model

HELP = "enhance a recording with a checkpoint (.pt), quantized model (.pt2) or program (.pte)"


def add_arguments(p):
    p.add_argument("--model", required=True, help="model file: .pt checkpoint, .pt2 quantized model, .pte program")
    p.add_argument("--mic", required=True, help="microphone recording (any sample rate)")
    p.add_argument("--far", help="far-end (loudspeaker) signal, for echo cancellation")
    p.add_argument("--enroll", help="enrollment recording of the target speaker (personalized models)")
    p.add_argument("--channel", type=int, help="channel to use from a multi-channel mic file (0-based)")
    p.add_argument("--out", required=True, help="output wav, written at the mic's sample rate")


def run(args) -> int:


    if Path(args.out).resolve() in {Path(p).resolve() for p in (args.mic, args.far, args.enroll) if p}:
        raise PocketVQEError(f"--out {args.out} is one of the inputs: inputs are never overwritten, pick another path")
    mic, sr = read_audio(args.mic, channel=args.channel, what="mic")
    far = far_sr = enroll = enroll_sr = None
    if args.far:
        far, far_sr = read_audio(args.far, channel=args.channel, what="far-end")
    if args.enroll:
        enroll, enroll_sr = read_audio(args.enroll, channel=args.channel, what="enrollment")
    model = load_model(args.model)
    y = enhance_arrays(model, mic, sr, far=far, far_sr=far_sr, enroll=enroll, enroll_sr=enroll_sr)
    write_audio(args.out, y, sr)
    print(f"wrote {args.out} ({len(y) / sr:.2f} s at {sr} Hz, model {model.cfg.name})")
    return 0
