"""`pocketvqe enhance`: run a model file (checkpoint, .pt2 or .pte) on a wav file."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pocketvqe.audio import audio_info, read_audio, write_audio
from pocketvqe.errors import PocketVQEError
from pocketvqe.inference import check_inputs, enhance_arrays, enhance_file, load_model, speaker_of

PROGRESS_SECONDS = 5.0          # a progress bar on files longer than this
HELP = "enhance a recording with a checkpoint (.pt), quantized model (.pt2) or program (.pte)"


def add_arguments(p):
    p.add_argument("--model", required=True, help="model file: .pt checkpoint, .pt2 quantized model, .pte program")
    p.add_argument("--mic", required=True, help="microphone recording (any sample rate)")
    p.add_argument("--far", help="far-end (loudspeaker) signal, for echo cancellation")
    p.add_argument("--enroll", help="enrollment recording of the target speaker (personalized models)")
    p.add_argument("--channel", type=int, help="channel to use from a multi-channel mic file (0-based)")
    p.add_argument("--out", required=True, help="output wav, written at the mic's sample rate")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads (default 1: a 10 ms step is many tiny ops, more threads only wait)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    if Path(args.out).resolve() in {Path(p).resolve() for p in (args.mic, args.far, args.enroll) if p}:
        raise PocketVQEError(f"--out {args.out} is one of the inputs: inputs are never overwritten, pick another path")
    if args.threads < 1:
        raise PocketVQEError(f"--threads {args.threads}: give 1 or more")
    mic_info, _ = audio_info(args.mic, channel=args.channel, what="mic")
    far_info = audio_info(args.far, channel=args.channel, what="far-end")[0] if args.far else None
    enroll = enroll_sr = None
    if args.enroll:
        enroll, enroll_sr = read_audio(args.enroll, channel=args.channel, what="enrollment")
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    cfg, sr = model.cfg, int(mic_info.samplerate)
    seconds = mic_info.frames / sr
    hops = int(np.ceil((seconds * cfg.sample_rate + cfg.algorithmic_latency_samples) / cfg.hop))
    with tqdm(total=hops, unit="hop", desc=f"enhance {Path(args.mic).name}", file=sys.stderr,
              disable=args.no_progress or seconds < PROGRESS_SECONDS, leave=False) as bar:
        if sr == cfg.sample_rate and (far_info is None or far_info.samplerate == sr):
            # the model's rate: streamed block by block from the file to the output, memory flat in its length
            check_inputs(cfg, args.far is not None, enroll is not None)
            speaker = speaker_of(model, enroll, enroll_sr) if enroll is not None else None
            n = enhance_file(model, args.mic, args.out, far_path=args.far, speaker=speaker, channel=args.channel,
                             progress=bar.update)
        else:                   # another rate: resampled whole, in memory
            mic, _ = read_audio(args.mic, channel=args.channel, what="mic")
            far, far_sr = read_audio(args.far, channel=args.channel, what="far-end") if args.far else (None, None)
            y = enhance_arrays(model, mic, sr, far=far, far_sr=far_sr, enroll=enroll, enroll_sr=enroll_sr,
                               progress=bar.update)
            write_audio(args.out, y, sr)
            n = len(y)
    print(f"wrote {args.out} ({n / sr:.2f} s at {sr} Hz, model {cfg.name})")
    return 0
