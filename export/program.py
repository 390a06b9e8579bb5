"""Device programs: StreamStep -> (PTQ int8) -> XNNPACK -> .pte with metadata, plus manifest.json.

>>> prog = export_program(enhancer, quant="int8", calibration=frames)   # frames: [(mic[hop], far[hop]), ...]
>>> paths = write_program(prog, "build/")                             # build/dvqe-s16-int8.pte
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
from pocketvqe.models import Enhancer
from pocketvqe.models.checkpoint import versions

from .lower import export_model, lower, quantize_pt2e_static, save, to_buffer, undelegated_compute_ops
from .step import StreamStep

QUANT_MODES = ("fp32", "int8")


@dataclass
class Program:
    name: str                      # e.g. dvqe-s16-int8
    quant: str
    buffer: bytes
    step: StreamStep
    reference: torch.nn.Module     # eager step (fp32) or converted int8 GraphModule
    metadata: dict
    delegation: dict
    export_seconds: float
    extra: dict = field(default_factory=dict)


def calibration_inputs(step: StreamStep, frames: Sequence[Sequence[torch.Tensor]]) -> list[tuple]:
    """Thread the float state through ``frames`` so calibration sees the real streamed states."""
    out, state = [], step.init_state()
    with torch.no_grad():
        for sig in frames:
            out.append((*sig, *state))
            state = list(step(*sig, *state)[1:])
    return out


def metadata(step: StreamStep, quant: str) -> dict:
    cfg = step.cfg
    return {
        "model_name": cfg.name, "quant_mode": quant, "pocketvqe_version": __version__,
        "sample_rate": cfg.sample_rate, "hop": cfg.hop, "n_fft": cfg.n_fft,
        "algorithmic_delay_samples": cfg.algorithmic_latency_samples,
        "speaker_dim": step.enhancer.speaker_dim,
        "input_names": ",".join(step.input_names),
        "state_names": ",".join(step.state_names),
        "state_shapes": json.dumps([list(s) for s in step.state_shapes]),
        "config_json": json.dumps(cfg.to_dict()),
    }


def export_program(enhancer: Enhancer, quant: str = "fp32",
                   calibration: Sequence[Sequence[torch.Tensor]] | None = None) -> Program:
    """Export the streaming step of ``enhancer``; int8 needs real ``calibration`` frames."""
    if quant not in QUANT_MODES:
        raise PocketVQEError(f"unknown quant mode {quant!r}: choose one of {QUANT_MODES}")
    t0 = time.perf_counter()
    step = StreamStep(enhancer.eval()).eval()
    example = step.example_inputs()
    ep = export_model(step, example)
    reference: torch.nn.Module = step
    if quant == "int8":
        if not calibration:
            raise PocketVQEError("int8 export needs calibration audio: give real clips (none were given)")
        reference = quantize_pt2e_static(ep, calibration_inputs(step, calibration))
        ep = export_model(reference, example)
    meta = metadata(step, quant)
    edge = lower(ep, constant_methods=meta)
    offenders = undelegated_compute_ops(edge)
    if offenders:
        raise PocketVQEError(f"{len(offenders)} ops stay outside the XNNPACK delegate: {sorted(set(offenders))}; "
                             "every compute op must be delegated")
    from executorch.devtools.backend_debug import get_delegation_info
    info = get_delegation_info(edge.exported_program().graph_module)
    delegation = {"delegated_subgraphs": info.num_delegated_subgraphs,
                  "delegated_nodes": info.num_delegated_nodes,
                  "non_delegated_nodes": info.num_non_delegated_nodes,
                  "undelegated_compute_ops": offenders}
    buf = to_buffer(edge)
    return Program(f"{enhancer.cfg.name}-{quant}", quant, buf, step, reference, meta, delegation,
                   time.perf_counter() - t0)


def write_program(prog: Program, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    path = out / f"{prog.name}.pte"
    save(prog.buffer, path)
    return path


def file_entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_manifest(out_dir: str | Path, programs: Sequence[Program], files: Sequence[Path],
                   tolerances: dict, extra: dict | None = None) -> Path:
    """manifest.json: config, files with sha256 and sizes, delegation statistics, tolerances, versions."""
    out = Path(out_dir)
    manifest = {
        "pocketvqe_version": __version__,
        "config": programs[0].step.cfg.to_dict() if programs else None,
        "programs": {p.name: {"quant": p.quant, "metadata": p.metadata, "delegation": p.delegation,
                              "export_seconds": round(p.export_seconds, 1)} for p in programs},
        "files": [file_entry(Path(f)) for f in files],
        "tolerances": tolerances,
        "versions": versions(),
        **(extra or {}),
    }
    path = out / "manifest.json"
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path
