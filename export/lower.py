"""Small steps from an eager module to an ExecuTorch program: export_model -> quantize -> lower -> save.

>>> ep = export_model(step, step.example_inputs())
>>> qm = quantize_pt2e_static(ep, calibration_batches)          # int8 reference GraphModule
>>> prog = lower(torch.export.export(qm, step.example_inputs()))
>>> save(prog, "dvqe-s16-int8.pte")
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Sequence

import torch

from pocketvqe.fileio import atomic_write_bytes

COMPUTE_OPS = ("convolution", "linear", "addmm", "mm", "bmm", "matmul", "mul", "add", "sub", "sigmoid",
               "tanh", "exp", "log", "softmax", "clamp", "rsqrt", "div", "cat")
_QUIET = ["executorch", "torchao", "torch._export", "torch.export"]


def _quiet():
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)


def export_model(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor]) -> torch.export.ExportedProgram:
    """torch.export with gradients off (to_executorch fails on in-place state copies otherwise)."""
    _quiet()
    with torch.no_grad():
        return torch.export.export(module, tuple(example_inputs), strict=False)


def quantize_pt2e_static(ep: torch.export.ExportedProgram, calibration: Iterable[Sequence[torch.Tensor]],
                         quantizer=None) -> torch.fx.GraphModule:
    """PT2E post-training quantization: prepare, run ``calibration`` input tuples, convert."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from pocketvqe.quant.xnnpack import xnnpack_quantizer
    prepared = prepare_pt2e(ep.module(), quantizer or xnnpack_quantizer())
    with torch.no_grad():
        for inputs in calibration:
            prepared(*inputs)
    return convert_pt2e(prepared)


def lower(ep: torch.export.ExportedProgram, constant_methods: dict | None = None):
    """to_edge_transform_and_lower with the XNNPACK partitioner -> EdgeProgramManager."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    _quiet()
    return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()], constant_methods=constant_methods)


def undelegated_compute_ops(edge) -> list[str]:
    """Compute ops left outside every delegate (empty list: fully delegated)."""
    gm = edge.exported_program().graph_module
    bad = []
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = str(node.target)
        if "delegate" in name or "getitem" in name or "alloc" in name:
            continue
        if any(op in name for op in COMPUTE_OPS) or "aten" in name:
            bad.append(name)
    return bad


def to_buffer(edge) -> bytes:
    with torch.no_grad():
        return edge.to_executorch().buffer


def save(buffer: bytes, path: str | os.PathLike) -> None:
    atomic_write_bytes(path, buffer)


class LoadedMethod:
    """A method of a loaded program. Holds the program and its bytes: the runtime does not copy
    a program given as bytes, so they must outlive the method (else: use-after-free)."""

    def __init__(self, buffer_or_path, method: str = "forward"):
        from executorch.runtime import Runtime
        self._source = bytes(buffer_or_path) if isinstance(buffer_or_path, (bytes, bytearray)) else str(buffer_or_path)
        self.program = Runtime.get().load_program(self._source)
        self.method = self.program.load_method(method)

    def execute(self, inputs):
        return self.method.execute(list(inputs))


def load_method(buffer_or_path, method: str = "forward") -> LoadedMethod:
    """Load a method with the ExecuTorch runtime (in-process)."""
    return LoadedMethod(buffer_or_path, method)
