"""Run a quantized ``.pt2`` (the PyTorch int8 reference of the step) on whole signals.

`pocketvqe enhance --model q.pt2` and `pocketvqe eval` run it through ``pocketvqe.inference.load_model``.

Enrollment (personalized models) runs the float model rebuilt from the weights stored in the
file: the device program takes the speaker embedding as an input, computed on the host.

>>> model = QuantizedModel("q.pt2")                                     # doctest: +SKIP
>>> y = model.enhance(mic, far, model.enroll(enroll_pcm))               # aligned, len(mic)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pocketvqe.errors import PocketVQEError
from pocketvqe.models import Enhancer, ModelConfig
from pocketvqe.signals import frames_of, pad_for_stream, run_step

from .artifact import load_quantized, user_input_shapes


class QuantizedModel:
    """``.cfg``, ``.meta``, ``.step`` (the int8 GraphModule), ``enroll(pcm)``, ``enhance(mic, far, speaker)``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        ep, self.meta = load_quantized(self.path, with_float_weights=True)
        self._float_sd = self.meta.pop("float_state_dict", None)
        self.cfg = ModelConfig.from_dict(self.meta["config"])
        self.step = ep.module()
        self.state_shapes = self._state_shapes(ep, 1 + int(self.cfg.has_far) + int(self.cfg.personalized))
        self._float = None

    @staticmethod
    def _state_shapes(ep, n_signals: int) -> list[tuple[int, ...]]:
        return user_input_shapes(ep)[n_signals:]

    def init_state(self) -> list[torch.Tensor]:
        return [torch.zeros(s) for s in self.state_shapes]

    @property
    def float_enhancer(self):
        if self._float is None:
            if self._float_sd is None:
                raise PocketVQEError(f"{self.path.name} holds no float weights, so it cannot enroll a speaker: "
                                     "re-create it with `pocketvqe quantize` (it stores them)")
            enh = Enhancer(self.cfg)
            enh.load_state_dict(self._float_sd)
            self._float = enh.eval()
        return self._float

    def enroll(self, enroll_pcm: np.ndarray) -> torch.Tensor:
        return self.float_enhancer.enroll(enroll_pcm)

    @torch.no_grad()
    def enhance(self, mic: np.ndarray, far: np.ndarray | None = None, speaker=None, progress=None) -> np.ndarray:
        """Stream the int8 step over ``mic`` (model rate), state threaded; output aligned, same length;
        ``progress(hops)`` after each hop."""
        cfg, hop = self.cfg, self.cfg.hop
        delay, n = cfg.algorithmic_latency_samples, len(mic)
        x, f = pad_for_stream(cfg, mic, far)
        spk = None
        if cfg.personalized:
            if speaker is None:
                raise PocketVQEError(f"model {cfg.name} is personalized: enroll the target speaker first")
            spk = np.asarray(speaker, np.float32).reshape(-1)
        y, _ = run_step(self.step, frames_of(x, f, hop, spk, tensors=True), self.init_state(),
                        on_frame=None if progress is None else (lambda i: progress(1)))
        return y[delay:delay + n]
