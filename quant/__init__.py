"""All of int8: recipes, PTQ, QAT, enrollment quantization, per-layer diagnosis, .pt2 int8 references.

One verb per flow, one place for defaults (``RECIPES`` over ``PTQConfig``'s fields, read through
:func:`recommended_ptq`):

>>> ref = int8_reference(enhancer)                                     # PTQ with the config's recipe
>>> gm = quantize(enhancer, recommended_ptq("dvqe-s16"))               # the int8 step GraphModule
>>> save_quantized("q.pt2", gm, {"quant": gm.meta["pocketvqe_quant"]}, enhancer=enhancer)
>>> ref = int8_reference(enhancer, "q.pt2")                            # -> export.export_program(enhancer, ref)
>>> qm = prepare_qat(enhancer, QATConfig(steps=200)); fine_tune(qm); gm = convert(qm)
>>> rep = sensitivity(enhancer, PTQConfig(), calib); prop = propose_keep_float(enhancer, PTQConfig(), calib, 30.0)
"""
from .artifact import load_quantized, save_quantized
from .calibration import CalibFrames, calibration_frames
from .config import OBSERVERS, RECIPES, PTQConfig, QATConfig, recommended_ptq
from .debug import LayerSQNR, Proposal, SensitivityReport, format_table, propose_keep_float, sensitivity
from .enroll import quantize_enroll
from .int8 import Int8Reference, int8_reference
from .ptq import float_linears, quantize, quantize_static, quantized_linears
from .qat import QATModel, convert, fine_tune, prepare_qat, quantize_qat
from .xnnpack import ptq_quantizer, xnnpack_quantizer

__all__ = ["CalibFrames", "Int8Reference", "LayerSQNR", "OBSERVERS", "PTQConfig", "Proposal", "QATConfig",
           "QATModel", "RECIPES", "SensitivityReport", "calibration_frames", "convert", "fine_tune",
           "float_linears", "format_table", "int8_reference", "load_quantized", "prepare_qat",
           "propose_keep_float", "ptq_quantizer", "quantize", "quantize_enroll", "quantize_qat", "quantize_static",
           "quantized_linears", "recommended_ptq", "save_quantized", "sensitivity", "xnnpack_quantizer"]
