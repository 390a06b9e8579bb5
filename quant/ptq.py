"""Post-training static int8 quantization of the streaming step (PT2E, XNNPACK quantizer).

The step (``models.step.StreamStep``: one hop of PCM in, one out, state as tensors) is exported,
``prepare_pt2e`` inserts observers, the calibration clips stream through it (state threaded,
reset at each clip start) and ``convert_pt2e`` returns the int8 reference GraphModule, called
like the step: ``(*signals, *state) -> (enhanced[hop], *state)``.

>>> gm = quantize(enhancer, PTQConfig(calib_clips=16))               # doctest: +SKIP
>>> y, *state = gm(mic_hop, far_hop, *StreamStep(enhancer).init_state())   # doctest: +SKIP
"""
from __future__ import annotations

import copy
import difflib
import time
from typing import Sequence
from unittest import mock

import torch
from torchao.quantization.pt2e import quantize_pt2e as qp
from tqdm import tqdm

from pocketvqe.errors import PocketVQEError
from pocketvqe.models.blocks import DecoderBlock
from pocketvqe.models.step import StreamStep, capture
from pocketvqe.signals import run_step

from .calibration import CalibFrames, calibration_frames, check_calibration, clip_bounds
from .config import PTQConfig
from .xnnpack import DSP_MODULES, _innermost_module, ptq_quantizer

META_KEY = "pocketvqe_quant"          # GraphModule.meta[META_KEY]: how the module was made


def resolve_keep_float(enhancer, names: Sequence[str], field: str = "keep_float") -> tuple[str, ...]:
    """Module names of the Enhancer (``net.dec.3``) or of the step (``enhancer.net.dec.3``) -> step names."""
    known = {n for n, _ in enhancer.named_modules() if n}
    out = []
    for raw in names:
        name = raw.strip()
        name = name[len("enhancer."):] if name.startswith("enhancer.") else name
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=5, cutoff=0.5)
            hint = f"close names: {', '.join(close)}" if close else "list them with `pocketvqe quant-report`"
            raise PocketVQEError(f"{field} names unknown module {raw!r} in {enhancer.cfg.name}: {hint}")
        out.append("enhancer." + name)
    return tuple(dict.fromkeys(out))


def stream(module, frames: CalibFrames, init_state: Sequence[torch.Tensor], bar=None) -> list[torch.Tensor]:
    """Run ``frames`` through a step module (:func:`pocketvqe.signals.run_step`), the state reset at each
    clip start -> one tensor of enhanced samples per clip."""
    outs = []
    for a, b in clip_bounds(frames):
        y, _ = run_step(module, frames[a:b], [s.clone() for s in init_state],
                        on_frame=None if bar is None else (lambda i: bar.update(1)))
        outs.append(torch.from_numpy(y))
    return outs


def fold_decoder_bn(enhancer):
    """An eval-mode copy of ``enhancer`` with every decoder BatchNorm folded into its sub-pixel conv
    (``DecoderBlock.fold_bn``; the encoder's conv-BN pairs are folded by ``prepare_pt2e`` itself)."""
    enhancer = copy.deepcopy(enhancer).eval()
    for m in enhancer.modules():
        if isinstance(m, DecoderBlock):
            m.fold_bn()
    return enhancer


def export_step(enhancer):
    """(StreamStep of the BN-folded ``enhancer`` in eval mode, its ExportedProgram)."""
    step = StreamStep(fold_decoder_bn(enhancer)).eval()
    return step, capture(step, step.example_inputs())


def n_signals(cfg) -> int:
    return 1 + int(cfg.has_far) + int(cfg.personalized)


def quantize(enhancer, config: PTQConfig | None = None, calib: Sequence[Sequence[torch.Tensor]] | None = None,
             progress: bool = True, data=None) -> torch.fx.GraphModule:
    """PTQ: export the step of ``enhancer``, calibrate on ``calib`` (default: ``config.calib_clips``
    simulated clips), convert -> the int8 reference GraphModule (``gm.meta[META_KEY]`` says how)."""
    config = config or PTQConfig()
    keep = resolve_keep_float(enhancer, config.keep_float)
    dynamic = resolve_keep_float(enhancer, config.dynamic, "dynamic")
    t0 = time.perf_counter()
    if calib is None:
        calib = calibration_frames(enhancer, config.calib_clips, config.calib_seconds, config.seed, data=data,
                                   progress=progress)
    calib = check_calibration(calib, n_signals(enhancer.cfg), enhancer.cfg.hop)
    step, ep = export_step(enhancer)
    prepared = qp.prepare_pt2e(ep.module(), ptq_quantizer(config, keep, dynamic))
    with tqdm(total=len(calib), desc=f"calibrating {enhancer.cfg.name} ({config.observer})", unit="frame",
              disable=not progress, leave=False, mininterval=1.0) as bar:
        stream(prepared, calib, step.init_state(), bar)
    gm = convert_ptq(prepared)
    gm.meta[META_KEY] = {"mode": "ptq", "config": config.to_dict(), "keep_float": list(keep), "dynamic": list(dynamic),
                         "calibration": {**calib.summary, "frames": len(calib), "observer": config.observer},
                         "seconds": round(time.perf_counter() - t0, 2)}
    return gm


def convert_ptq(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``convert_pt2e`` without its QAT conv-BN folding pass, which has nothing to fold after PTQ
    (``prepare_pt2e`` already folded conv-BN pairs) but traces 96 pattern graphs (~30 s) whenever a
    BatchNorm remains (the decoder's BN after the sub-pixel reshape). Outputs were checked identical
    (max abs diff 0.0 over 300 streamed frames, same node count) against the full convert_pt2e."""
    with mock.patch.object(qp, "_fold_conv_bn_qat", lambda m: m):
        return qp.convert_pt2e(prepared)


def quantize_static(ep: torch.export.ExportedProgram, calibration: Sequence[Sequence[torch.Tensor]],
                    quantizer) -> torch.fx.GraphModule:
    """PT2E static quantization of any captured module: prepare with ``quantizer`` (no default: the
    recipe decides it: :func:`ptq_quantizer` of a :class:`PTQConfig`), run the ``calibration``
    input tuples, convert."""
    prepared = qp.prepare_pt2e(ep.module(), quantizer)
    with torch.no_grad():
        for inputs in calibration:
            prepared(*inputs)
    return convert_ptq(prepared)


def quantized_linears(gm: torch.fx.GraphModule) -> dict[str, int]:
    """Module name -> number of ``aten.linear`` nodes whose weight is int8 (dequantized from int8)."""
    out: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.target != torch.ops.aten.linear.default:
            continue
        w = n.args[1]
        if isinstance(w, torch.fx.Node) and w.op == "call_function" and "dequantize" in str(w.target):
            stack = n.meta.get("nn_module_stack") or {}
            name = list(stack.values())[-1][0] if stack else n.name
            out[name] = out.get(name, 0) + 1
    return out


def float_linears(gm: torch.fx.GraphModule) -> list[str]:
    """Names of the network's ``aten.linear`` nodes whose weight stays fp32 (the STFT's constant
    DFT stages, kept fp32 by ``float_dsp``, are signal processing, not network weights)."""
    bad = []
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target == torch.ops.aten.linear.default:
            w = n.args[1]
            if not (isinstance(w, torch.fx.Node) and "dequantize" in str(w.target)) \
                    and _innermost_module(n) not in DSP_MODULES:
                stack = n.meta.get("nn_module_stack") or {}
                bad.append(list(stack.values())[-1][0] if stack else n.name)
    return bad
