"""Int8 ``enroll_step`` of personalized programs, quantized like ``forward`` so the program stores
the shared weights once (the runtime deduplicates named data by content) instead of a second, fp32
copy of the encoder and GRU (pvqe-s16: 2.12 MB int8 program with fp32 enrollment against 2.20 MB
fp32). The running sum and count stay fp32.

>>> gm = quantize_enroll(EnrollStep(enhancer), calib, PTQConfig())        # doctest: +SKIP
"""
from __future__ import annotations

from pocketvqe.models.step import EnrollStep, capture, enroll_inputs

from .config import PTQConfig
from .ptq import quantize_static
from .xnnpack import xnnpack_quantizer


def quantize_enroll(enroll: EnrollStep, frames, config: PTQConfig):
    """Int8 ``enroll_step`` calibrated on the mic hops of ``frames`` -> converted GraphModule with
    EnrollStep's signature. Its activation ranges are percentile ranges whatever ``config.observer``
    says (enrollment averages its features, so the rare extreme frame should saturate); weights,
    signal processing and percentile follow ``config``."""
    quantizer = xnnpack_quantizer(per_channel=config.per_channel, observer="percentile", float_dsp=True,
                                  percentile=config.percentile)
    return quantize_static(capture(enroll, enroll.example_inputs()), enroll_inputs(enroll, frames), quantizer)
