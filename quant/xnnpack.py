"""The XNNPACK quantizer recipe used for every int8 program, with two lowering fixes.

ExecuTorch 1.4.1's XNNPACK quantizer shared qparams across ``slice_copy`` but not across
``aten.slice.Tensor`` (the op it sees before ``to_edge``) nor ``constant_pad_nd``; 1.5.1 shares them
across ``slice.Tensor``, ``reshape``, ``view`` and ``squeeze.dim`` but still not ``narrow``, ``pad``,
``constant_pad_nd`` or ``unsqueeze``. A slice or pad
whose output feeds a quantized op then gets output qparams different from its input's, and
XNNPACK refuses to build the node when the method loads ("Failed to create static slice node",
upstream PR pytorch/executorch#21568). We give such nodes their producer's qparams. Reshapes
(``view``/``reshape``/``unsqueeze``/``squeeze``) are XNNPACK static reshapes with the same rule
("Failed to create squeeze node": pvqe-s16's GRU input cat -> narrow -> reshape -> linears broke
it). The consumers of such a node read it with the same qparams too: one tensor, one quantization.

>>> q = ptq_quantizer(recommended_ptq('dvqe-s16'), keep_float=(), dynamic=('enhancer.net.dec.3',))  # doctest: +SKIP
>>> q_qat = xnnpack_quantizer(per_channel=True, float_dsp=True, is_qat=True)      # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
from torch.fx import Node
from torchao.quantization.pt2e import observer as obs
from torchao.quantization.pt2e.observer import MinMaxObserver
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

from .config import OBSERVERS, PTQConfig

_SHARED_OPS = (torch.ops.aten.slice.Tensor, torch.ops.aten.narrow.default, torch.ops.aten.pad.default,
               torch.ops.aten.constant_pad_nd.default, torch.ops.aten.view.default, torch.ops.aten.reshape.default,
               torch.ops.aten.unsqueeze.default, torch.ops.aten.squeeze.dim)


def _share_qparams_through_data_movement(model: torch.fx.GraphModule) -> None:
    key = "quantization_annotation"
    for n in model.graph.nodes:
        if n.op != "call_function" or n.target not in _SHARED_OPS:
            continue
        if all(u.op == "output" for u in n.users):
            continue
        prev = n.args[0]
        ann = prev.meta.get(key) if isinstance(prev, Node) else None
        if ann is None or ann.output_qspec is None:
            continue
        if key in n.meta and n.meta[key]._annotated:
            continue
        shared = SharedQuantizationSpec(prev)
        n.meta[key] = QuantizationAnnotation(input_qspec_map={prev: shared}, output_qspec=shared, _annotated=True)
        for u in n.users:                                   # consumers read the same qparams
            uann = u.meta.get(key)
            spec = uann.input_qspec_map.get(n) if uann is not None else None
            if spec is None:
                continue
            if not isinstance(spec, SharedQuantizationSpec):
                uann.input_qspec_map[n] = SharedQuantizationSpec(n)


# Modules whose own ops are signal processing, not network: the STFT/iSTFT (DFT matmuls on PCM), the
# power-law compression (|X|^2 -> log -> exp: a dynamic range no 8-bit grid holds) and the CCM
# (mask x spectrum). With ``float_dsp`` their ops stay fp32 (XNNPACK runs them in fp32 inside the
# delegate); the network's convs, GRU and linears still take int8 inputs.
DSP_MODULES = ("", "enhancer", "enhancer.stft", "enhancer.net")


def _innermost_module(n: Node) -> str:
    stack = n.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    name = list(stack.values())[-1][0]
    return name[len("L['self']."):] if name.startswith("L['self'].") else name


def _unannotate_dsp(model: torch.fx.GraphModule) -> None:
    key = "quantization_annotation"
    for n in model.graph.nodes:
        if n.op == "call_function" and key in n.meta and _innermost_module(n) in DSP_MODULES:
            del n.meta[key]


def _in_modules(n: Node, names: tuple[str, ...]) -> bool:
    """Whether node ``n`` was traced inside one of the modules ``names`` (or their submodules)."""
    stack = [v[0] for v in (n.meta.get("nn_module_stack") or {}).values()]
    stack = [m[len("L['self']."):] if m.startswith("L['self'].") else m for m in stack]
    stack = [m.replace("[", ".").replace("]", "") for m in stack]       # dec[0] -> dec.0
    # prefix match: a container that is never called itself (a ModuleList such as
    # ``enhancer.net.dec``) is not in the stack, its children ``enhancer.net.dec.0`` ... are
    return any(m == k or m.startswith(k + ".") for m in stack for k in names)


def _unannotate_modules(model: torch.fx.GraphModule, names: tuple[str, ...]) -> None:
    """Drop the annotations of ops inside the modules ``names`` (and their submodules): they stay fp32.
    (XNNPACKQuantizer.set_module_name(name, None) asserts in executorch 1.4.1 and 1.5.1:
    "quantization_config == None is not supported yet".)"""
    key = "quantization_annotation"
    for n in model.graph.nodes:
        if n.op == "call_function" and key in n.meta and _in_modules(n, names):
            del n.meta[key]
            for a in n.args:                    # its weight / bias (marked annotated with the op)
                if isinstance(a, Node) and a.op == "get_attr":
                    a.meta.pop(key, None)


def _drop_dangling_shares(model: torch.fx.GraphModule) -> None:
    """After annotations were removed, drop every annotation that shares qparams with an output or
    an input edge that is no longer quantized (repeat until none is left)."""
    key = "quantization_annotation"

    def alive(ref) -> bool:
        if isinstance(ref, Node):
            ann = ref.meta.get(key)
            return ann is not None and ann.output_qspec is not None
        src, dst = ref
        ann = dst.meta.get(key)
        return ann is not None and ann.input_qspec_map.get(src) is not None

    changed = True
    while changed:
        changed = False
        for n in model.graph.nodes:
            ann = n.meta.get(key)
            if ann is None:
                continue
            specs = list(ann.input_qspec_map.values()) + [ann.output_qspec]
            if any(isinstance(q, SharedQuantizationSpec) and not alive(q.edge_or_node) for q in specs):
                del n.meta[key]
                changed = True


def percentile_range(frame_min, frame_max, percentile: float) -> tuple[float, float]:
    """(lo, hi) activation range from per-frame extremes: the ``percentile``-th percentile of the
    maxima and the mirrored one of the minima, widened to include 0 (int8 needs 0 exactly)."""
    lo = min(float(np.percentile(np.asarray(frame_min), 100.0 - percentile)), 0.0)
    hi = max(float(np.percentile(np.asarray(frame_max), percentile)), 0.0)
    return lo, hi


def _frame_percentile_observer(percentile: float):
    """MinMaxObserver whose range is a percentile of the per-call (per-frame) extremes.

    Calibration streams one hop per call, so ``percentile=99.9`` lets the 0.1 % most extreme frames
    saturate instead of stretching the grid for every other frame. The trained dvqe-s16's decoder
    convs peak at ~0.3 on speech frames but ~20 on far-end-only echo frames (1-2 % of them):
    min-max ranges leave speech 3-10 int8 steps (``pocketvqe quant-report``)."""

    class FramePercentileObserver(MinMaxObserver):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.percentile = float(percentile)
            self.frame_min: list[float] = []
            self.frame_max: list[float] = []

        def forward(self, x_orig):
            if x_orig.numel():
                x = x_orig.detach()
                self.frame_min.append(float(x.min()))
                self.frame_max.append(float(x.max()))
            return super().forward(x_orig)

        def calculate_qparams(self):
            if not self.frame_max:
                return super().calculate_qparams()
            lo, hi = percentile_range(self.frame_min, self.frame_max, self.percentile)
            return self._calculate_qparams(torch.tensor([lo]).squeeze(), torch.tensor([hi]).squeeze())

    return FramePercentileObserver


def _activation_observer(name: str, percentile: float = 99.9):
    if name not in OBSERVERS:
        raise ValueError(f"unknown observer {name!r}: choose one of {OBSERVERS}")
    if name == "percentile":
        return _frame_percentile_observer(percentile)     # a class: prepare_pt2e reads its __name__
    return {"minmax": obs.MinMaxObserver, "moving_average": obs.MovingAverageMinMaxObserver,
            "histogram": obs.HistogramObserver}[name]


def xnnpack_quantizer(*, per_channel: bool, float_dsp: bool, observer: str | None = None,
                      percentile: float = 99.9, is_qat: bool = False, keep_float: tuple[str, ...] = (),
                      dynamic: tuple[str, ...] = ()):
    """XNNPACKQuantizer with static int8 activations and symmetric int8 weights (+ the fixes above).

    It has no defaults of its own for the choices a recipe makes: :class:`PTQConfig` /
    :class:`QATConfig` (and ``RECIPES``) decide them, and :func:`ptq_quantizer` passes a PTQ recipe's.
    ``observer``: activation range observer for PTQ calibration (required unless ``is_qat``): ``minmax`` (fast, keeps
    every calibrated peak), ``moving_average`` or ``histogram`` (XNNPACK's default; MSE-optimal
    ranges but ~20x slower to calibrate on thousands of streamed frames) or ``percentile`` (the
    ``percentile``-th percentile of the per-frame extremes: rare extreme frames saturate).
    ``keep_float``: module name prefixes (e.g. ``enhancer.net.dec.3``) whose ops stay fp32.
    ``float_dsp``: keep the STFT, power-law compression and CCM ops fp32 (see ``DSP_MODULES``); the
    quant flows (``pocketvqe.quant``) turn it on: int8 PCM and int8 power spectra cost 20-40 dB SQNR.
    ``dynamic``: module name prefixes whose convs and linears get int8 weights with dynamically
    quantized activations (each call's own range, XNNPACK's qd8-f32-qc8w kernels); their other ops
    and their outputs stay fp32. The weights cost int8 bytes, the activations lose no static range.
    """
    if observer is None and not is_qat:
        raise ValueError("xnnpack_quantizer: give the PTQ observer (ptq_quantizer(config) passes the recipe's)")

    class StreamingXNNPACKQuantizer(XNNPACKQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            if float_dsp:
                _unannotate_dsp(model)
            if keep_float or dynamic:
                _unannotate_modules(model, tuple(keep_float) + tuple(dynamic))
            if float_dsp or keep_float or dynamic:
                _drop_dangling_shares(model)
            if dynamic:
                dyn = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True, is_qat=is_qat)
                self._annotate_all_patterns(model, dyn, lambda n: n.op == "get_attr" or _in_modules(n, tuple(dynamic)))
            _share_qparams_through_data_movement(model)
            return model

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=is_qat)
    if not is_qat and observer != "histogram":        # QAT: the config's fake quant; histogram: XNNPACK's own
        ctr = _activation_observer(observer, percentile)
        act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=ctr.with_args(eps=2 ** -12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    return StreamingXNNPACKQuantizer().set_global(config)


def ptq_quantizer(config: PTQConfig, keep_float: tuple[str, ...], dynamic: tuple[str, ...]):
    """The quantizer of a PTQ recipe; ``keep_float`` / ``dynamic`` are ``config``'s module names
    resolved to the step's (``ptq.resolve_keep_float``)."""
    return xnnpack_quantizer(per_channel=config.per_channel, observer=config.observer, float_dsp=config.float_dsp,
                             percentile=config.percentile, keep_float=keep_float, dynamic=dynamic)
