"""Int8 quantization of the streaming step: PTQ, QAT, per-layer diagnosis, mixed precision, .pt2 files.

>>> gm = quantize(enhancer, PTQConfig(calib_clips=16))                 # int8 step GraphModule
>>> save_quantized("q.pt2", gm, {"quant": {...}}, enhancer=enhancer)
>>> ep, meta = load_quantized("q.pt2")                                  # -> export.lower.lower(ep)
>>> qm = prepare_qat(enhancer, QATConfig(steps=200)); fine_tune(qm); gm = convert(qm)
>>> rep = sensitivity(enhancer, PTQConfig(), calib); prop = propose_keep_float(enhancer, PTQConfig(), calib, 30.0)
"""
from .artifact import load_quantized, save_quantized
from .calibration import CalibFrames, calibration_frames
from .config import OBSERVERS, RECIPES, PTQConfig, QATConfig, recommended_ptq
from .debug import LayerSQNR, Proposal, SensitivityReport, format_table, propose_keep_float, sensitivity
from .ptq import float_linears, quantize, quantized_linears
from .qat import QATModel, convert, fine_tune, prepare_qat, quantize_qat
from .xnnpack import xnnpack_quantizer

__all__ = ["CalibFrames", "LayerSQNR", "OBSERVERS", "PTQConfig", "Proposal", "QATConfig", "QATModel",
           "SensitivityReport", "calibration_frames", "convert", "fine_tune", "float_linears", "format_table",
           "load_quantized", "prepare_qat", "propose_keep_float", "quantize", "quantize_qat", "quantized_linears",
           "RECIPES", "recommended_ptq", "save_quantized", "sensitivity", "xnnpack_quantizer"]
