"""`pocketvqe export`: checkpoint -> DIR/<model>-<quant>.pte, .bpte, .etrecord and manifest.json.

>>> pocketvqe export --ckpt x.pt --quant ptq --calib-clips 16 --out build/      # doctest: +SKIP
"""
from __future__ import annotations

HELP = "export a checkpoint as an ExecuTorch program (.pte + bundled self-check .bpte + manifest)"


def add_arguments(p):
    p.add_argument("--ckpt", required=True, help="float checkpoint (.pt)")
    p.add_argument("--quant", default="none",
                   help="none (fp32), ptq (int8, calibrated on simulated clips), qat, or PATH.pt2 (a quantized model)")
    p.add_argument("--calib-clips", type=int, default=16, help="simulated calibration clips for --quant ptq")
    p.add_argument("--calib-seconds", type=float, default=4.0, help="length of each calibration clip")
    p.add_argument("--bundle-frames", type=int, default=8, help="real frames in the bundled self-check (.bpte)")
    p.add_argument("--clip", help="a real recording (wav, any rate) for the self-check instead of a simulated clip; "
                   "personalized models enroll on its first 3 s")
    p.add_argument("--data", help="corpus root (default: $POCKETVQE_DATA, else a quick corpus in the cache)")
    p.add_argument("--no-etrecord", action="store_true", help="skip the ETRecord (devtools) file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")


def _say(i: int, n: int, msg: str) -> None:
    import sys
    print(f"[{i}/{n}] {msg}", file=sys.stderr, flush=True)


def _self_check_clip(enh, path, data, seed):
    """Step signals and enrollment audio (None unless personalized) of the self-check clip: the
    recording at ``path`` (far end silent, enrollment on its first 3 s) or a simulated test clip."""
    from pocketvqe.export.bundle import clip_frames, real_clip
    cfg = enh.cfg
    if path:
        from pocketvqe.audio import read_audio, resample
        x, sr = read_audio(path, what="self-check clip")
        x = resample(x, sr, cfg.sample_rate)
        mic, far, enroll = x, (0 * x if cfg.has_far else None), x[:3 * cfg.sample_rate]
    else:
        m = real_clip(enh, data=data, seed=seed)
        mic, far, enroll = m.mic, (m.far if cfg.has_far else None), m.enroll
    enroll = enroll if cfg.personalized else None
    return clip_frames(enh, mic, far, enroll), enroll


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    import torch

    from pocketvqe.errors import PocketVQEError
    from pocketvqe.export.bundle import (bundle_tolerances, enroll_checks, make_bundle, program_fidelity,
                                         verify_bundle)
    from pocketvqe.export.program import (export_program, resolve_quant, write_etrecord, write_manifest,
                                          write_program)
    from pocketvqe.fileio import atomic_write_bytes
    from pocketvqe.models import load_checkpoint

    if args.calib_clips < 1 or args.bundle_frames < 1:
        raise PocketVQEError("--calib-clips and --bundle-frames must be >= 1")
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    n = 5
    t0 = time.perf_counter()
    mode, pt2 = resolve_quant(args.quant)
    _say(1, n, f"loading {args.ckpt}")
    enh, _ = load_checkpoint(args.ckpt)
    ptq_config = None
    if mode == "ptq":
        from pocketvqe.export.program import _quant_api
        api = _quant_api()
        if api is not None:
            ptq_config = api["PTQConfig"](calib_clips=args.calib_clips, calib_seconds=args.calib_seconds,
                                          seed=args.seed)
    _say(2, n, "real clip for the self-check" + (f"; calibration: {args.calib_clips} simulated clips"
                                                   if mode == "ptq" else ""))
    frames, enroll_pcm = _self_check_clip(enh, args.clip, args.data, args.seed + 1)
    calibration = None
    if mode == "ptq" and ptq_config is None:            # no quant package: calibrate on simulated clips here
        calibration = [f for k in range(args.calib_clips)
                       for f in real_clip_frames(enh, data=args.data, seed=args.seed, split="valid", index=k,
                                                 seconds=args.calib_seconds)]
    _say(3, n, f"export {enh.cfg.name} ({mode}) through XNNPACK")
    prog = export_program(enh, args.quant, calibration, ptq_config=ptq_config, etrecord=not args.no_etrecord,
                          progress=True)
    _say(4, n, f"self-check: bundling {args.bundle_frames} frames, verifying with the runtime; SNR on the clip")
    bpte = make_bundle(prog, frames, k=args.bundle_frames)
    fidelity = program_fidelity(prog, frames)
    checks = {"bundle": verify_bundle(bpte, bundle_tolerances(prog, bpte)),
              "snr_db_vs_reference": round(fidelity["snr_db_vs_reference"], 2),
              "snr_db_required": prog.tolerances["snr_db"],
              "snr_db_floor": round(fidelity["snr_db_floor"], 2)}
    checks["pass"] = checks["snr_db_vs_reference"] >= checks["snr_db_required"]
    if prog.enroll is not None and enroll_pcm is not None:      # the device's own enrollment vs the checkpoint's
        checks.update(enroll_checks(prog, enroll_pcm))
        checks["pass"] &= checks["enroll_cosine_vs_checkpoint"] >= checks["enroll_cosine_required"]
    prog.extra["checks"] = checks
    _say(5, n, f"writing {args.out}")
    out = Path(args.out)
    files = [write_program(prog, out)]
    atomic_write_bytes(out / f"{prog.name}.bpte", bpte)
    files.append(out / f"{prog.name}.bpte")
    if not args.no_etrecord:
        files.append(write_etrecord(prog, out / f"{prog.name}.etrecord"))
    manifest = write_manifest(out, [prog], files, extra={"checkpoint": str(args.ckpt),
                                                          "quant_source": str(pt2) if pt2 else None},
                              merge=True)
    summary = {"program": str(files[0]), "bytes": {f.name: f.stat().st_size for f in files},
               "delegated_share": prog.delegation["delegated_share"],
               "undelegated_compute_ops": prog.delegation["undelegated_compute_ops"],
               "checks": checks, "export_seconds": round(prog.export_seconds, 1),
               "wall_seconds": round(time.perf_counter() - t0, 1), "manifest": str(manifest)}
    print(json.dumps(summary, indent=2, default=float))
    if not checks["pass"]:
        import sys
        if checks["snr_db_vs_reference"] < checks["snr_db_required"]:
            print(f"{prog.name}: SNR vs its reference {checks['snr_db_vs_reference']:.1f} dB is below the "
                  f"{checks['snr_db_required']} dB this variant must meet (manifest: checks.pass = false); the "
                  f"program matches itself under +-1 LSB input dither to {checks['snr_db_floor']:.1f} dB (its "
                  "sensitivity floor)", file=sys.stderr)
        if checks.get("enroll_cosine_vs_checkpoint", 1.0) < checks.get("enroll_cosine_required", 0.0):
            print(f"{prog.name}: the program's own enrollment gives a speaker embedding with cosine "
                  f"{checks['enroll_cosine_vs_checkpoint']:.4f} to the checkpoint's, below the required "
                  f"{checks['enroll_cosine_required']} (manifest: checks.pass = false); calibrate on more or longer "
                  "clips (--calib-clips, --calib-seconds)", file=sys.stderr)
        return 1
    return 0
