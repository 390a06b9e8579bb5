"""Which layer loses the sound: per-layer SQNR of the int8 step against the float step, and a
greedy mixed-precision proposal (the smallest ``keep_float`` set found that meets a target).

Both graphs come from one export of the step: torchao's numeric debugger
(``prepare_for_propagation_comparison``) puts an ``OutputLogger`` after every node of the float
graph and of the converted int8 graph, each tagged with the node it descends from
(``NodeSourceDebugInfo``); ``compare_results`` pairs them. Each model streams the calibration
audio with its own state (errors propagate, as on the device); per node we accumulate
SQNR = 10 log10(sum ref^2 / sum (ref - int8)^2) over all frames, and the SQNR a node *adds*
(the worst SQNR of its inputs minus its own: the damage done by this layer's quantization).
Nodes map back to modules through ``nn_module_stack``.

>>> rep = sensitivity(enhancer, PTQConfig(calib_clips=4), calib)        # doctest: +SKIP
>>> print(format_table(rep, top=10))                                    # doctest: +SKIP
>>> prop = propose_keep_float(enhancer, PTQConfig(), calib, target_db=25.0, report=rep)   # doctest: +SKIP
>>> prop.keep_float, prop.sqnr_db                                        # doctest: +SKIP
(('net.dec.3.subpix.conv',), 26.1)
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torchao.quantization.pt2e import compare_results, extract_results_from_loggers, prepare_for_propagation_comparison
from torchao.quantization.pt2e._numeric_debugger import OutputLogger
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
from tqdm import tqdm

from pocketvqe.models.step import StreamStep
from pocketvqe.signals import snr_db as sqnr_db

from .calibration import check_calibration, clip_bounds
from .config import PTQConfig
from .ptq import convert_ptq, export_step, n_signals, quantize, resolve_keep_float, stream
from .xnnpack import DSP_MODULES, ptq_quantizer

LAYER_OPS = ("conv2d", "linear", "bmm", "matmul")      # ops with weights or a matmul: keep_float candidates


@dataclass(frozen=True)
class LayerSQNR:
    node: str               # node name in the float graph
    module: str             # owning module (Enhancer names, e.g. net.dec.3.subpix.conv)
    op: str                 # aten op
    sqnr_db: float          # int8 vs float at this node's output (errors from upstream included)
    added_db: float         # worst input SQNR minus own SQNR (>0: this layer adds noise)
    quantized: bool         # the node's inputs are dequantized int8 in the int8 graph


@dataclass
class SensitivityReport:
    model: str
    e2e_sqnr_db: float
    frames: int
    layers: list[LayerSQNR]
    keep_float: tuple[str, ...] = ()
    seconds: float = 0.0

    def ranked(self, layers_only: bool = True) -> list[LayerSQNR]:
        """Worst first: lowest SQNR, then most added noise; ``layers_only``: the network's conv /
        linear / matmul layers (not the fp32 DSP around it)."""
        rows = [r for r in self.layers if not layers_only or (any(op in r.op for op in LAYER_OPS)
                                                              and not _is_dsp(r.module))]
        return sorted(rows, key=lambda r: (r.sqnr_db, -(r.added_db if math.isfinite(r.added_db) else 0.0)))

    def to_dict(self) -> dict:
        return {"model": self.model, "e2e_sqnr_db": self.e2e_sqnr_db, "frames": self.frames,
                "keep_float": list(self.keep_float), "seconds": self.seconds,
                "layers": [dataclasses.asdict(r) for r in self.ranked(layers_only=False)]}


@dataclass
class Proposal:
    keep_float: tuple[str, ...]
    sqnr_db: float
    baseline_db: float
    target_db: float
    met: bool
    trials: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _is_dsp(module: str) -> bool:
    """Ops owned by the Enhancer / STFT / DeepVQE top level: the signal processing around the network."""
    return module in {m[len("enhancer."):] if m.startswith("enhancer.") else m for m in DSP_MODULES} | {"enhancer"}


def _module_of(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    name = list(stack.values())[-1][0] if stack else ""
    name = name[len("L['self']."):] if name.startswith("L['self'].") else name
    return name[len("enhancer."):] if name.startswith("enhancer.") else name


class _Acc:
    __slots__ = ("sig", "err")

    def __init__(self):
        self.sig, self.err = 0.0, 0.0

    def db(self) -> float:
        if self.err == 0:
            return math.inf
        if not math.isfinite(self.err) or self.sig <= 0:
            return -math.inf if self.err > 0 else math.nan
        return 10 * math.log10(self.sig / self.err)


def _loggers(gm) -> dict:
    return {name: m for name, m in gm.named_children() if isinstance(m, OutputLogger)}


def _pair_loggers(ref_gm, act_gm) -> list[tuple[str, object, object]]:
    """[(ref node name, ref logger, int8 logger)] for nodes present in both graphs with the same op."""
    ref_by = {m.debug_info: (n, m) for n, m in _loggers(ref_gm).items()}
    act_by: dict = {}
    ref_ops = {n.name: str(n.target) for n in ref_gm.graph.nodes if n.op == "call_function"}
    act_ops = {n.name: str(n.target) for n in act_gm.graph.nodes if n.op == "call_function"}
    for n, m in _loggers(act_gm).items():
        # several int8 nodes descend from one float node (quantize/dequantize around it): keep the
        # one computing the same op (its output is float, comparable to the float node's)
        ref = ref_by.get(m.debug_info)
        if ref is not None and act_ops.get(m.node_name) == ref_ops.get(ref[1].node_name):
            act_by[m.debug_info] = m
    # torchao pairs the records (and checks shapes) on the first streamed frame
    summaries = compare_results(extract_results_from_loggers(ref_gm), {
        k: (m.node_name, m.nn_module_stack, m.stats) for k, m in act_by.items()})
    pairs = [(ref_by[k][1].node_name, ref_by[k][1], act_by[k]) for k in summaries]
    return _after_folded_bn(ref_gm, act_gm, pairs)


def _after_folded_bn(ref_gm, act_gm, pairs):
    """PTQ folds a BatchNorm that directly follows a conv into the conv's weights: compare such an
    int8 conv with the float BatchNorm's output (the float conv's own output is pre-BN)."""
    mods = dict(ref_gm.named_children())
    act_bn = {n.name for n in act_gm.graph.nodes if "batch_norm" in str(n.target)}
    logger_of = {}
    for n in ref_gm.graph.nodes:
        if n.op == "call_module" and isinstance(mods.get(n.target), OutputLogger):
            logger_of[n.args[0].name] = (n, mods[n.target])
    out = []
    for name, ref_log, act_log in pairs:
        node = logger_of.get(name, (None, None))[0]
        if node is not None and "conv" in str(node.args[0].target) and not act_bn & {name}:
            bns = [u for u in node.users if "batch_norm" in str(u.target)]
            if len(bns) == 1 and bns[0].name in logger_of:
                ref_log = logger_of[bns[0].name][1]
        out.append((name, ref_log, act_log))
    return out


def _input_nodes(ref_gm) -> dict[str, list[str]]:
    """Float node name -> names of the logged float nodes feeding it."""
    mods = dict(ref_gm.named_children())
    out = {}
    for n in ref_gm.graph.nodes:
        if n.op != "call_module" or not isinstance(mods.get(n.target), OutputLogger):
            continue
        src = n.args[0]
        feeds = []
        for a in src.all_input_nodes:
            if a.op == "call_module" and isinstance(mods.get(a.target), OutputLogger):
                feeds.append(a.args[0].name)
        out[src.name] = feeds
    return out


def _quantized_inputs(act_gm) -> set[str]:
    """int8-graph node names with a dequantized input (ops computed on int8 data); inputs pass
    through the numeric debugger's loggers."""
    def src(a):
        return a.args[0] if a.op == "call_module" and a.args and isinstance(a.args[0], torch.fx.Node) else a
    out = set()
    for n in act_gm.graph.nodes:
        if n.op == "call_function" and any("dequantize" in str(src(a).target) for a in n.all_input_nodes
                                           if src(a).op == "call_function"):
            out.add(n.name)
    return out


def sensitivity(enhancer, config: PTQConfig | None, calib: Sequence[Sequence[torch.Tensor]],
                progress: bool = False) -> SensitivityReport:
    """PTQ ``enhancer`` with ``config`` on ``calib`` and measure every node on the same audio."""

    t0 = time.perf_counter()
    config = config or PTQConfig()
    calib = check_calibration(calib, n_signals(enhancer.cfg), enhancer.cfg.hop)
    keep = resolve_keep_float(enhancer, config.keep_float)
    dynamic = resolve_keep_float(enhancer, config.dynamic, "dynamic")
    step, ep = export_step(enhancer)
    init = step.init_state()
    prepared = prepare_pt2e(ep.module(), ptq_quantizer(config, keep, dynamic))
    bar = tqdm(total=3 * len(calib), desc="quant-report", unit="frame", disable=not progress, leave=False,
               mininterval=1.0)
    stream(prepared, calib, init, bar)
    q = convert_ptq(prepared)
    ref_gm = prepare_for_propagation_comparison(ep.module())
    act_gm = prepare_for_propagation_comparison(q)
    ref_logs, act_logs = _loggers(ref_gm), _loggers(act_gm)
    pairs, accs, ys_ref, ys_act = None, {}, [], []

    def collect():
        for name, r, a in pairs:
            if r.stats and a.stats and isinstance(r.stats[-1], torch.Tensor) and isinstance(a.stats[-1], torch.Tensor):
                x, y = r.stats[-1].double(), a.stats[-1].double()
                if x.shape == y.shape:
                    accs[name].sig += float((x * x).sum())
                    accs[name].err += float(((x - y) ** 2).sum())
        for m in list(ref_logs.values()) + list(act_logs.values()):
            m.stats.clear()

    # both graphs stream the audio in lock step, each with its own state; memory stays flat
    with torch.no_grad():
        for a, b in clip_bounds(calib):
            s_ref, s_act = [s.clone() for s in init], [s.clone() for s in init]
            for i in range(a, b):
                r = ref_gm(*calib[i], *s_ref)
                o = act_gm(*calib[i], *s_act)
                s_ref, s_act = list(r[1:]), list(o[1:])
                ys_ref.append(r[0])
                ys_act.append(o[0])
                if pairs is None:              # after the first frame: pair the loggers (torchao)
                    pairs = _pair_loggers(ref_gm, act_gm)
                    accs = {name: _Acc() for name, _, _ in pairs}
                collect()
                bar.update(2)
    bar.close()
    e2e = sqnr_db(torch.cat(ys_ref), torch.cat(ys_act))
    ref_nodes = {n.name: n for n in ref_gm.graph.nodes}
    feeds = _input_nodes(ref_gm)
    qin = _quantized_inputs(act_gm)
    act_name = {name: a.node_name for name, _, a in pairs}
    layers = []
    for name, _, _ in pairs:
        own = accs[name].db()
        ins = [accs[f].db() for f in feeds.get(name, []) if f in accs]
        worst_in = min(ins) if ins else math.inf
        # nan: not measurable (inputs are graph inputs, or an exact side)
        added = (worst_in - own) if math.isfinite(worst_in) and math.isfinite(own) else math.nan
        n = ref_nodes[name]
        layers.append(LayerSQNR(name, _module_of(n), str(n.target), own, added, act_name[name] in qin))
    return SensitivityReport(enhancer.cfg.name, e2e, len(calib), layers,
                             tuple(k[len("enhancer."):] for k in keep), round(time.perf_counter() - t0, 2))


def e2e_sqnr(enhancer, config: PTQConfig, calib, eval_frames=None, float_out: torch.Tensor | None = None
             ) -> tuple[float, torch.Tensor]:
    """End-to-end SQNR (dB) of the PTQ step's enhanced output vs the float step's, streamed over
    ``eval_frames`` (default: the calibration frames). Returns (dB, float output for reuse)."""
    frames = check_calibration(eval_frames if eval_frames is not None else calib, n_signals(enhancer.cfg),
                               enhancer.cfg.hop)
    gm = quantize(enhancer, config, calib, progress=False)
    step = StreamStep(enhancer.eval()).eval()
    if float_out is None:
        float_out = torch.cat(stream(step, frames, step.init_state()))
    y = torch.cat(stream(gm, frames, step.init_state()))
    return sqnr_db(float_out, y), float_out


def candidates(report: SensitivityReport) -> list[str]:
    """keep_float candidates, most damaging first: modules of weighted/matmul layers ranked by the
    SQNR they add, then by their own SQNR."""
    # the DSP ops (STFT, compression, CCM) belong to whole-model modules: never propose those
    rows = [r for r in report.layers if any(op in r.op for op in LAYER_OPS) and r.quantized and not _is_dsp(r.module)]
    rows.sort(key=lambda r: (-(r.added_db if math.isfinite(r.added_db) else 0.0), r.sqnr_db))
    return list(dict.fromkeys(r.module for r in rows))


def propose_keep_float(enhancer, config: PTQConfig | None, calib, target_db: float,
                       report: SensitivityReport | None = None, max_trials: int = 8,
                       eval_frames=None, progress: bool = False) -> Proposal:
    """Greedy mixed precision: try candidates (most damaging first), keep each that raises the
    end-to-end SQNR, stop when ``target_db`` is met or after ``max_trials`` re-quantizations."""
    config = config or PTQConfig()
    report = report or sensitivity(enhancer, config, calib)
    base, float_out = e2e_sqnr(enhancer, config, calib, eval_frames)
    keep, best, trials = list(config.keep_float), base, []
    todo = [c for c in candidates(report) if c not in keep]
    bar = tqdm(total=min(max_trials, len(todo)), desc="keep_float search", unit="trial", disable=not progress,
               leave=False)
    for cand in todo[:max_trials]:
        if best >= target_db:
            break
        trial = dataclasses.replace(config, keep_float=tuple(keep + [cand]))
        db, _ = e2e_sqnr(enhancer, trial, calib, eval_frames, float_out)
        accepted = db > best
        trials.append({"module": cand, "sqnr_db": db, "accepted": accepted})
        if accepted:
            keep.append(cand)
            best = db
        bar.update(1)
    bar.close()
    return Proposal(tuple(keep), best, base, target_db, best >= target_db, trials)


def format_table(report: SensitivityReport, top: int = 10) -> str:
    lines = [f"{report.model}: end-to-end SQNR {report.e2e_sqnr_db:.1f} dB over {report.frames} frames"
             + (f" (keep_float: {', '.join(report.keep_float)})" if report.keep_float else ""),
             "| rank | module | op | int8 in | SQNR (dB) | added (dB) |", "|---:|---|---|---|---:|---:|"]
    for i, r in enumerate(report.ranked()[:top], 1):
        added = f"{r.added_db:+.1f}" if math.isfinite(r.added_db) else "n/a"
        lines.append(f"| {i} | {r.module or '-'} | {r.op.replace('aten.', '')} | {'yes' if r.quantized else 'fp32'} | "
                     f"{r.sqnr_db:.1f} | {added} |")
    return "\n".join(lines)
