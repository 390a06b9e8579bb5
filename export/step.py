"""The streaming step program: one hop of PCM in, one hop out, the state flattened into named tensors.

This is the export boundary: inside, the model keeps its typed state; here it becomes a fixed,
documented list of tensors (``state_names``) so a phone app can hold and pass it back.

>>> step = StreamStep(Enhancer(get_config("dvqe-s16")).eval())
>>> inputs = step.example_inputs()                 # (mic[hop], far[hop], *state)
>>> enhanced, *state = step(*inputs)
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils import _pytree as pytree

from pocketvqe.models import Enhancer


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
