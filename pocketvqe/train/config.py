"""The training recipe: one frozen, validated dataclass, saved beside every run and checkpoint.

>>> cfg = TrainConfig(steps=3000, batch=8, lr=3e-3)
>>> cfg.lr_at(0) < cfg.lr_at(cfg.warmup) == cfg.lr
True
>>> TrainConfig.from_dict(cfg.to_dict()) == cfg
True
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from pocketvqe.errors import PocketVQEError

SCENARIOS = ("noise", "reverb", "echo_fe_st", "echo_ne_st", "double_talk", "interferer")  # = pocketvqe.data.SCENARIOS
ECHO = ("echo_fe_st", "echo_ne_st", "double_talk")


@dataclass(frozen=True)
class TrainConfig:
    """Float training of one DeepVQE-family model (``pocketvqe train``).

    model: registered config name or a JSON file holding a ModelConfig (the resolved model config
    is saved separately, in train_config.json and in every checkpoint).
    steps: total optimizer steps. batch: global batch (split evenly over the torchrun processes, so
    the same recipe means the same thing on 1 CPU or 8 GPUs). lr: peak AdamW learning rate, reached
    after ``warmup`` linear steps, then cosine decay to ``lr * lr_final``.
    grad_clip: max global gradient L2 norm (0 = off).
    Loss: ``loss_mag_weight`` * MSE of |S|^c + (1 - loss_mag_weight) * MSE of the
    compressed complex spectra |S|^c e^{j angle S}, c = ``loss_exponent``, plus ``loss_keep_weight``
    * the mean squared shortfall of |S'|^c below |S|^c (speech taken away; 0 = off, see ``train.loss``).
    Data: on-the-fly mixtures (``pocketvqe.data.Simulator``) of ``clip_seconds`` from the corpus at
    ``data`` (None: $POCKETVQE_DATA or ~/.cache/pocketvqe/corpus); ``scenarios`` empty means every
    scenario the model serves; ``enroll_seconds`` is the enrollment length range (personalized).
    ckpt_every / valid_every: steps between checkpoints / validation passes (0 = only at the end).
    valid_clips: size of the fixed validation set (split ``valid``, seed ``valid_seed``).
    workers: data-loader processes per rank; -1 = auto (0 on CPU, where a loader process only
    competes with the compute threads, 4 per process on CUDA). threads: torch CPU threads (0 = torch's choice).
    """

    model: str = "dvqe-s16"
    steps: int = 2000
    batch: int = 8
    lr: float = 3e-3
    lr_final: float = 0.05
    warmup: int = 100
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 3.0
    loss_exponent: float = 0.3
    loss_mag_weight: float = 0.7
    loss_keep_weight: float = 0.0
    clip_seconds: float = 4.0
    enroll_seconds: tuple[float, float] = (5.0, 10.0)
    scenarios: tuple[str, ...] = ()
    data: str | None = None
    init: str | None = None
    ckpt_every: int = 500
    valid_every: int = 250
    valid_clips: int = 32
    valid_seed: int = 20240607
    seed: int = 0
    device: str = "cpu"
    workers: int = -1
    threads: int = 0

    def __post_init__(self):
        for f in fields(self):          # lists from JSON become tuples
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))

        def bad(msg):
            raise PocketVQEError(f"train config: {msg}")
        if not self.model:
            bad("model is empty: give a registered config name (pocketvqe info --list) or a JSON file")
        for name in ("steps", "batch", "valid_clips"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(f"{name}={getattr(self, name)!r} must be an integer >= 1")
        if not isinstance(self.workers, int) or self.workers < -1:
            bad(f"workers={self.workers!r} must be an integer >= 0, or -1 for auto")
        for name in ("warmup", "ckpt_every", "valid_every", "threads", "seed", "valid_seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                bad(f"{name}={getattr(self, name)!r} must be an integer >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            bad(f"lr={self.lr} must be a positive number (3e-3 is a good start)")
        if not 0 <= self.lr_final <= 1:
            bad(f"lr_final={self.lr_final} is a fraction of lr and must lie in [0, 1]")
        if not self.weight_decay >= 0:
            bad(f"weight_decay={self.weight_decay} must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            bad(f"betas={self.betas} must be two numbers in [0, 1)")
        if not self.grad_clip >= 0:
            bad(f"grad_clip={self.grad_clip} must be >= 0 (0 turns clipping off)")
        if not 0 < self.loss_exponent <= 1:
            bad(f"loss_exponent={self.loss_exponent} must lie in (0, 1] (0.3)")
        if not 0 <= self.loss_mag_weight <= 1:
            bad(f"loss_mag_weight={self.loss_mag_weight} must lie in [0, 1] (0.7)")
        if not self.loss_keep_weight >= 0:
            bad(f"loss_keep_weight={self.loss_keep_weight} must be >= 0 (0 turns the speech-keeping term off)")
        if not self.clip_seconds >= 1.0:
            bad(f"clip_seconds={self.clip_seconds} must be >= 1 (the simulator's minimum)")
        if len(self.enroll_seconds) != 2 or not 0.5 <= self.enroll_seconds[0] <= self.enroll_seconds[1] <= 60:
            bad(f"enroll_seconds={self.enroll_seconds} must be (low, high) with 0.5 <= low <= high <= 60")
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            bad(f"unknown scenarios {unknown}: choose from {', '.join(SCENARIOS)}")
        if len(set(self.scenarios)) != len(self.scenarios):
            bad(f"scenarios {self.scenarios} lists one twice")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            bad(f"device={self.device!r}: use cpu or cuda")

    # ---------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to lr * lr_final."""
        if self.warmup and step < self.warmup:
            return self.lr * (step + 1) / (self.warmup + 1)
        span = max(1, self.steps - self.warmup)
        t = min(1.0, (step - self.warmup) / span)
        return self.lr * (self.lr_final + (1 - self.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))

    def resolved_workers(self) -> int:
        if self.workers >= 0:
            return self.workers
        return 4 if self.device.startswith("cuda") else 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise PocketVQEError(f"unknown train config keys {sorted(unknown)}: written by another pocketvqe "
                                 "version; start a new run")
        return cls(**d)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
