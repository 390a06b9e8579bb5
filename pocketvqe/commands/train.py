"""`pocketvqe train`: float training on simulated mixtures, resumable, single process or DDP.

    pocketvqe train --config dvqe-s16 --out runs/dvqe-s16 [--steps N] [--batch B] [--lr LR] ...
    pocketvqe train --out runs/dvqe-s16 --resume [PATH] [--steps N]     # continue (default PATH: OUT/last.pt)
    torchrun --nproc_per_node 2 -m pocketvqe.cli train --config dvqe-s16 --out runs/x   # DDP (gloo / NCCL)

--config takes a registered name or a JSON model config (e.g. another run's train_config.json).
--batch is the global batch, split over the torchrun processes. The run folder gets
train_config.json, log.jsonl (loss curve), step-XXXXXX.pt every --ckpt-every steps, last.pt and
summary.json. Ctrl-C finishes the current step, saves last.pt and exits; --resume continues exactly.
"""
from __future__ import annotations

from pathlib import Path

from pocketvqe.errors import PocketVQEError
from pocketvqe.models import ModelConfig, read_checkpoint
from pocketvqe.train import TrainConfig, train
from pocketvqe.train.config import SCENARIOS
from pocketvqe.train.loop import STATE_KEY, resolve_model_config

HELP = "train a float model (complex compressed MSE, AdamW; resumable; DDP under torchrun)"

# CLI flag -> TrainConfig field (value None = not given)
_FIELDS = {"steps": "steps", "batch": "batch", "lr": "lr", "lr_final": "lr_final", "warmup": "warmup",
           "weight_decay": "weight_decay", "grad_clip": "grad_clip", "clip_seconds": "clip_seconds",
           "enroll_seconds": "enroll_seconds", "scenarios": "scenarios", "data": "data", "init": "init",
           "ckpt_every": "ckpt_every", "valid_every": "valid_every", "valid_clips": "valid_clips",
           "seed": "seed", "device": "device", "workers": "workers", "threads": "threads",
           "loss_keep": "loss_keep_weight"}


def add_arguments(p):
    d = TrainConfig()
    p.add_argument("--config", help="registered model config (pocketvqe info --list) or a JSON model config file")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--resume", nargs="?", const="", metavar="PATH",
                   help="continue a run from a checkpoint of it (default: OUT/last.pt); "
                        "flags given now override the saved recipe")
    p.add_argument("--init", help="start a new run from another checkpoint's weights (matching shapes)")
    p.add_argument("--steps", type=int, help=f"total optimizer steps (default {d.steps})")
    p.add_argument("--batch", type=int, help=f"global batch, split over DDP processes (default {d.batch})")
    p.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default {d.lr:g})")
    p.add_argument("--lr-final", type=float,
                   help=f"final lr as a fraction of --lr, cosine decay (default {d.lr_final})")
    p.add_argument("--warmup", type=int, help=f"linear warmup steps (default {d.warmup})")
    p.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {d.weight_decay:g})")
    p.add_argument("--grad-clip", type=float, help=f"max gradient norm, 0 = off (default {d.grad_clip:g})")
    p.add_argument("--loss-keep", type=float,
                   help=f"weight of the speech-keeping loss term: the estimate's shortfall below the target's "
                        f"compressed magnitude (default {d.loss_keep_weight:g}, off)")
    p.add_argument("--clip-seconds", type=float, help=f"training clip length (default {d.clip_seconds:g})")
    p.add_argument("--enroll-seconds", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help=f"enrollment length range, personalized models (default {d.enroll_seconds[0]:g} "
                        f"{d.enroll_seconds[1]:g})")
    p.add_argument("--scenarios", help=f"comma list of {','.join(SCENARIOS)} "
                                       "(default: every scenario the model serves)")
    p.add_argument("--data", help="corpus folder (default $POCKETVQE_DATA or ~/.cache/pocketvqe/corpus)")
    p.add_argument("--ckpt-every", type=int, help=f"steps between checkpoints, 0 = end only (default {d.ckpt_every})")
    p.add_argument("--valid-every", type=int, help=f"steps between validation passes (default {d.valid_every})")
    p.add_argument("--valid-clips", type=int, help=f"clips in the fixed validation set (default {d.valid_clips})")
    p.add_argument("--seed", type=int, help=f"seed of the initial weights and the data (default {d.seed})")
    p.add_argument("--device", help="cpu or cuda (under torchrun each process takes cuda:LOCAL_RANK); default cpu")
    p.add_argument("--workers", type=int, help="data loader processes per rank (default: 0 on CPU, 4 per GPU process)")
    p.add_argument("--threads", type=int, help="torch CPU threads per process (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _given(args) -> dict:
    out = {}
    for flag, field in _FIELDS.items():
        v = getattr(args, flag)
        if v is None:
            continue
        if field == "scenarios":
            v = tuple(s.strip() for s in v.split(",") if s.strip())
        elif field == "enroll_seconds":
            v = tuple(v)
        out[field] = v
    return out


def resolve(args):
    """-> (TrainConfig, ModelConfig, resume path or None) from the command line (and the checkpoint)."""


    given = _given(args)
    if args.resume is not None:
        path = Path(args.resume) if args.resume else Path(args.out) / "last.pt"
        if args.init:
            raise PocketVQEError("--init starts a new run from weights; --resume continues a run: give one of them")
        ckpt = read_checkpoint(path)
        if STATE_KEY not in ckpt:
            raise PocketVQEError(f"{path} holds weights only (no optimizer state): start a new run from it with "
                                 "--init, or resume from a step-*.pt / last.pt of a run")
        base = TrainConfig.from_dict(ckpt[STATE_KEY]["train_config"])
        model_cfg = ModelConfig.from_dict(ckpt["config"])
        if args.config and resolve_model_config(args.config) != model_cfg:
            raise PocketVQEError(f"--config {args.config} differs from the checkpoint's model {model_cfg.name!r}: "
                                 "drop --config when resuming")
        changed = {k: v for k, v in given.items() if getattr(base, k) != v}
        if changed:
            print("resume: overriding " + ", ".join(f"{k}={getattr(base, k)!r}->{v!r}" for k, v in changed.items()))
        return base.replace(**changed), model_cfg, path
    if not args.config:
        raise PocketVQEError("give --config NAME (or a JSON model config) for a new run, or --resume to continue one")
    model_cfg = resolve_model_config(args.config)
    return TrainConfig(model=args.config, **given), model_cfg, None


def run(args) -> int:

    cfg, model_cfg, resume = resolve(args)
    summary = train(cfg, model_cfg, args.out, resume=resume, progress=not args.no_progress)
    return 130 if summary.get("stopped_early") else 0
