"""The XNNPACK quantizer recipe used for every int8 program, with two lowering fixes.

ExecuTorch 1.4.1's XNNPACK quantizer shares qparams across ``slice_copy`` but not across
``aten.slice.Tensor`` (the op it sees before ``to_edge``) nor ``constant_pad_nd``. A slice or pad
whose output feeds a quantized op then gets output qparams different from its input's, and
XNNPACK refuses to build the node when the method loads ("Failed to create static slice node",
upstream PR pytorch/executorch#21568). We give such nodes their producer's qparams.

>>> q = xnnpack_quantizer()                     # per-channel symmetric int8 weights, int8 activations
>>> q_qat = xnnpack_quantizer(is_qat=True)
"""
from __future__ import annotations

import torch
from torch.fx import Node

_SHARED_OPS = (torch.ops.aten.slice.Tensor, torch.ops.aten.narrow.default, torch.ops.aten.pad.default,
               torch.ops.aten.constant_pad_nd.default)


def _share_qparams_through_data_movement(model: torch.fx.GraphModule) -> None:
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec
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


OBSERVERS = ("minmax", "moving_average", "histogram")


def _activation_observer(name: str):
    from torchao.quantization.pt2e import observer as obs
    if name not in OBSERVERS:
        raise ValueError(f"unknown observer {name!r}: choose one of {OBSERVERS}")
    return {"minmax": obs.MinMaxObserver, "moving_average": obs.MovingAverageMinMaxObserver,
            "histogram": obs.HistogramObserver}[name]


def xnnpack_quantizer(per_channel: bool = True, is_qat: bool = False, keep_float: tuple[str, ...] = (),
                      observer: str = "minmax"):
    """XNNPACKQuantizer with static int8 activations and symmetric int8 weights (+ the fixes above).

    ``observer``: activation range observer for PTQ calibration: ``minmax`` (default, fast, keeps
    every calibrated peak), ``moving_average`` or ``histogram`` (XNNPACK's default; MSE-optimal
    ranges but ~20x slower to calibrate on thousands of streamed frames).
    ``keep_float``: module name prefixes (e.g. ``enhancer.net.dec.3``) whose ops stay fp32.
    """
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)

    class StreamingXNNPACKQuantizer(XNNPACKQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            _share_qparams_through_data_movement(model)
            return model

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=is_qat)
    ctr = _activation_observer(observer)
    if not is_qat and observer != "histogram":
        act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=ctr.with_args(eps=2 ** -12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    q = StreamingXNNPACKQuantizer().set_global(config)
    for name in keep_float:
        q.set_module_name(name, None)
    return q
