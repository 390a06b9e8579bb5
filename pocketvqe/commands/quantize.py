"""`pocketvqe quantize`: float checkpoint -> int8 step (.pt2) by PTQ or QAT.

    pocketvqe quantize --ckpt X.pt --mode ptq [--observer minmax|moving_average|histogram|percentile]
                       [--keep-float net.dec.3,...] [--dynamic net.dec.3,...] [--calib-clips 16] [--calib-seconds 4] --out q.pt2
    pocketvqe quantize --ckpt X.pt --mode qat [--steps 200] [--lr 1e-4] [--batch 8] ... --out q.pt2
    torchrun --nproc_per_node 2 -m pocketvqe.cli quantize --ckpt X.pt --mode qat ... --out q.pt2   # DDP

Writes q.pt2 (the int8 step ExportedProgram with its config, quant config, calibration summary and
versions; see ``pocketvqe.quant.artifact``), q.json beside it (the same description) and, for
QAT, q.loss.json (the loss curve). `pocketvqe enhance --model q.pt2` runs it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_write_text
from pocketvqe.models import load_checkpoint
from pocketvqe.quant import (
    RECIPES,
    PTQConfig,
    QATConfig,
    calibration_frames,
    convert,
    fine_tune,
    prepare_qat,
    quantize,
    quantized_linears,
    recommended_ptq,
    save_quantized,
)
from pocketvqe.quant.config import OBSERVERS

HELP = "quantize a checkpoint to an int8 step program (.pt2) by PTQ or QAT"


def add_arguments(p):
    d, q = PTQConfig(), QATConfig()
    p.add_argument("--ckpt", required=True, help="float checkpoint (.pt)")
    p.add_argument("--config", help="expected model config name: refuse a checkpoint of another config")
    p.add_argument("--mode", choices=["ptq", "qat"], default="ptq", help="post-training (default) or QAT")
    p.add_argument("--out", required=True, help="output .pt2")
    p.add_argument("--keep-float", default="", help="comma list of module names kept fp32 (see quant-report)")
    p.add_argument("--dynamic", default="", help="PTQ: comma list of module names whose convs/linears keep int8 "
                                                 "weights but quantize activations per frame (e.g. net.dec.3)")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default per-channel)")
    p.add_argument("--int8-dsp", action="store_true",
                   help="quantize the STFT/compression/CCM too (default: they stay fp32)")
    p.add_argument("--data", help="corpus folder (default $POCKETVQE_DATA, ~/.cache/pocketvqe/corpus or the quick one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration / training clips")
    g = p.add_argument_group("PTQ")
    g.add_argument("--observer", choices=OBSERVERS, default=d.observer, help=f"activation observer (default {d.observer})")
    g.add_argument("--percentile", type=float, default=d.percentile,
                   help=f"with --observer percentile (and QAT's range init): percentile of the per-frame extremes (default {d.percentile:g})")
    g.add_argument("--calib-clips", type=int, default=d.calib_clips, help=f"calibration clips (default {d.calib_clips})")
    g.add_argument("--calib-seconds", type=float, default=d.calib_seconds,
                   help=f"seconds per calibration clip (default {d.calib_seconds:g})")
    g = p.add_argument_group("QAT")
    g.add_argument("--steps", type=int, default=q.steps, help=f"optimizer steps (default {q.steps})")
    g.add_argument("--lr", type=float, default=q.lr, help=f"AdamW learning rate (default {q.lr:g})")
    g.add_argument("--batch", type=int, default=q.batch, help=f"global batch (default {q.batch})")
    g.add_argument("--clip-seconds", type=float, default=q.clip_seconds, help=f"clip length (default {q.clip_seconds:g})")
    g.add_argument("--freeze-observers-after", type=int, default=q.freeze_observers_after,
                   help="step after which quantization ranges stop moving (-1 = never)")
    g.add_argument("--freeze-bn-after", type=int, default=q.freeze_bn_after,
                   help=f"step after which BatchNorm uses running statistics (default {q.freeze_bn_after})")
    g.add_argument("--init-batches", type=int, default=q.init_batches,
                   help=f"batches whose per-frame extremes set the activation ranges before step 1 "
                        f"(percentile --percentile; 0 = moving-average ranges from scratch; default {q.init_batches})")
    g.add_argument("--fixed-ranges", action="store_true",
                   help="keep the initialized activation ranges fixed (default: moving averages carry on from them)")
    g.add_argument("--distill", type=float, default=q.distill,
                   help=f"weight of the float model's output as the target, 0-1 (default {q.distill:g}; "
                        "1: learn to sound like the float model; 0: the clean speech, as in training)")
    g.add_argument("--scenarios", help="comma list of simulator scenarios (default: every one the model serves)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def run(args) -> int:



    out = Path(args.out)
    if out.suffix != ".pt2":
        raise PocketVQEError(f"--out {out}: quantized models are .pt2 files (e.g. {out.with_suffix('.pt2')})")
    if out.resolve() == Path(args.ckpt).resolve():
        raise PocketVQEError("--out is the input checkpoint: inputs are never overwritten, pick another path")
    if args.mode == "qat" and _names(args.dynamic):
        raise PocketVQEError("--dynamic is a PTQ choice (QAT trains static int8 ranges): drop it, or use --mode ptq")
    enh, ckpt = load_checkpoint(args.ckpt, expect=args.config)
    progress = not args.no_progress
    t0 = time.perf_counter()
    history = None
    if args.mode == "ptq":
        cfg = PTQConfig(observer=args.observer, per_channel=not args.per_tensor, calib_clips=args.calib_clips,
                        calib_seconds=args.calib_seconds, keep_float=_names(args.keep_float),
                        float_dsp=not args.int8_dsp, seed=args.seed, percentile=args.percentile,
                        dynamic=_names(args.dynamic))
        calib = calibration_frames(enh, cfg.calib_clips, cfg.calib_seconds, cfg.seed, data=args.data,
                                   progress=progress)
        gm = quantize(enh, cfg, calib, progress=progress)
        main = True
    else:
        cfg = QATConfig(steps=args.steps, lr=args.lr, batch=args.batch, clip_seconds=args.clip_seconds,
                        freeze_observers_after=args.freeze_observers_after, freeze_bn_after=args.freeze_bn_after,
                        scenarios=_names(args.scenarios), keep_float=_names(args.keep_float),
                        per_channel=not args.per_tensor, float_dsp=not args.int8_dsp, data=args.data, seed=args.seed,
                        init_batches=args.init_batches, percentile=args.percentile,
                        fixed_ranges=args.fixed_ranges, distill=args.distill)
        qm = prepare_qat(enh, cfg)
        history = fine_tune(qm, progress=progress)
        main = qm.env.is_main
        gm = convert(qm) if main else None
    if not main:
        return 0
    info = gm.meta.get("pocketvqe_quant", {})
    lin = quantized_linears(gm)
    meta = {"quant": {"mode": args.mode, "config": cfg.to_dict(), "keep_float": info.get("keep_float", []),
                      "dynamic": info.get("dynamic", [])},
            "calibration": info.get("calibration"), "source_checkpoint": str(args.ckpt),
            "source_meta": ckpt.get("meta"), "quantized_linears": sum(lin.values()),
            "seconds": round(time.perf_counter() - t0, 1)}
    if history is not None:
        meta["qat"] = {"steps": len(history), "loss_first": history[0]["loss"] if history else None,
                       "loss_last": history[-1]["loss"] if history else None}
    save_quantized(out, gm, meta, enhancer=enh)
    atomic_write_text(out.with_suffix(".json"), json.dumps({**meta, "config": enh.cfg.to_dict()}, indent=2,
                                                           default=str) + "\n")
    if history is not None:
        atomic_write_text(out.with_suffix(".loss.json"), json.dumps(history, indent=1) + "\n")
    if args.mode == "ptq":
        _recipe_note(enh.cfg.name, cfg)
    cal = meta["calibration"] or {}
    print(f"wrote {out} ({enh.cfg.name}, {args.mode}, {out.stat().st_size / 1e6:.1f} MB) in {meta['seconds']:.0f} s: "
          f"{meta['quantized_linears']} int8 linears, calibration {cal.get('clips')} clips / "
          f"{cal.get('frames', '-')} frames ({cal.get('observer')}), scenarios {cal.get('scenarios')}"
          + (f", keep_float {', '.join(meta['quant']['keep_float'])}" if meta["quant"]["keep_float"] else "")
          + (f", dynamic {', '.join(meta['quant']['dynamic'])}" if meta["quant"]["dynamic"] else "")
          + (f"; QAT loss ({_target(cfg.distill)}) {meta['qat']['loss_first']:.4f} -> {meta['qat']['loss_last']:.4f} "
             f"(curve: {out.with_suffix('.loss.json')})" if history else ""), file=sys.stdout)
    return 0


def _recipe_note(config_name: str, cfg) -> None:
    """Say so on stderr when a PTQ run departs from the recipe measured for its config."""

    if config_name not in RECIPES:
        return
    rec = recommended_ptq(config_name)
    if (cfg.observer, cfg.keep_float, cfg.dynamic) != (rec.observer, rec.keep_float, rec.dynamic):
        flags = " ".join([f"--observer {rec.observer}"]
                         + ([f"--keep-float {','.join(rec.keep_float)}"] if rec.keep_float else [])
                         + ([f"--dynamic {','.join(rec.dynamic)}"] if rec.dynamic else [])
                         + ([] if rec.keep_float or rec.dynamic else ["(all static int8)"]))
        print(f"note: the PTQ recipe measured to keep {config_name}'s sound is {flags} (quant.RECIPES; "
              "`pocketvqe build` uses it)", file=sys.stderr)


def _target(distill: float) -> str:
    """What the QAT loss measured against (QATConfig.distill)."""
    if distill >= 1.0:
        return "vs the float model's output"
    return "vs clean speech" if distill <= 0.0 else f"{distill:g} x float model + {1 - distill:g} x clean speech"
