"""Where the step's time goes: each block of the streaming step exported alone, fp32 and int8, timed.

ETDump needs a source-built runtime, so instead every block (STFT analysis, power-law
compression, each far / mic encoder block, AlignBlock, GRU bottleneck, each decoder block, CCM,
overlap-add synthesis) becomes its own one-method program, fed the inputs it saw while the whole step
streamed a test signal, and timed with ``executorch.runtime`` on one thread. Also timed in the same run:
the whole step (float eager, fp32 .pte, int8 .pte) and an empty program with as many inputs (the cost
of one ``execute`` call from Python), and with the same state bytes packed into one tensor.

int8: the whole step is the program `pocketvqe build` ships (:func:`pocketvqe.quant.int8_reference`,
the config's recipe). Each block alone is quantized with the recipe's quantizer choices (observer,
per-channel weights, fp32 signal processing), calibrated on the first ``calib`` frames the block saw;
the recipe's per-module choices (``keep_float``, ``dynamic``) name modules of the whole step, so a
block program alone is all static int8.

    python -m pocketvqe.device_tests.profile_step --config dvqe-s16 [--iters 2000] [--json out.json]

>>> rows = profile(ProfileConfig(config="ns-s16", iters=200))          # doctest: +SKIP
>>> print(format_table(rows))                                          # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from executorch.devtools.backend_debug import get_delegation_info
from torch import nn
from torch.utils import _pytree as pytree
from tqdm import tqdm

from pocketvqe.device_tests.targets.host import _threadpool
from pocketvqe.errors import PocketVQEError
from pocketvqe.export import export_program
from pocketvqe.export.lower import (
    load_method,
    lower,
    rewrite_for_delegation,
    to_buffer,
    undelegated_compute_ops,
)
from pocketvqe.fileio import atomic_write_text
from pocketvqe.kernels import apply_ccm
from pocketvqe.models import get_config
from pocketvqe.models.checkpoint import init_checkpoint, load_checkpoint
from pocketvqe.models.deepvqe import compress
from pocketvqe.models.step import StreamStep, capture
from pocketvqe.quant import PTQConfig, int8_reference, ptq_quantizer, quantize_static, recommended_ptq

DSP_BLOCKS = ("stft_analysis", "compress_mic", "compress_far", "ccm", "synthesis")     # fp32 in int8 programs (float_dsp)


@dataclass(frozen=True)
class ProfileConfig:
    """config: model config name; ckpt: checkpoint path (default: seeded random init with randomized
    BatchNorm statistics); iters: timed calls per program after ``warmup``; frames: hops of the test
    signal streamed to collect block inputs (the first ``calib`` also calibrate int8); quant: which
    variants to profile; blocks: only these block names (empty: all); whole / per_block: time the
    whole step / the blocks."""

    config: str = "dvqe-s16"
    ckpt: str | None = None
    iters: int = 2000
    warmup: int = 100
    frames: int = 64
    calib: int = 48
    quant: tuple[str, ...] = ("fp32", "int8")
    blocks: tuple[str, ...] = ()
    whole: bool = True
    per_block: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.iters < 10 or self.warmup < 0:
            raise PocketVQEError(f"ProfileConfig: iters={self.iters} must be >= 10 and warmup >= 0")
        if not 1 <= self.calib <= self.frames:
            raise PocketVQEError(f"ProfileConfig: calib={self.calib} must be in [1, frames={self.frames}]")
        bad = set(self.quant) - {"fp32", "int8"}
        if bad or not self.quant:
            raise PocketVQEError(f"ProfileConfig: quant {sorted(bad)} unknown: choose from fp32, int8")


class BlockProgram(nn.Module):
    """``fn(*args)`` with its (nested, partly ``None``) arguments flattened into a list of tensors."""

    def __init__(self, fn: Callable, example_args: tuple, owner: nn.Module | None = None):
        super().__init__()
        self.fn, self.owner = fn, owner                 # owner: registers the block's parameters
        leaves, self.spec = pytree.tree_flatten(example_args)
        self.n_leaves = len(leaves)
        self.idx = [i for i, t in enumerate(leaves) if isinstance(t, torch.Tensor)]

    def flatten(self, args: tuple) -> list[torch.Tensor]:
        leaves = pytree.tree_leaves(args)
        return [leaves[i] for i in self.idx]

    def forward(self, *tensors):
        leaves = [None] * self.n_leaves
        for i, t in zip(self.idx, tensors):
            leaves[i] = t
        out = self.fn(*pytree.tree_unflatten(leaves, self.spec))
        return tuple(t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor))


def speech_echo_signal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Speech-like mic (harmonics with a pitch glide, bursts, noise) and a far end that echoes into it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (np.sin(2 * np.pi * 2.5 * t) > -0.2)
    far = 0.05 * rng.standard_normal(n)
    mic = 0.1 * voiced + 0.01 * rng.standard_normal(n) + 0.5 * np.concatenate([np.zeros(40), far[:-40]])
    return mic.astype(np.float32), far.astype(np.float32)


def _canonical(x: torch.Tensor) -> torch.Tensor:
    """A copy with row-major strides (also in size-1 dims): the runtime refuses or misreads others."""
    return torch.empty(x.shape, dtype=x.dtype).copy_(x)


def collect_blocks(enh, frames: int, seed: int) -> dict[str, tuple[Callable, nn.Module | None, list[tuple]]]:
    """Stream ``frames`` hops through ``enh`` -> {block name: (fn, owner module, [args per hop])}."""
    cfg, net = enh.cfg, enh.net
    blocks: dict[str, tuple[Callable, nn.Module | None, list[tuple]]] = {}

    def add(name, fn, owner, args):     # fresh copies with canonical strides: the runtime misreads a view's
        args = pytree.tree_map(lambda a: _canonical(a) if isinstance(a, torch.Tensor) else a, args)
        blocks.setdefault(name, (fn, owner, []))[2].append(args)

    hooks = []
    modules = [(f"far{i}", b) for i, b in enumerate(net.far)] + [(f"mic{i}", b) for i, b in enumerate(net.mic)]
    modules += ([("align", net.align)] if net.align is not None else []) + [("bottleneck", net.bottleneck)]
    modules += [(f"dec{i}", b) for i, b in enumerate(net.dec)]
    for name, mod in modules:
        hooks.append(mod.register_forward_pre_hook(
            lambda m, args, name=name: add(name, m, m, args)))
    last_dec = {}
    hooks.append(net.dec[-1].register_forward_hook(lambda m, a, out: last_dec.__setitem__("mask", out[0])))
    mic, far = speech_echo_signal(frames * cfg.hop, seed)
    state, hop, p = enh.init_state(1), cfg.hop, cfg.compress
    try:
        with torch.no_grad():
            for t in range(frames):
                m = torch.from_numpy(mic[t * hop:(t + 1) * hop]).reshape(1, hop)
                f = torch.from_numpy(far[t * hop:(t + 1) * hop]).reshape(1, hop) if cfg.has_far else None
                add("stft_analysis", enh.stft.analysis, enh.stft, (m, state.mic_stft))
                mic_spec, _ = enh.stft.analysis(m, state.mic_stft)
                far_spec = enh.stft.analysis(f, state.far_stft)[0] if cfg.has_far else None
                add("compress_mic", lambda a: compress(a, p), None, (mic_spec,))
                if cfg.has_far:
                    add("compress_far", lambda a: compress(a, p), None, (far_spec,))
                speaker = torch.zeros(1, enh.speaker_dim) if cfg.personalized else None
                y, new_state = enh(m, f, state, speaker)
                add("ccm", apply_ccm, None, (last_dec["mask"], mic_spec, state.net.ccm))
                out_spec = apply_ccm(last_dec["mask"], mic_spec, state.net.ccm)[0]
                add("synthesis", enh.stft.synthesis, enh.stft, (out_spec, state.ola))
                state = new_state
    finally:
        for h in hooks:
            h.remove()
    order = ["stft_analysis", "compress_mic", *(["compress_far"] if cfg.has_far else []), *[n for n, _ in modules[:len(net.far)]],
             *[n for n, _ in modules[len(net.far):]], "ccm", "synthesis"]
    if net.align is not None:       # the AlignBlock runs between mic blocks align_at - 1 and align_at
        order.remove("align")
        order.insert(order.index(f"mic{cfg.align_at}"), "align")
    return {n: blocks[n] for n in order}


def _info(edge) -> dict:
    info = get_delegation_info(edge.exported_program().graph_module)
    ops = {op: s.delegated for op, s in info.delegation_by_operator.items() if s.delegated}
    return {"nodes": info.num_delegated_nodes, "subgraphs": info.num_delegated_subgraphs,
            "undelegated": sorted(set(undelegated_compute_ops(edge))), "ops": ops}


def _lower_buffer(ep) -> tuple[bytes, dict]:

    edge = lower(rewrite_for_delegation(ep))
    return to_buffer(edge), _info(edge)


def build_program(module: nn.Module, calib: Sequence[tuple], quant: str, float_ops: bool, recipe: PTQConfig
                  ) -> tuple[bytes, dict]:
    """Export ``module`` (fp32, or int8 PTQ calibrated on ``calib`` unless ``float_ops``) -> (.pte bytes, info)."""
    ep = capture(module, calib[0])
    if quant == "int8" and not float_ops:       # the recipe's choices; module names (keep_float, dynamic) are the step's
        gm = quantize_static(ep, calib, ptq_quantizer(recipe, (), ()))
        ep = capture(gm, calib[0])
    return _lower_buffer(ep)


def time_method(method, inputs: list[torch.Tensor], iters: int, warmup: int) -> np.ndarray:
    """Per-call latency (us) of ``method.execute(inputs)``, same inputs every call."""
    for _ in range(warmup):
        method.execute(inputs)
    out = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter_ns()
        method.execute(inputs)
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


class _Eager:
    """A PyTorch module behind the ``execute(inputs)`` call of a loaded method."""

    def __init__(self, module: nn.Module):
        self.module = module

    def execute(self, inputs):
        return self.module(*inputs)


class _Identity(nn.Module):
    def forward(self, *xs):
        return tuple(x + 0.0 for x in xs)


def _enhancer(cfg: ProfileConfig):
    if cfg.ckpt:
        return load_checkpoint(cfg.ckpt, expect=cfg.config)[0]
    return init_checkpoint(get_config(cfg.config), cfg.seed, bn_stats=True)     # a trained model's BN stats are not 0/1


def _step_rows(enh, cfg: ProfileConfig, bar) -> list[dict]:
    """The whole step: float eager, fp32 .pte, int8 .pte (build's PTQ recipe), an empty program."""
    step = StreamStep(enh).eval()
    mic, far = speech_echo_signal(cfg.frames * enh.cfg.hop, cfg.seed)
    hop, calib, state = enh.cfg.hop, [], step.init_state()
    with torch.no_grad():
        for t in range(cfg.frames):
            sig = [torch.from_numpy(mic[t * hop:(t + 1) * hop])]
            sig += [torch.from_numpy(far[t * hop:(t + 1) * hop])] if enh.cfg.has_far else []
            sig += [torch.zeros(enh.speaker_dim)] if enh.cfg.personalized else []
            calib.append((*sig, *state))
            state = list(step(*sig, *state)[1:])
    inputs = [_canonical(x) for x in calib[-1]]
    rows = []
    with torch.no_grad():
        rows.append({"block": "STEP float-eager", "quant": "fp32", "nodes": None,
                     "us": time_method(_Eager(step), inputs, max(cfg.iters // 4, 10), cfg.warmup // 4)})
    bar.update(1)
    for quant in cfg.quant:        # the programs `pocketvqe build` ships: the same export of the same int8 reference
        prog = export_program(enh, int8_reference(enh) if quant == "int8" else None)
        buf, info = prog.buffer, _info(lower(rewrite_for_delegation(capture(prog.reference, step.example_inputs()))))
        rows.append({"block": f"STEP {quant}-pte", "quant": quant, **info,
                     "us": time_method(load_method(buf), inputs, cfg.iters, cfg.warmup)})
        bar.update(1)
    ident = _Identity()
    buf, info = _lower_buffer(capture(ident, [torch.zeros_like(x) for x in inputs]))
    rows.append({"block": f"empty program, {len(inputs)} inputs", "quant": "fp32", **info,
                 "us": time_method(load_method(buf), inputs, cfg.iters, cfg.warmup)})
    bar.update(1)
    n_sig = len(inputs) - len(step.state_names)          # the same bytes, the state packed in one tensor
    packed = inputs[:n_sig] + [torch.cat([x.reshape(-1) for x in inputs[n_sig:]])]
    buf, info = _lower_buffer(capture(ident, [torch.zeros_like(x) for x in packed]))
    rows.append({"block": f"empty program, state packed ({len(packed)} inputs)", "quant": "fp32", **info,
                 "us": time_method(load_method(buf), packed, cfg.iters, cfg.warmup)})
    bar.update(1)
    return rows


def profile(cfg: ProfileConfig) -> list[dict]:
    """Per-block rows ``{block, quant, nodes, subgraphs, ops, us (array)}``, then the whole-step rows."""

    torch.set_num_threads(1)
    enh = _enhancer(cfg)
    blocks = collect_blocks(enh, cfg.frames, cfg.seed) if cfg.per_block else {}
    if cfg.blocks:
        unknown = set(cfg.blocks) - set(blocks)
        if unknown:
            raise PocketVQEError(f"unknown blocks {sorted(unknown)}: choose from {', '.join(blocks)}")
        blocks = {k: v for k, v in blocks.items() if k in cfg.blocks}
    recipe = recommended_ptq(cfg.config)
    rows = []
    n_steps = len(blocks) * len(cfg.quant) + (3 + len(cfg.quant) if cfg.whole else 0)
    with _threadpool(1), tqdm(total=n_steps, desc="profile", unit="program", file=sys.stderr) as bar:
        for name, (fn, owner, args) in blocks.items():
            module = BlockProgram(fn, args[0], owner).eval()
            calib = [tuple(module.flatten(a)) for a in args]
            for quant in cfg.quant:
                bar.set_postfix_str(f"{name} {quant}")
                buf, info = build_program(module, calib[:cfg.calib], quant, name in DSP_BLOCKS, recipe)
                us = time_method(load_method(buf), list(calib[-1]), cfg.iters, cfg.warmup)
                rows.append({"block": name, "quant": quant, **info, "us": us})
                bar.update(1)
        if cfg.whole:
            rows += _step_rows(enh, cfg, bar)
    return rows


def format_table(rows: list[dict]) -> str:
    """Block | per variant: p50 us, min us, delegated nodes; then the sums over the blocks.
    (min is the better comparison on a busy machine: p50 includes time-slicing by other processes.)"""
    by = {}
    for r in rows:
        by.setdefault(r["block"], {})[r["quant"]] = r
    quants = [q for q in ("fp32", "int8") if any(q in v for v in by.values())]
    head = "| block | " + " | ".join(f"{q} p50 us | {q} min us | {q} nodes" for q in quants) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(quants))]
    sums = {q: [0.0, 0.0, 0] for q in quants}
    for name, v in by.items():
        cells = []
        for q in quants:
            r = v.get(q)
            if r is None:
                cells += ["", "", ""]
                continue
            p50, low = float(np.median(r["us"])), float(np.min(r["us"]))
            cells += [f"{p50:.1f}", f"{low:.1f}", "" if r.get("nodes") is None else str(r["nodes"])]
            if not name.startswith(("STEP", "empty")):
                sums[q][0] += p50
                sums[q][1] += low
                sums[q][2] += r.get("nodes") or 0
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if any(not name.startswith(("STEP", "empty")) for name in by):
        lines.append("| sum of blocks | " + " | ".join(f"{a:.1f} | {b:.1f} | {n}" for a, b, n in sums.values()) + " |")
    return "\n".join(lines)


def to_json(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        us = np.asarray(r["us"])
        out.append({**{k: v for k, v in r.items() if k != "us"}, "p50_us": float(np.median(us)),
                    "p90_us": float(np.percentile(us, 90)), "min_us": float(us.min()), "calls": int(us.size)})
    return out


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    p = argparse.ArgumentParser(prog="python -m pocketvqe.device_tests.profile_step", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="dvqe-s16")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: seeded random init)")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--quant", default="fp32,int8", help="comma list of fp32, int8")
    p.add_argument("--blocks", default="", help="comma list of block names (default: all)")
    p.add_argument("--no-whole", action="store_true", help="skip the whole-step rows")
    p.add_argument("--whole-only", action="store_true", help="only the whole-step rows")
    p.add_argument("--ops", action="store_true", help="also print the delegated ops of each block")
    p.add_argument("--json", default=None, help="write the rows (p50/p90/min us, nodes, ops) here")
    a = p.parse_args(argv)
    cfg = ProfileConfig(config=a.config, ckpt=a.ckpt, iters=a.iters, warmup=a.warmup,
                        quant=tuple(q for q in a.quant.split(",") if q),
                        blocks=tuple(b for b in a.blocks.split(",") if b), whole=not a.no_whole, per_block=not a.whole_only)
    try:
        rows = profile(cfg)
    except PocketVQEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{cfg.config}: p50 over {cfg.iters} calls, 1 thread, executorch.runtime (host)")
    print(format_table(rows))
    if a.ops:
        for r in rows:
            if r.get("ops"):
                print(f"{r['block']} {r['quant']}: {dict(sorted(r['ops'].items(), key=lambda kv: -kv[1]))}")
    if a.json:
        atomic_write_text(a.json, json.dumps({"config": dataclasses.asdict(cfg), "rows": to_json(rows)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
