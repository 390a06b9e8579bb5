"""Lowering a captured step (float, or the int8 reference ``quant`` made) to an ExecuTorch program.

Quantization is not a lowering flag: the int8 GraphModule comes from :mod:`pocketvqe.quant`, and
this module only partitions to XNNPACK, emits and loads.

>>> edge = lower({"forward": rewrite_for_delegation(capture(step, step.example_inputs()))})
>>> buffer = to_buffer(edge)                                    # the .pte bytes
>>> y, *state = load_method(buffer).execute(step.example_inputs())
"""
from __future__ import annotations

import os

import torch
from executorch.backends.xnnpack._passes import channels_last_tagged_reshape_pass as _nhwc
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.backends.xnnpack.utils.quant_utils import is_dynamic_qdq
from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
from executorch.exir.dialects._ops import ops as exir_ops
from executorch.exir.operator.util import _QUANT_PRIMITIVES
from executorch.exir.passes import MemoryPlanningPass
from executorch.exir.passes import constant_prop_pass as cp
from executorch.runtime import Runtime

from pocketvqe.fileio import atomic_write_bytes
from pocketvqe.quiet import quiet_libraries

COMPUTE_OPS = ("convolution", "linear", "addmm", "mm", "bmm", "matmul", "mul", "add", "sub", "sigmoid",
               "tanh", "exp", "log", "softmax", "clamp", "rsqrt", "div", "cat")


def _fix_dynamic_nhwc() -> None:
    """Patch ExecuTorch's ``ChannelsLastTaggedReshapePass.input_to_nhwc`` (1.4.1, still in 1.5.1) for dynamically quantized convs.

    To give a dynamically quantized conv (dq <- q <- x, scales from choose_qparams(x)) an NHWC input,
    the pass walks back from dq along ``args[0]`` until it meets a node whose first argument is not a
    node, puts the NHWC copy there and rewires *every* user of that node. It should stop at ``x``: when
    ``x`` is not a ``cat`` (a decoder's skip conv reads the encoder's output) the walk runs up the whole
    network to an encoder's state ``cat``, rewires it, and the program fails to load ("Failed to create
    cat2 node ... xnn_status_invalid_parameter"). Here the copy goes right after ``x`` and only this
    input's quantization chain (choose_qparams and quantize) reads it."""
    mod = _nhwc
    P = mod.ChannelsLastTaggedReshapePass
    if getattr(P.input_to_nhwc, "_pocketvqe_fixed", False):
        return
    original = P.input_to_nhwc

    def input_to_nhwc(self, graph_module, input_node, target_node):
        if not is_dynamic_qdq(input_node):
            return original(self, graph_module, input_node, target_node)
        if P.is_nhwc_node(input_node) or self.input_dim_order(input_node, mod.InputDimOrder.NHWC):
            return
        q = input_node.args[0]                                   # dq <- q <- x
        x = q.args[0]
        chain = [q] + [n.all_input_nodes[0] for n in q.all_input_nodes[1:]]     # q and its choose_qparams
        copy = x.meta.get(P.PARTNER_NODE)
        if copy is None:
            with graph_module.graph.inserting_after(x):
                copy = self.create_call_function_node(graph_module=graph_module, target=exir_ops.edge.aten._to_copy.default,
                                                      args=(x,), memory_format=torch.channels_last)
            P.mark_as_nhwc_node(copy)
            self.make_partners(x, copy)
        for n in chain:
            n.replace_input_with(x, copy)

    input_to_nhwc._pocketvqe_fixed = True
    P.input_to_nhwc = input_to_nhwc


def rewrite_for_delegation(ep: torch.export.ExportedProgram, fold_constants: bool = False) -> torch.export.ExportedProgram:
    """Rewrite ops XNNPACK does not take into equivalent ones it does (in place, returns ``ep``):
    ``unsqueeze`` -> ``view`` (a reshape), ``zeros_like(x)`` -> ``x * 0``; with ``fold_constants``,
    input-independent subgraphs (``zeros(...)`` and what is computed from them) become constants;
    quantize/dequantize ops are never folded (an int8 weight stays int8, not an fp32 constant)."""
    aten = torch.ops.aten
    changed = False
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target == aten.unsqueeze.default:
            node.target, node.args = aten.view.default, (node.args[0], list(node.meta["val"].shape))
            changed = True
        elif node.target == aten.zeros_like.default:
            node.target, node.args, node.kwargs = aten.mul.Tensor, (node.args[0], 0.0), {}
            changed = True
    if changed:
        ep.graph_module.recompile()
    if fold_constants:
        ep = cp.constant_prop_pass(ep, custom_skip_targets=cp._DEFAULT_SKIP_TARGETS | set(_QUANT_PRIMITIVES))
    return ep


def lower(ep: torch.export.ExportedProgram | dict[str, torch.export.ExportedProgram],
          constant_methods: dict | None = None, etrecord: bool = False):
    """to_edge_transform_and_lower with the XNNPACK partitioner -> EdgeProgramManager.

    ``ep`` may be a dict ``{method name: ExportedProgram}`` (a multi-method program); with
    ``etrecord`` the manager records what ``to_executorch().get_etrecord()`` returns."""
    quiet_libraries()
    _fix_dynamic_nhwc()
    return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()], constant_methods=constant_methods,
                                       generate_etrecord=etrecord)


def undelegated_compute_ops(edge) -> list[str]:
    """Compute ops left outside every delegate, over every method (empty list: fully delegated);
    ops of a method other than ``forward`` are named ``method:op``."""
    bad = []
    for method in sorted(edge.methods):
        gm = edge.exported_program(method).graph_module
        for node in gm.graph.nodes:
            if node.op != "call_function":
                continue
            name = str(node.target)
            if "delegate" in name or "getitem" in name or "alloc" in name:
                continue
            if any(op in name for op in COMPUTE_OPS) or "aten" in name:
                bad.append(name if method == "forward" else f"{method}:{name}")
    return bad


def backend_config():
    """How every pocketvqe program is emitted: inputs are not memory-planned, so ``execute`` reads
    the caller's buffers in place instead of copying each input into the method's arena first. For
    the step's ~170k floats of explicit state that copy was ~90 us of a ~300-400 us call (dvqe-s16,
    host). Every runner sets the inputs anyway (the Python runtime passes its tensors, ExecuTorch's
    ``executor_runner`` allocates buffers for inputs that are not planned); outputs stay planned."""
    return ExecutorchBackendConfig(memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False))


def to_executorch(edge):
    """EdgeProgramManager -> ExecutorchProgramManager (``.buffer`` is the .pte)."""
    with torch.no_grad():
        return edge.to_executorch(backend_config())


def to_buffer(edge) -> bytes:
    return to_executorch(edge).buffer


def save(buffer: bytes, path: str | os.PathLike) -> None:
    atomic_write_bytes(path, buffer)


class LoadedMethod:
    """A method of a loaded program. Holds the program and its bytes: the runtime does not copy
    a program given as bytes, so they must outlive the method (else: use-after-free)."""

    def __init__(self, buffer_or_path, method: str = "forward"):
        self._source = bytes(buffer_or_path) if isinstance(buffer_or_path, (bytes, bytearray)) else str(buffer_or_path)
        self.program = Runtime.get().load_program(self._source)
        self.method = self.program.load_method(method)

    def execute(self, inputs):
        return self.method.execute(list(inputs))


def load_method(buffer_or_path, method: str = "forward") -> LoadedMethod:
    """Load a method with the ExecuTorch runtime (in-process)."""
    return LoadedMethod(buffer_or_path, method)
