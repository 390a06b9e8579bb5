"""Run a quantized ``.pt2`` (the PyTorch int8 reference of the step) on whole signals.

Importing this module registers the ``.pt2`` loader with :mod:`pocketvqe.inference`, so
`pocketvqe enhance --model q.pt2` works, and `pocketvqe eval` through ``evaluate.ModelFileProcessor``.

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
from pocketvqe.inference import pad_for_stream, register_loader

from .artifact import load_quantized


class QuantizedModel:
    """``.cfg``, ``.meta``, ``.step`` (the int8 GraphModule), ``enroll(pcm)``, ``enhance(mic, far, speaker)``."""

    def __init__(self, path: str | os.PathLike):
        from pocketvqe.models import ModelConfig
        self.path = Path(path)
        ep, self.meta = load_quantized(self.path, with_float_weights=True)
        self._float_sd = self.meta.pop("float_state_dict", None)
        self.cfg = ModelConfig.from_dict(self.meta["config"])
        self.step = ep.module()
        self.state_shapes = self._state_shapes(ep, 1 + int(self.cfg.has_far) + int(self.cfg.personalized))
        self._float = None

    @staticmethod
    def _state_shapes(ep, n_signals: int) -> list[tuple[int, ...]]:
        from .artifact import user_input_shapes
        return user_input_shapes(ep)[n_signals:]

    def init_state(self) -> list[torch.Tensor]:
        return [torch.zeros(s) for s in self.state_shapes]

    @property
    def float_enhancer(self):
        if self._float is None:
            if self._float_sd is None:
                raise PocketVQEError(f"{self.path.name} holds no float weights, so it cannot enroll a speaker: "
                                     "re-create it with `pocketvqe quantize` (it stores them)")
            from pocketvqe.models import Enhancer
            enh = Enhancer(self.cfg)
            enh.load_state_dict(self._float_sd)
            self._float = enh.eval()
        return self._float

    def enroll(self, enroll_pcm: np.ndarray) -> torch.Tensor:
        return self.float_enhancer.enroll(enroll_pcm)

    @torch.no_grad()
    def enhance(self, mic: np.ndarray, far: np.ndarray | None = None, speaker=None) -> np.ndarray:
        """Stream the int8 step over ``mic`` (model rate), state threaded; output aligned, same length."""
        cfg, hop = self.cfg, self.cfg.hop
        delay, n = cfg.algorithmic_latency_samples, len(mic)
        x, f = pad_for_stream(cfg, mic, far)
        total = len(x)
        spk = None
        if cfg.personalized:
            if speaker is None:
                raise PocketVQEError(f"model {cfg.name} is personalized: enroll the target speaker first")
            spk = torch.as_tensor(speaker, dtype=torch.float32).reshape(-1)
        state, ys = self.init_state(), []
        for t in range(total // hop):
            sig = [torch.from_numpy(x[t * hop:(t + 1) * hop])]
            if f is not None:
                sig.append(torch.from_numpy(f[t * hop:(t + 1) * hop]))
            if spk is not None:
                sig.append(spk)
            res = self.step(*sig, *state)
            ys.append(res[0].numpy())
            state = list(res[1:])
        return np.concatenate(ys)[delay:delay + n]


def load(path: Path) -> QuantizedModel:
    return QuantizedModel(path)


register_loader(".pt2", load)
