"""Quantization-aware fine-tuning (PT2E QAT), through the streaming step itself.

Why the step and not the offline (T-frame) Enhancer graph: the int8 program that ships is the
one-hop step, and QAT learns *its* fake-quant ranges. An exported T-frame graph unrolls the GRU
cell and the AlignBlock per frame, so each unrolled copy gets its own activation observer (T
scales for one layer) and the graph differs from the step (the AlignBlock's T>1 path has no bmm):
its ranges cannot be carried over to the step. Training through the step (BPTT over the clip,
state threaded frame by frame) trains exactly the graph, observers and state quantization that
``convert`` turns into the int8 GraphModule, with the same signature PTQ produces.

Recipe: export the step in train mode with a dynamic batch dimension, ``prepare_qat_pt2e`` with
the XNNPACK QAT quantizer, fine-tune with the training loss (complex compressed MSE on the
aligned output) on simulated clips (``pocketvqe.train`` data code), freeze BatchNorm statistics
(``move_exported_model_to_eval``: the step sees one frame at a time, so batch statistics would
be per-frame) and, optionally, observers; ``convert_pt2e`` folds BN; the batched graph is then
re-exported with the step's batch-1 signature. Under torchrun each rank trains its slice of the
global batch; gradients are averaged over ranks (all-reduce) and rank 0's observer/BN buffers are
broadcast after every step, as DDP does.

>>> qm = prepare_qat(enhancer, QATConfig(steps=200))                # doctest: +SKIP
>>> history = fine_tune(qm)                                          # loss curve  # doctest: +SKIP
>>> gm = convert(qm)                        # int8 step GraphModule, like quantize()  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.export import Dim
from torchao.quantization.pt2e import move_exported_model_to_eval
from torchao.quantization.pt2e.fake_quantize import disable_observer
from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
from tqdm import tqdm

from pocketvqe.errors import PocketVQEError
from pocketvqe.models.step import StreamStep, capture
from pocketvqe.quiet import quiet_libraries
from pocketvqe.train import CompressedSpectralLoss, TrainConfig, speaker_embedding
from pocketvqe.train import ddp as D
from pocketvqe.train.loop import enhance_aligned, make_loader

from .config import QATConfig
from .ptq import META_KEY, fold_decoder_bn, n_signals, resolve_keep_float
from .xnnpack import percentile_range, xnnpack_quantizer


class BatchStep(StreamStep):
    """StreamStep with a batch dimension: mic/far (B, hop), speaker (B, D), state (B, ...)."""

    def forward(self, *args: torch.Tensor):
        n_in = n_signals(self.cfg)
        mic = args[0]
        far = args[1] if self.cfg.has_far else None
        speaker = args[n_in - 1] if self.cfg.personalized else None
        y, state = self.enhancer(mic, far, self.unflatten_state(args[n_in:]), speaker)
        return (y, *self.flatten_state(state))


class _Unbatch(nn.Module):
    """The converted batched step with StreamStep's signature: mic[hop], far[hop], speaker[D], state."""

    def __init__(self, gm: nn.Module, n_in: int):
        super().__init__()
        self.gm, self.n_in = gm, n_in

    def forward(self, *args):
        sig = [a.reshape(1, -1) for a in args[:self.n_in]]
        y, *state = self.gm(*sig, *args[self.n_in:])
        return (y.reshape(-1), *state)


@dataclass
class QATModel:
    prepared: torch.fx.GraphModule      # the fake-quantized batched step (trainable)
    enhancer: nn.Module                 # the float model it started from (enrollment, shapes)
    config: QATConfig
    keep_float: tuple[str, ...]
    state_shapes: list[tuple[int, ...]]
    history: list[dict] = field(default_factory=list)
    bn_frozen: bool = False
    observers_frozen: bool = False
    ranges: dict | None = None          # init_ranges' summary (frames, percentile, fake quants set)
    env: object = None                  # the DistEnv fine_tune ran under (is_main: the rank that saves)

    @property
    def cfg(self):
        return self.enhancer.cfg


def prepare_qat(enhancer, config: QATConfig | None = None) -> QATModel:
    """Export the batched step of a copy of ``enhancer`` in train mode (dynamic batch) and insert
    fake quantization (XNNPACK QAT recipe)."""
    config = config or QATConfig()
    if not any(p.requires_grad for p in enhancer.parameters()):
        raise PocketVQEError(f"{enhancer.cfg.name} has no trainable parameters (all requires_grad=False): "
                             "QAT fine-tunes weights; unfreeze them (enhancer.requires_grad_(True)) or use PTQ")
    keep = resolve_keep_float(enhancer, config.keep_float)
    float_model = enhancer
    work = fold_decoder_bn(enhancer).train()      # as PTQ: the decoder BN after the sub-pixel reshape is folded
    step = BatchStep(work).train()
    B = 2
    n_in = n_signals(work.cfg)
    sig = [torch.zeros(B, work.cfg.hop) for _ in range(1 + work.cfg.has_far)]     # distinct: aliased inputs would merge
    if work.cfg.personalized:
        sig.append(torch.zeros(B, work.speaker_dim))
    state = [torch.zeros(B, *s[1:]) for s in step.state_shapes]
    batch = Dim("batch", min=1, max=4096)
    dyn = tuple({0: batch} for _ in range(n_in + len(state)))
    quiet_libraries()
    ep = torch.export.export(step, tuple(sig + state), dynamic_shapes=(dyn,), strict=False)   # forward(*args)
    prepared = prepare_qat_pt2e(ep.module(), xnnpack_quantizer(per_channel=config.per_channel, is_qat=True,
                                                               keep_float=keep, float_dsp=config.float_dsp))
    return QATModel(prepared, float_model, config, keep, [tuple(s) for s in step.state_shapes])


def _activation_fake_quants(prepared: torch.fx.GraphModule) -> dict[str, nn.Module]:
    """Name -> fake-quant module of every activation (per-tensor) range; weights are per-channel."""
    out = {}
    for name, m in prepared.named_modules():
        obs = getattr(m, "activation_post_process", None)
        if obs is not None and hasattr(m, "observer_enabled") and not isinstance(obs, PerChannelMinMaxObserver):
            out[name] = m
    return out


def init_ranges(qm: QATModel, batches, percentile: float, progress: bool = False, fixed: bool = True) -> dict:
    """Stream ``batches`` through the step with fake quantization off (float activations, as PTQ
    calibration sees them) and set every activation range to the ``percentile``-th percentile of the
    per-frame extremes; with ``fixed`` those ranges stay (else the moving averages carry on from
    them). Weights keep their per-channel observers."""

    _freeze(qm, 0)                                       # BN on running statistics, as in training
    fqs = _activation_fake_quants(qm.prepared)
    lows: dict[str, list] = {k: [] for k in fqs}
    highs: dict[str, list] = {k: [] for k in fqs}

    def hook(name):
        def record(_mod, args):
            x = args[0].detach()
            if not x.numel():
                return
            x = x.reshape(x.shape[0] if x.dim() > 1 else 1, -1)     # one extreme per frame of the batch
            lows[name].append(x.amin(1).float())
            highs[name].append(x.amax(1).float())
        return record
    handles = [m.register_forward_pre_hook(hook(k)) for k, m in fqs.items()]
    for m in fqs.values():
        m.fake_quant_enabled.fill_(0)
        m.observer_enabled.fill_(0)
    frames = 0
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc="QAT range init", unit="batch", disable=not progress, file=sys.stderr):
                frames += stream_batch(qm, batch["mic"], batch["far"], _speaker(qm, batch)).numel() // qm.cfg.hop
    finally:
        for h in handles:
            h.remove()
    for k, m in fqs.items():
        obs = m.activation_post_process
        if lows[k]:
            lo, hi = percentile_range(torch.cat(lows[k]).numpy(), torch.cat(highs[k]).numpy(), percentile)
            obs.min_val.resize_(()).fill_(lo)
            obs.max_val.resize_(()).fill_(hi)
            scale, zp = obs.calculate_qparams()
            m.scale.resize_(scale.shape).copy_(scale)
            m.zero_point.resize_(zp.shape).copy_(zp)
        m.fake_quant_enabled.fill_(1)
        m.observer_enabled.fill_(0 if fixed else 1)
    qm.ranges = {"frames": frames, "percentile": percentile, "fake_quants": len(fqs),
                 "set": sum(1 for k in fqs if lows[k]), "fixed": fixed}
    return qm.ranges


def _speaker(qm: QATModel, batch) -> torch.Tensor | None:
    """Host-side float enrollment of a personalized model's batch (fixed, no gradient)."""
    if not qm.cfg.personalized:
        return None
    with torch.no_grad():
        return speaker_embedding(qm.enhancer.eval(), batch["enroll"], batch["enroll_lengths"])


def _freeze(qm: QATModel, step: int) -> None:
    if not qm.bn_frozen and step >= qm.config.freeze_bn_after:
        move_exported_model_to_eval(qm.prepared)      # BN uses running statistics from here on
        qm.bn_frozen = True
    if not qm.observers_frozen and 0 <= qm.config.freeze_observers_after <= step:
        qm.prepared.apply(disable_observer)
        qm.observers_frozen = True


def stream_batch(qm: QATModel, mic: torch.Tensor, far: torch.Tensor | None, speaker: torch.Tensor | None
                 ) -> torch.Tensor:
    """mic/far (B, N) -> output (B, N) aligned to the input, through the fake-quantized step (BPTT)."""
    cfg = qm.cfg
    hop, delay = cfg.hop, cfg.algorithmic_latency_samples
    B, N = mic.shape
    total = N + delay
    total += (-total) % hop
    mic = nn.functional.pad(mic, (0, total - N))
    if cfg.has_far:
        far = nn.functional.pad(far, (0, total - N)) if far is not None else torch.zeros_like(mic)
    state = [torch.zeros(B, *s[1:]) for s in qm.state_shapes]
    ys = []
    for t in range(total // hop):
        sig = [mic[:, t * hop:(t + 1) * hop]]
        if cfg.has_far:
            sig.append(far[:, t * hop:(t + 1) * hop])
        if cfg.personalized:
            sig.append(speaker)
        y, *state = qm.prepared(*sig, *state)
        ys.append(y)
    return torch.cat(ys, dim=1)[:, delay:delay + N]


def _loss(qm: QATModel, loss_fn, out: torch.Tensor, batch, speaker) -> torch.Tensor:
    """The training loss against the clean target, the float model's output, or their mix
    (``QATConfig.distill``)."""
    w = qm.config.distill
    loss = loss_fn(out, batch["target"]) * (1.0 - w) if w < 1.0 else 0.0
    if w > 0.0:
        with torch.no_grad():
            teacher = enhance_aligned(qm.enhancer.eval(), batch["mic"], batch["far"] if qm.cfg.has_far else None,
                                      speaker)
        loss = loss + w * loss_fn(out, teacher)
    return loss


def _train_config(qm: QATModel):
    c = qm.config
    return TrainConfig(model=qm.cfg.name, steps=c.steps + c.init_batches, batch=c.batch, lr=c.lr, clip_seconds=c.clip_seconds,
                       scenarios=c.scenarios, data=c.data, seed=c.seed, workers=0, enroll_seconds=c.enroll_seconds,
                       ckpt_every=0, valid_every=0)


def _all_reduce_grads(env, params) -> None:
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])            # one collective per step
    dist.all_reduce(flat)
    flat /= env.world
    i = 0
    for p, g in zip(params, grads):
        p.grad = flat[i:i + g.numel()].view_as(p).clone()
        i += g.numel()


def fine_tune(qm: QATModel, progress: bool = True) -> list[dict]:
    """Fine-tune ``qm.prepared`` for ``config.steps`` steps (DDP-aware under torchrun) -> loss curve
    ``[{step, loss, lr, grad_norm, sec}]`` (loss averaged over ranks), also in ``qm.history``."""

    c = qm.config
    env = D.setup("cpu")
    if c.batch % env.world:
        raise PocketVQEError(f"--batch {c.batch} is the global batch and must divide evenly over {env.world} processes")
    torch.manual_seed(c.seed)
    params = [p for p in qm.prepared.parameters() if p.requires_grad]
    if not params:
        raise PocketVQEError("the prepared QAT model has no trainable parameters: nothing to fine-tune; use PTQ")
    D.broadcast_buffers(env, qm.prepared)
    if env.distributed:                                          # identical start on every rank
        for p in params:
            dist.broadcast(p.data, src=0)
    loader, _ = make_loader(_train_config(qm), qm.cfg, env, 0)
    loader = iter(loader)
    if c.init_batches and qm.ranges is None:
        init_ranges(qm, [next(loader) for _ in range(c.init_batches)], c.percentile, progress and env.is_main,
                    fixed=c.fixed_ranges)
        D.broadcast_buffers(env, qm.prepared)                    # every rank takes rank 0's ranges
    loss_fn = CompressedSpectralLoss(qm.cfg.n_fft, qm.cfg.hop)
    opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
    bar = tqdm(total=c.steps, desc=f"QAT {qm.cfg.name}", unit="step", disable=not (progress and env.is_main),
               file=sys.stderr, mininterval=1.0)
    for step, batch in zip(range(c.steps), loader):
        t0 = time.perf_counter()
        _freeze(qm, step)
        for g in opt.param_groups:
            g["lr"] = c.lr_at(step)
        speaker = _speaker(qm, batch)
        out = stream_batch(qm, batch["mic"], batch["far"], speaker)
        loss = _loss(qm, loss_fn, out, batch, speaker)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if env.distributed:
            _all_reduce_grads(env, params)
        gn = float(nn.utils.clip_grad_norm_(params, c.grad_clip if c.grad_clip > 0 else math.inf))
        if math.isfinite(gn):
            opt.step()
        D.broadcast_buffers(env, qm.prepared)                    # rank 0's observer / BN statistics
        g_loss = float(D.all_reduce(env, loss.detach().double().reshape(1), "mean")[0])
        rec = {"step": step + 1, "loss": g_loss, "lr": c.lr_at(step), "grad_norm": gn,
               "sec": round(time.perf_counter() - t0, 3)}
        qm.history.append(rec)
        bar.update(1)
        bar.set_postfix(loss=f"{g_loss:.4f}", refresh=False)
    bar.close()
    qm.env = env
    return qm.history


def convert(qm: QATModel) -> torch.fx.GraphModule:
    """Fake-quantized batched step -> int8 step GraphModule with StreamStep's signature (batch 1),
    the same form :func:`pocketvqe.quant.quantize` returns (BN folded into the convs)."""
    t0 = time.perf_counter()
    prepared = move_exported_model_to_eval(copy.deepcopy(qm.prepared))
    with torch.no_grad():
        conv = convert_pt2e(prepared)
    for p in conv.parameters():
        p.requires_grad_(False)
    example = StreamStep(qm.enhancer.eval()).example_inputs()
    gm = capture(_Unbatch(conv, n_signals(qm.cfg)), example).module()
    losses = [h["loss"] for h in qm.history]
    gm.meta[META_KEY] = {"mode": "qat", "config": qm.config.to_dict(), "keep_float": list(qm.keep_float),
                         "steps": len(qm.history), "loss_first": losses[0] if losses else None,
                         "loss_last": losses[-1] if losses else None,
                         "calibration": {"observer": (f"qat (percentile {qm.ranges['percentile']:g} init over "
                                                      f"{qm.ranges['frames']} frames, then "
                                                      f"{'fixed' if qm.ranges['fixed'] else 'moving average'})"
                                                      if qm.ranges
                                                      else "qat (moving-average fake quant)"),
                                         "clips": (len(qm.history) + qm.config.init_batches) * qm.config.batch,
                                         "seconds_per_clip": qm.config.clip_seconds,
                                         "scenarios": list(qm.config.scenarios) or "all served"},
                         "convert_seconds": round(time.perf_counter() - t0, 2)}
    return gm


def quantize_qat(enhancer, config: QATConfig | None = None, progress: bool = True) -> torch.fx.GraphModule:
    """prepare_qat -> fine_tune -> convert in one call."""
    qm = prepare_qat(enhancer, config)
    fine_tune(qm, progress)
    return convert(qm)
