"""Device programs: StreamStep (+ enrollment methods) -> fp32 / int8 PTQ / int8 from a .pt2 -> XNNPACK -> .pte.

A program holds the methods ``forward`` (the step, :mod:`export.step`), for personalized configs with
the internal embedding ``enroll_step`` / ``enroll_finish`` (:mod:`export.enroll`; int8 in int8 programs,
sharing ``forward``'s int8 weights), and
constant methods with its description (:func:`metadata`; read back by :mod:`export.runner`).

Quant modes (``quant=``): ``fp32`` (alias ``none``); ``ptq`` (alias ``int8``): int8 post-training
quantization calibrated on ``calibration`` frames or, without them, on simulated clips
(``ptq_config``); ``qat`` with ``quantized=PATH.pt2`` or the path itself: a model already quantized
(``pocketvqe quantize`` / QAT), whose mode the file names.

>>> prog = export_program(enhancer, quant="ptq", calibration=frames)   # frames: [(mic[hop], far[hop]), ...]
>>> paths = write_program(prog, "build/")                             # build/dvqe-s16-ptq.pte
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from pocketvqe import __version__
from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_write_text
from pocketvqe.models import Enhancer, ModelConfig
from pocketvqe.models.checkpoint import versions

from .enroll import EnrollFinish, EnrollStep, quantize_enroll, supports_device_enrollment
from .lower import export_model, lower, rewrite_for_delegation, quantize_pt2e_static, save, to_executorch, undelegated_compute_ops
from .step import StreamStep

FORMAT = "pocketvqe-pte-1"           # bump when the program's inputs, outputs or metadata change meaning
QUANT_MODES = ("fp32", "ptq", "qat")
QUANT_ALIASES = {"fp32": "fp32", "none": "fp32", "ptq": "ptq", "int8": "ptq", "qat": "qat"}
# What each variant must meet. snr_db: the program's enhanced waveform vs its PyTorch reference
# (float step / converted int8 GraphModule) over a real clip; bundle_rtol/atol: per frame, every output
# (enhanced hop and state) of the bundled self-check, each frame fed the reference's own state.
TOLERANCES = {
    "fp32": {"reference": "float eager step", "snr_db": 70.0, "bundle_rtol": 1e-3, "bundle_atol": 1e-4},
    "ptq": {"reference": "converted int8 GraphModule", "snr_db": 35.0, "bundle_rtol": 0.05, "bundle_atol": 0.25},
    "qat": {"reference": "converted int8 GraphModule", "snr_db": 35.0, "bundle_rtol": 0.05, "bundle_atol": 0.25},
}
# Enrollment: the program's embedding vs the float checkpoint's (Enhancer.enroll), and the bundle's
# per-case tolerances of enroll_step / enroll_finish against their reference (fp32 or int8 EnrollStep).
ENROLL_TOLERANCES = {
    "fp32": {"cosine_vs_checkpoint": 0.999, "bundle_rtol": 1e-3, "bundle_atol": 1e-4},
    "int8": {"cosine_vs_checkpoint": 0.99, "bundle_rtol": 0.05, "bundle_atol": 0.25},
}


@dataclass
class Program:
    name: str                      # <model>-<quant>, e.g. dvqe-s16-ptq
    quant: str                     # fp32 | ptq | qat
    buffer: bytes                  # the .pte
    step: StreamStep               # the float step (its state names/shapes are the program's)
    reference: torch.nn.Module     # what the program must equal: eager step (fp32) or int8 GraphModule
    metadata: dict
    delegation: dict
    export_seconds: float
    extra: dict = field(default_factory=dict)
    et_program: object = None      # ExecutorchProgramManager (bundling, ETRecord)
    enroll: EnrollStep | None = None
    enroll_reference: torch.nn.Module | None = None   # what enroll_step must equal: ``enroll`` or its int8 form

    @property
    def tolerances(self) -> dict:
        tol = dict(TOLERANCES[self.quant])
        if self.enroll is not None:
            tol["enroll"] = ENROLL_TOLERANCES["fp32" if self.quant == "fp32" else "int8"]
        return tol

    @property
    def method_names(self) -> list[str]:
        return ["forward"] + (["enroll_step", "enroll_finish"] if self.enroll is not None else [])


def resolve_quant(quant: str | Path, quantized: str | Path | None = None) -> tuple[str, Path | None]:
    """``quant`` (mode, alias or a .pt2 path) -> (mode, .pt2 path or None)."""
    text = str(quant)
    if text.endswith(".pt2"):
        return "qat", Path(text)
    mode = QUANT_ALIASES.get(text.lower())
    if mode is None:
        raise PocketVQEError(f"unknown quant mode {text!r}: choose none (fp32), ptq (int8 post-training), "
                             "qat, or give a quantized model file PATH.pt2")
    if mode == "qat":
        if quantized is None:
            raise PocketVQEError("--quant qat needs the quantized model: give its file instead, --quant PATH.pt2 "
                                 "(made by `pocketvqe quantize` or QAT)")
        return mode, Path(quantized)
    return mode, None


def calibration_inputs(step: StreamStep, frames: Sequence[Sequence[torch.Tensor]]) -> list[tuple]:
    """Thread the float state through ``frames`` so calibration sees the real streamed states."""
    out, state = [], step.init_state()
    with torch.no_grad():
        for sig in frames:
            out.append((*sig, *state))
            state = list(step(*sig, *state)[1:])
    return out


def _quant_api():
    """The quant package's API (PTQConfig, quantize, calibration_frames, load_quantized), or None."""
    try:
        from pocketvqe.quant import PTQConfig, calibration_frames, load_quantized, quantize
    except ImportError:
        return None
    return {"PTQConfig": PTQConfig, "quantize": quantize, "calibration_frames": calibration_frames,
            "load_quantized": load_quantized}


def _load_quantized(path: Path):
    api = _quant_api()
    if api is not None:
        return api["load_quantized"](path)
    try:
        from pocketvqe.quant.artifact import load_quantized
    except ImportError:
        raise PocketVQEError("this pocketvqe has no quantized-model reader (pocketvqe.quant): export with "
                             "--quant ptq instead") from None
    return load_quantized(path)


def _ptq_reference(enhancer: Enhancer, step: StreamStep, ep, calibration, ptq_config, progress: bool):
    """int8 PTQ -> (converted GraphModule, description for the metadata)."""
    api = _quant_api()
    if api is not None:
        config = ptq_config if ptq_config is not None else api["PTQConfig"]()
        gm = api["quantize"](enhancer, config, calibration, progress=progress)
        return gm, {"mode": "ptq", **{k: v for k, v in gm.meta.get("pocketvqe_quant", {}).items() if k != "mode"}}
    if not calibration:
        raise PocketVQEError("int8 export needs calibration audio: give real clips (none were given)")
    gm = quantize_pt2e_static(ep, calibration_inputs(step, calibration))
    return gm, {"mode": "ptq", "calibration": {"frames": len(calibration)}}


def _pt2_reference(enhancer: Enhancer, path: Path):
    """A quantized .pt2 of the same model -> (GraphModule, description)."""
    qep, meta = _load_quantized(path)
    cfg = meta.get("config")
    try:
        same = isinstance(cfg, dict) and ModelConfig.from_dict(cfg) == enhancer.cfg    # JSON lists vs tuples
    except PocketVQEError:
        same = False
    if not same:
        other = cfg.get("name") if isinstance(cfg, dict) else None
        raise PocketVQEError(f"{path} quantizes {other or 'another model'!r}, not the checkpoint's "
                             f"{enhancer.cfg.name!r} (or another version of its config): give the .pt2 made "
                             "from this checkpoint")
    quant = meta.get("quant") if isinstance(meta.get("quant"), dict) else {}
    mode = quant.get("mode") if quant.get("mode") in ("ptq", "qat") else "qat"
    return qep.module(), {"mode": mode, "source": str(path), **{k: v for k, v in quant.items() if k != "mode"}}


def metadata(step: StreamStep, quant: str, enroll: EnrollStep | None = None, quant_info: dict | None = None) -> dict:
    """The program's constant methods (names -> int/float/str; JSON strings for structures)."""
    cfg = step.cfg
    methods = ["forward"] + (["enroll_step", "enroll_finish"] if enroll is not None else [])
    return {
        "format_version": FORMAT, "pocketvqe_version": __version__,
        "model_name": cfg.name, "quant_mode": quant,
        "sample_rate": cfg.sample_rate, "hop": cfg.hop, "n_fft": cfg.n_fft,
        "algorithmic_delay_samples": cfg.algorithmic_latency_samples,
        "speaker_dim": step.enhancer.speaker_dim,
        "speaker_embedding": cfg.speaker_embedding if cfg.personalized else "",
        "method_names": ",".join(methods),
        "input_names": ",".join(step.input_names),
        "output_names": ",".join(["enhanced"] + step.state_names),
        "state_names": ",".join(step.state_names),
        "state_shapes": json.dumps([list(s) for s in step.state_shapes]),
        "enroll_state_names": ",".join(enroll.state_names) if enroll is not None else "",
        "enroll_state_shapes": json.dumps([list(s) for s in enroll.state_shapes]) if enroll is not None else "[]",
        "config_json": json.dumps(cfg.to_dict()),
        "quant_json": json.dumps(quant_info or {"mode": quant}, default=str),
        "tolerances_json": json.dumps(TOLERANCES[quant]),
    }


def _delegation(edge, offenders: list[str]) -> dict:
    from executorch.devtools.backend_debug import get_delegation_info
    out = {}
    for method in sorted(edge.methods):
        info = get_delegation_info(edge.exported_program(method).graph_module)
        total = info.num_delegated_nodes + info.num_non_delegated_nodes
        kept = {op: s.non_delegated for op, s in info.delegation_by_operator.items() if s.non_delegated}
        out[method] = {"delegated_subgraphs": info.num_delegated_subgraphs,
                       "delegated_nodes": info.num_delegated_nodes,
                       "non_delegated_nodes": info.num_non_delegated_nodes,
                       "delegated_share": round(info.num_delegated_nodes / max(total, 1), 4),
                       "non_delegated_ops": kept}
    fwd = out["forward"]
    return {**{k: fwd[k] for k in ("delegated_subgraphs", "delegated_nodes", "non_delegated_nodes",
                                   "delegated_share", "non_delegated_ops")},
            "undelegated_compute_ops": offenders, "methods": out}


def export_program(enhancer: Enhancer, quant: str = "fp32",
                   calibration: Sequence[Sequence[torch.Tensor]] | None = None, *,
                   quantized: str | Path | None = None, ptq_config=None, etrecord: bool = False,
                   progress: bool = False) -> Program:
    """Export the streaming step of ``enhancer`` (see the module docstring for ``quant``).

    Raises PocketVQEError when any compute op of any method stays outside the XNNPACK delegate."""
    mode, pt2 = resolve_quant(quant, quantized)
    t0 = time.perf_counter()
    enhancer = enhancer.eval()
    step = StreamStep(enhancer).eval()
    example = step.example_inputs()
    ep = export_model(step, example)
    reference: torch.nn.Module = step
    quant_info = {"mode": "fp32"}
    device_enroll = supports_device_enrollment(enhancer.cfg)
    api = _quant_api()
    if mode != "fp32" and calibration is None and api is not None and (mode == "ptq" or device_enroll):
        config = ptq_config if ptq_config is not None else api["PTQConfig"]()     # = what quantize() would draw
        calibration = api["calibration_frames"](enhancer, config.calib_clips, config.calib_seconds, config.seed,
                                                progress=progress)
    if mode == "ptq":
        reference, quant_info = _ptq_reference(enhancer, step, ep, calibration, ptq_config, progress)
    elif mode == "qat":
        reference, quant_info = _pt2_reference(enhancer, pt2)
        mode = quant_info["mode"]
    if reference is not step:
        ep = export_model(reference, example)
    methods = {"forward": rewrite_for_delegation(ep)}
    enroll = enroll_ref = None
    if device_enroll:                        # int8 programs: int8 enroll_step sharing forward's weights
        enroll = enroll_ref = EnrollStep(enhancer).eval()
        if mode != "fp32" and calibration:
            per_channel = ptq_config.per_channel if ptq_config is not None else True
            enroll_ref = quantize_enroll(enroll, calibration, per_channel=per_channel)
        methods["enroll_step"] = rewrite_for_delegation(export_model(enroll_ref, enroll.example_inputs()), True)
        finish = EnrollFinish(enroll).eval()
        methods["enroll_finish"] = export_model(finish, finish.example_inputs())
    meta = metadata(step, mode, enroll, quant_info)
    edge = lower(methods, constant_methods=meta, etrecord=etrecord)
    offenders = undelegated_compute_ops(edge)
    if offenders:
        raise PocketVQEError(f"{len(offenders)} ops stay outside the XNNPACK delegate: {sorted(set(offenders))}; "
                             "every compute op must be delegated (rewrite them with delegated ops, "
                             "see README 'ExecuTorch lowering notes')")
    delegation = _delegation(edge, offenders)
    et = to_executorch(edge)
    return Program(f"{enhancer.cfg.name}-{mode}", mode, et.buffer, step, reference, meta, delegation,
                   time.perf_counter() - t0, extra={"quant": quant_info}, et_program=et, enroll=enroll,
                   enroll_reference=enroll_ref)


def write_program(prog: Program, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    path = out / f"{prog.name}.pte"
    save(prog.buffer, path)
    return path


def write_etrecord(prog: Program, path: str | Path) -> Path:
    """The ETRecord of a program exported with ``etrecord=True`` (for the devtools Inspector)."""
    from pocketvqe.fileio import atomic_path
    if prog.et_program is None:
        raise PocketVQEError(f"{prog.name}: no ExecuTorch program manager kept; export it again with etrecord=True")
    try:
        record = prog.et_program.get_etrecord()
    except RuntimeError:
        raise PocketVQEError(f"{prog.name} was exported without an ETRecord: pass etrecord=True") from None
    with atomic_path(path) as tmp:
        record.save(str(tmp))
    return Path(path)


def file_entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _previous(path: Path, config: dict | None) -> dict:
    """The existing manifest's programs/files when it describes the same config (else nothing)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) and old.get("config") == config and old.get("format") == FORMAT else {}


def write_manifest(out_dir: str | Path, programs: Sequence[Program], files: Sequence[Path],
                   tolerances: dict | None = None, extra: dict | None = None, merge: bool = False) -> Path:
    """manifest.json: config, files with sha256 and sizes, delegation statistics, tolerances, versions.

    ``tolerances`` defaults to each program's own (:data:`TOLERANCES` of its quant mode). With
    ``merge``, programs and files of an existing manifest of the same config that still exist
    are kept (exporting fp32 then ptq into one folder describes both)."""
    out = Path(out_dir)
    config = programs[0].step.cfg.to_dict() if programs else None
    old = _previous(out / "manifest.json", config) if merge else {}
    manifest = {
        "format": FORMAT,
        "pocketvqe_version": __version__,
        "config": programs[0].step.cfg.to_dict() if programs else None,
        "programs": {p.name: {"quant": p.quant, "file": f"{p.name}.pte", "bytes": len(p.buffer),
                              "methods": p.method_names, "metadata": p.metadata, "delegation": p.delegation,
                              "tolerances": p.tolerances, "export_seconds": round(p.export_seconds, 1),
                              **({"checks": p.extra["checks"]} if "checks" in p.extra else {})}
                     for p in programs},
        "files": [file_entry(Path(f)) for f in files],
        "tolerances": tolerances if tolerances is not None else {p.quant: p.tolerances for p in programs},
        "versions": versions(),
        **(extra or {}),
    }
    if old:
        names = {f["file"] for f in manifest["files"]}
        kept = [f for f in old.get("files", []) if f.get("file") not in names and (out / f.get("file", "")).exists()]
        manifest["files"] = kept + manifest["files"]
        manifest["programs"] = {**{k: v for k, v in old.get("programs", {}).items()
                                   if (out / v.get("file", "")).exists()}, **manifest["programs"]}
        manifest["tolerances"] = {**old.get("tolerances", {}), **manifest["tolerances"]}
    path = out / "manifest.json"
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str) + "\n")
    return path
