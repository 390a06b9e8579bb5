"""Enrollment on the device: two extra methods of a personalized program compute the speaker embedding.

``Enhancer.enroll`` (internal embedding, PVQE) is the mean over enrollment frames of
``Enhancer.embed_frames`` (the LayerNorm'd bottleneck GRU output with a zero speaker and a silent
far end). On the device that becomes a running sum and a frame count threaded through:

- ``enroll_step(mic[hop], *acc) -> acc``: one hop of enrollment PCM; ``acc`` is the streaming state
  the embedding path needs (``enroll_state_names``: the STFT, encoder, AlignBlock and GRU states)
  followed by ``enroll.sum[D]`` and ``enroll.count[1]``; the initial ``acc`` is all zeros.
- ``enroll_finish(*acc) -> speaker[D]``: ``sum / max(count, 1)``.

The enrollment audio is zero-padded to a whole number of hops, as ``Enhancer.enroll`` does. In an
fp32 program the methods are fp32 and the embedding equals the checkpoint's. In an int8 program
``enroll_step``'s network (encoder, GRU) is int8 too (:func:`quantize_enroll`): its weights are
quantized exactly as ``forward``'s, so the program stores them once (the runtime's named data is
deduplicated by content) instead of carrying a second, fp32 copy of the encoder and GRU (pvqe-s16:
2.12 MB int8 program with fp32 enrollment against 2.20 MB fp32). The running sum and count stay fp32.

>>> acc = EnrollStep(enh).init_state()
>>> for t in range(n_hops): acc = list(EnrollStep(enh)(mic[t * hop:(t + 1) * hop], *acc))
>>> speaker = EnrollFinish(enh)(*acc)                                  # (D,)
"""
from __future__ import annotations

import torch
from torch import nn

from pocketvqe.models import Enhancer

from .step import StreamStep


def supports_device_enrollment(cfg) -> bool:
    """Personalized configs with the internal embedding; a d-vector model enrolls on the host."""
    return bool(cfg.personalized) and cfg.speaker_embedding == "internal"


def _used_leaves(enhancer: Enhancer, step: StreamStep) -> list[int]:
    """Positions (in ``step.state_names``) of the state tensors ``embed_frames`` reads and updates."""
    state0 = enhancer.init_state(1)
    with torch.no_grad():
        _, state1 = enhancer.embed_frames(torch.zeros(1, enhancer.cfg.hop), state0)
    before, after = step.flatten_state(state0), step.flatten_state(state1)
    return [i for i, (a, b) in enumerate(zip(before, after)) if a is not b]     # untouched leaves are the same objects


class EnrollStep(nn.Module):
    """``(mic[hop], *enroll_state) -> enroll_state`` (see the module docstring)."""

    def __init__(self, enhancer: Enhancer):
        super().__init__()
        if not supports_device_enrollment(enhancer.cfg):
            raise ValueError(f"{enhancer.cfg.name} has no internal speaker embedding to enroll on the device")
        self.enhancer = enhancer
        self.cfg = enhancer.cfg
        self._step = StreamStep(enhancer)
        self._used = _used_leaves(enhancer, self._step)
        D = enhancer.speaker_dim
        self.state_names = [self._step.state_names[i] for i in self._used] + ["enroll.sum", "enroll.count"]
        self.state_shapes = [self._step.state_shapes[i] for i in self._used] + [(D,), (1,)]

    def init_state(self) -> list[torch.Tensor]:
        return [torch.zeros(s) for s in self.state_shapes]

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(self.cfg.hop), *self.init_state())

    def forward(self, mic: torch.Tensor, *acc: torch.Tensor):
        if len(acc) != len(self.state_names):
            raise ValueError(f"expected {len(self.state_names)} enrollment state tensors, got {len(acc)}")
        full = self._step.init_state()                      # the parts embed_frames ignores (decoder, OLA)
        for i, t in zip(self._used, acc):
            full[i] = t
        feats, state = self.enhancer.embed_frames(mic.reshape(1, -1), self._step.unflatten_state(full))
        new = self._step.flatten_state(state)
        total = acc[-2] + feats.reshape(-1)                 # (1, 1, D) -> (D,)
        return (*[new[i] for i in self._used], total, acc[-1] + 1.0)


class EnrollFinish(nn.Module):
    """``(*enroll_state) -> speaker[D]``: the mean of the enrollment features."""

    def __init__(self, enroll: EnrollStep):
        super().__init__()
        self.n_state = len(enroll.state_names)
        self._example = tuple(enroll.init_state())

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return self._example

    def forward(self, *acc: torch.Tensor):
        return acc[-2] / torch.clamp(acc[-1], min=1.0)


def enroll_inputs(enroll: EnrollStep, frames) -> list[tuple[torch.Tensor, ...]]:
    """``enroll_step`` input tuples ``(mic[hop], *acc)`` for the mic hops of ``frames`` (step signal
    tuples; ``frames.starts``, when present, restart the accumulation: one enrollment per clip), with
    the float accumulator threaded through, as calibration must see it."""
    starts = set(getattr(frames, "starts", (0,)))
    out, acc = [], enroll.init_state()
    with torch.no_grad():
        for i, sig in enumerate(frames):
            if i in starts:
                acc = enroll.init_state()
            mic = sig[0].reshape(-1)
            out.append((mic, *acc))
            acc = list(enroll(mic, *acc))
    return out


def quantize_enroll(enroll: EnrollStep, frames, per_channel: bool = True, percentile: float = 99.9):
    """Int8 ``enroll_step``: the XNNPACK recipe of the quant flows (per-channel weights, percentile
    activation ranges, fp32 signal processing and accumulator) calibrated on the mic hops of
    ``frames`` -> converted GraphModule with EnrollStep's signature."""
    from pocketvqe.quant.xnnpack import xnnpack_quantizer

    from .lower import export_model, quantize_pt2e_static
    ep = export_model(enroll, enroll.example_inputs())
    quantizer = xnnpack_quantizer(per_channel=per_channel, observer="percentile", float_dsp=True,
                                  percentile=percentile)
    return quantize_pt2e_static(ep, enroll_inputs(enroll, frames), quantizer)


def enroll_pcm(enroll: EnrollStep, method_step, method_finish, pcm) -> torch.Tensor:
    """Run enrollment PCM (model rate, numpy or tensor) through step/finish callables -> speaker (D,)."""
    import numpy as np
    hop = enroll.cfg.hop
    x = np.asarray(pcm, np.float32).reshape(-1)
    x = np.pad(x, (0, (-len(x)) % hop))                    # as Enhancer.enroll: zero-pad to whole hops
    acc = enroll.init_state()
    for t in range(len(x) // hop):
        acc = list(method_step(torch.from_numpy(x[t * hop:(t + 1) * hop].copy()), *acc))
    return method_finish(*acc).reshape(-1)


__all__ = ["EnrollStep", "EnrollFinish", "supports_device_enrollment", "enroll_inputs", "enroll_pcm",
           "quantize_enroll"]
