"""The streaming step modules that quantization and export both take, and their graph capture.

- :class:`StreamStep`: one hop of PCM in, one hop out, the state flattened into named tensors. Inside,
  the model keeps its typed state; here it becomes a fixed, documented list of tensors
  (``state_names``) so a phone app can hold and pass it back.
- :class:`EnrollStep` / :class:`EnrollFinish`: on-device enrollment of personalized models with the
  internal embedding. ``Enhancer.enroll`` is the mean over enrollment frames of
  ``Enhancer.embed_frames`` (the LayerNorm'd bottleneck GRU output with a zero speaker and a silent far
  end); on the device that becomes a running sum and a frame count threaded through
  ``enroll_step(mic[hop], *acc) -> acc`` (``acc``: the STFT, encoder, AlignBlock and GRU states the
  embedding path needs, then ``enroll.sum[D]`` and ``enroll.count[1]``; initially zeros) and
  ``enroll_finish(*acc) -> speaker[D]`` (``sum / max(count, 1)``).
- :func:`capture`: ``torch.export`` of such a module, as PT2E quantization and lowering take it.

>>> step = StreamStep(Enhancer(get_config("dvqe-s16")).eval())
>>> inputs = step.example_inputs()                 # (mic[hop], far[hop], *state)
>>> enhanced, *state = step(*inputs)
>>> ep = capture(step, inputs)                     # ExportedProgram
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils import _pytree as pytree

from pocketvqe.quiet import quiet_libraries
from pocketvqe.signals import frames_of

from .enhancer import Enhancer


def _name(path) -> str:
    return pytree.keystr(path).lstrip(".").replace("[", ".").replace("]", "").replace("..", ".")


class StreamStep(nn.Module):
    """Inputs: ``mic[hop]``, ``far[hop]`` (if the config has a far end), ``speaker[D]`` (personalized),
    then the state tensors in ``state_names`` order. Outputs: ``enhanced[hop]``, then the new state.
    The initial state is all zeros (``init_state()``)."""

    def __init__(self, enhancer: Enhancer):
        super().__init__()
        self.enhancer = enhancer
        self.cfg = enhancer.cfg
        leaves, self._spec = pytree.tree_flatten_with_path(enhancer.init_state(1))
        self._n_leaves = len(leaves)
        self._tensor_idx = [i for i, (_, t) in enumerate(leaves) if t is not None]   # absent parts are None
        self.state_names = [_name(leaves[i][0]) for i in self._tensor_idx]
        self.state_shapes = [tuple(leaves[i][1].shape) for i in self._tensor_idx]

    def unflatten_state(self, tensors):
        leaves = [None] * self._n_leaves
        for i, t in zip(self._tensor_idx, tensors):
            leaves[i] = t
        return pytree.tree_unflatten(leaves, self._spec)

    def flatten_state(self, state) -> list[torch.Tensor]:
        leaves = pytree.tree_leaves(state)
        return [leaves[i] for i in self._tensor_idx]

    @property
    def input_names(self) -> list[str]:
        names = ["mic"] + (["far"] if self.cfg.has_far else []) + (["speaker"] if self.cfg.personalized else [])
        return names + self.state_names

    def init_state(self) -> list[torch.Tensor]:
        return [torch.zeros(s) for s in self.state_shapes]

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        hop = self.cfg.hop
        x = [torch.zeros(hop)]
        if self.cfg.has_far:
            x.append(torch.zeros(hop))
        if self.cfg.personalized:
            x.append(torch.zeros(self.enhancer.speaker_dim))
        return tuple(x + self.init_state())

    def forward(self, *args: torch.Tensor):
        n_in = 1 + self.cfg.has_far + self.cfg.personalized
        if len(args) != n_in + len(self.state_names):
            raise ValueError(f"expected {n_in} signal inputs and {len(self.state_names)} state tensors, got {len(args)}")
        mic = args[0].reshape(1, -1)
        far = args[1].reshape(1, -1) if self.cfg.has_far else None
        speaker = args[n_in - 1].reshape(1, -1) if self.cfg.personalized else None
        state = self.unflatten_state(args[n_in:])
        y, state = self.enhancer(mic, far, state, speaker)
        return (y.reshape(-1), *self.flatten_state(state))


def capture(module: nn.Module, example_inputs) -> torch.export.ExportedProgram:
    """``torch.export`` (non-strict) with gradients off: ``to_executorch`` fails on in-place state
    copies recorded with autograd on."""
    quiet_libraries()
    with torch.no_grad():
        return torch.export.export(module, tuple(example_inputs), strict=False)


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


def enroll_pcm(pcm, hop: int, acc: list[torch.Tensor], method_step, method_finish) -> torch.Tensor:
    """Run enrollment PCM (model rate, numpy or tensor) through ``enroll_step`` / ``enroll_finish``
    callables from the accumulator ``acc`` (``EnrollStep.init_state()``) -> speaker (D,). The audio is
    zero-padded to whole hops, as ``Enhancer.enroll`` does."""
    x = np.asarray(pcm, np.float32).reshape(-1)
    x = np.pad(x, (0, (-len(x)) % hop))
    for sig in frames_of(x, None, hop, tensors=True):
        acc = list(method_step(sig[0], *acc))
    return method_finish(*acc).reshape(-1)
