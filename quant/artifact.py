"""The quantized-model file: an int8 step ExportedProgram (``.pt2``) that carries its own description.

``torch.export.save`` with extra files: ``pocketvqe.json`` (format, model config, quant mode and
config, calibration summary: clips, frames, scenarios, observer; versions) and, when an enhancer
is given, ``pocketvqe_float_weights.b64`` (the float state_dict, base64 of ``torch.save``): the
device program takes the speaker embedding as an input, so enrollment runs on the host with the
float model, and the file must hold it to enroll without the original checkpoint.

>>> save_quantized("q.pt2", gm, {"config": cfg.to_dict(), "quant": {...}}, enhancer=enh)  # doctest: +SKIP
>>> ep, meta = load_quantized("q.pt2")                                                   # doctest: +SKIP
>>> prog = export_program(enhancer, Int8Reference.from_pt2(...))     # -> .pte (export)   # doctest: +SKIP
"""
from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from pathlib import Path

import torch
import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401  registers the quantized_decomposed ops .pt2 files use

from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_path
from pocketvqe.models.checkpoint import versions
from pocketvqe.models.step import capture

FORMAT = "pocketvqe-quantized-1"
META_FILE = "pocketvqe.json"
WEIGHTS_FILE = "pocketvqe_float_weights.b64"


def example_inputs_of(gm: torch.fx.GraphModule) -> tuple[torch.Tensor, ...]:
    """Zero tensors shaped like the placeholders of an exported/converted GraphModule."""
    out = []
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            val = n.meta.get("val")
            if val is None or not hasattr(val, "shape"):
                raise PocketVQEError(f"cannot infer the shape of input {n.name}: save an ExportedProgram instead")
            out.append(torch.zeros(tuple(int(s) for s in val.shape), dtype=val.dtype))
    return tuple(out)


def user_input_shapes(ep: torch.export.ExportedProgram) -> list[tuple[int, ...]]:
    """Shapes of the user inputs (signals, then state) of an ExportedProgram."""
    names = set(ep.graph_signature.user_inputs)
    return [tuple(int(s) for s in n.meta["val"].shape) for n in ep.graph.nodes
            if n.op == "placeholder" and n.name in names]


def to_exported(gm_or_ep, example_inputs=None) -> torch.export.ExportedProgram:
    if isinstance(gm_or_ep, torch.export.ExportedProgram):
        return gm_or_ep
    if not isinstance(gm_or_ep, torch.fx.GraphModule):
        raise PocketVQEError(f"save_quantized takes the converted GraphModule or an ExportedProgram, "
                             f"not {type(gm_or_ep).__name__}")
    return capture(gm_or_ep, example_inputs or example_inputs_of(gm_or_ep))


def save_quantized(path: str | os.PathLike, gm_or_ep, meta: dict, enhancer=None) -> Path:
    """Write ``path`` (.pt2) atomically; ``meta`` needs ``config`` (the ModelConfig dict) unless
    ``enhancer`` is given (its config and float weights are stored)."""
    path = Path(path)
    if path.suffix != ".pt2":
        raise PocketVQEError(f"quantized models are .pt2 files: rename {path.name} to {path.stem}.pt2")
    meta = dict(meta)
    if enhancer is not None:
        meta.setdefault("config", enhancer.cfg.to_dict())
    if not isinstance(meta.get("config"), dict):
        raise PocketVQEError("save_quantized: meta needs 'config' (the model config dict) or pass enhancer=")
    meta.update(format=FORMAT, versions=versions(), has_float_weights=enhancer is not None)
    ep = to_exported(gm_or_ep)
    extra = {META_FILE: json.dumps(meta, default=str)}
    if enhancer is not None:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in enhancer.state_dict().items()}, buf)
        extra[WEIGHTS_FILE] = base64.b64encode(buf.getvalue()).decode("ascii")
    with atomic_path(path) as tmp:
        torch.export.save(ep, str(tmp), extra_files=extra)
    return path


def load_quantized(path: str | os.PathLike, with_float_weights: bool = False
                   ) -> tuple[torch.export.ExportedProgram, dict]:
    """(ExportedProgram of the int8 step, meta); with ``with_float_weights`` meta gets
    ``float_state_dict`` (None when the file has none)."""
    path = Path(path)
    if not path.exists():
        raise PocketVQEError(f"quantized model {path} does not exist: make one with "
                             "`pocketvqe quantize --ckpt X --out q.pt2`")
    extra = {META_FILE: "", WEIGHTS_FILE: ""}
    try:
        ep = torch.export.load(str(path), extra_files=extra)
    except (RuntimeError, zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
        raise PocketVQEError(f"{path} is not a readable .pt2 ({str(exc).splitlines()[0][:120]}): "
                             "re-create it with `pocketvqe quantize`") from None
    try:
        meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    except json.JSONDecodeError:
        meta = {}
    if meta.get("format") != FORMAT:
        raise PocketVQEError(f"{path} is a .pt2 but not a pocketvqe quantized model (no {META_FILE}): "
                             "make it with `pocketvqe quantize`")
    if with_float_weights:
        sd = None
        if extra[WEIGHTS_FILE]:
            sd = torch.load(io.BytesIO(base64.b64decode(extra[WEIGHTS_FILE])), map_location="cpu", weights_only=True)
        meta["float_state_dict"] = sd
    return ep, meta
