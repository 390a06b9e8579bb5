"""Quantization recipes: one frozen, validated dataclass per flow, saved inside every ``.pt2``.

>>> ptq = PTQConfig(observer="histogram", calib_clips=16, keep_float=("net.dec.3",))
>>> qat = QATConfig(steps=200, lr=1e-4, batch=8)
>>> QATConfig.from_dict(qat.to_dict()) == qat
True
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from pocketvqe.errors import PocketVQEError

OBSERVERS = ("minmax", "moving_average", "histogram", "percentile")     # activation observers (quant.xnnpack)
SCENARIOS = ("noise", "reverb", "echo_fe_st", "echo_ne_st", "double_talk", "interferer")


def _tuplify(obj) -> None:
    for f in fields(obj):               # lists (from JSON / argparse) become tuples
        if isinstance(getattr(obj, f.name), list):
            object.__setattr__(obj, f.name, tuple(getattr(obj, f.name)))


def _check_keep_float(where: str, names, field: str = "keep_float") -> None:
    if isinstance(names, str):
        raise PocketVQEError(f"{where}: {field} must be a tuple of module names, not the string {names!r} "
                             f"(write {field}=('net.dec.3',))")
    for n in names:
        if not isinstance(n, str) or not n.strip():
            raise PocketVQEError(f"{where}: {field} holds {n!r}; give module names such as 'net.dec.3' "
                                 "(see `pocketvqe quant-report` for the ranking)")


@dataclass(frozen=True)
class PTQConfig:
    """Post-training static int8 quantization (XNNPACK recipe).

    observer: activation range observer used during calibration: ``percentile`` (default: the
    ``percentile``-th percentile of the per-frame extremes, so the rarest extreme frames saturate and
    every other frame gets a finer grid), ``minmax`` (keeps every peak), ``moving_average`` or
    ``histogram`` (MSE-optimal ranges, ~20x slower to calibrate).
    per_channel: per-output-channel symmetric int8 weights (else per tensor).
    calib_clips / calib_seconds: simulated clips (every scenario the model serves, cycled) that the
    streaming step runs over; calib_seconds >= 1 (the simulator's minimum).
    keep_float: module names (``net.dec.3`` or ``enhancer.net.dec.3``) whose ops stay fp32.
    dynamic: module names whose convs and linears keep int8 weights but quantize their input
    activations per call, from that frame's own range (XNNPACK's dynamic int8 kernels); their other
    ops stay fp32. Costs int8 bytes where ``keep_float`` costs fp32 ones, and no calibrated range
    can be too coarse for a quiet frame (dvqe-s16's CCM-mask block: docs/int8-fidelity.md).
    float_dsp: keep the signal processing around the network (STFT/iSTFT matmuls on PCM, power-law
    compression, CCM) in fp32; int8 PCM and int8 power spectra cost 20-40 dB of SQNR (see
    ``quant.xnnpack.DSP_MODULES``). The convs, GRU gates and linears are int8 either way.
    seed: simulator seed of the calibration clips (split ``valid``).
    """

    observer: str = "percentile"
    per_channel: bool = True
    calib_clips: int = 16
    calib_seconds: float = 4.0
    keep_float: tuple[str, ...] = ()
    float_dsp: bool = True
    seed: int = 0
    percentile: float = 99.9
    dynamic: tuple[str, ...] = ()

    def __post_init__(self):
        _tuplify(self)
        if self.observer not in OBSERVERS:
            raise PocketVQEError(f"PTQConfig: unknown observer {self.observer!r}: choose one of {', '.join(OBSERVERS)}")
        if not (isinstance(self.percentile, (int, float)) and 50.0 < self.percentile <= 100.0):
            raise PocketVQEError(f"PTQConfig: percentile={self.percentile!r} must be in (50, 100] "
                                 "(99.9 lets the 0.1 % most extreme calibration frames saturate)")
        if not isinstance(self.calib_clips, int) or self.calib_clips < 1:
            raise PocketVQEError(f"PTQConfig: calib_clips={self.calib_clips!r} must be an integer >= 1 (16 is a good start)")
        if not (isinstance(self.calib_seconds, (int, float)) and self.calib_seconds >= 1.0):
            raise PocketVQEError(f"PTQConfig: calib_seconds={self.calib_seconds!r} must be >= 1 (the simulator's "
                                 "shortest clip)")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise PocketVQEError(f"PTQConfig: seed={self.seed!r} must be an integer >= 0")
        _check_keep_float("PTQConfig", self.keep_float)
        _check_keep_float("PTQConfig", self.dynamic, "dynamic")
        both = set(self.keep_float) & set(self.dynamic)
        if both:
            raise PocketVQEError(f"PTQConfig: {sorted(both)} are in both keep_float (fp32) and dynamic (int8 weights, "
                                 "per-frame activation ranges): choose one for each module")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PTQConfig":
        return cls(**d)


# The PTQ recipe measured to keep each shipped checkpoint's sound (docs/int8-fidelity.md): every conv and
# linear outside the GRU bottleneck with int8 weights and per-frame (dynamic) activation ranges, the GRU
# static int8. A static grid is set by the rare far-end-only frames and flips whole steps on quiet speech,
# which the recurrent state carries on: with per-frame ranges only in the CCM-mask block (the recipe before
# 2026-12-08) dvqe-s16's int8 output on the build clip was 8.5 dB from the float model's and 15.2 dB from
# itself under 1 LSB of dither; with this recipe 30.2 and 36.9 dB (6 test clips, medians: dvqe-s16 31.5 /
# 37.3 dB, pvqe-s16 33.3 / 39.4 dB), and every judge within its int8 delta target on 10 test clips per
# scenario. Per-frame ranges in the GRU too gave 36.5 / 41.1 dB but a 9 % slower step (its dynamic linears);
# static GRU is 5-8 % faster than the old recipe.
PER_FRAME = ("net.mic", "net.far", "net.align", "net.dec")
RECIPES = {
    "dvqe-s16": {"dynamic": PER_FRAME},
    "pvqe-s16": {"dynamic": PER_FRAME},
}


def recommended_ptq(config_name: str, **overrides) -> PTQConfig:
    """The PTQ recipe measured for ``config_name`` (defaults for configs without one), with ``overrides``.

    >>> recommended_ptq("pvqe-s16").dynamic
    ('net.mic', 'net.far', 'net.align', 'net.dec')
    >>> recommended_ptq("dvqe-s16", calib_clips=8).calib_clips
    8
    """
    return PTQConfig(**{**RECIPES.get(config_name, {}), **overrides})


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware fine-tuning of a float checkpoint, through the streaming step.

    steps / lr / batch: AdamW optimizer steps at a constant ``lr`` after ``warmup`` linear steps,
    global batch (split over torchrun processes) of ``clip_seconds`` simulated clips.
    freeze_observers_after: step after which activation/weight ranges stop moving (-1 = never).
    freeze_bn_after: step after which BatchNorm uses its running statistics (0 = from the start,
    the default: the step sees one frame at a time, so batch statistics would be per-frame).
    init_batches / percentile: before the first step, stream ``init_batches`` training batches
    through the step in float and set every activation range to the ``percentile``-th percentile of
    the per-frame extremes (PTQ's ``percentile`` observer). 0 = no initialization: moving-average
    ranges learned from scratch.
    fixed_ranges: False (default): moving-average observers carry on from the initialized ranges;
    True: the ranges stay fixed while the weights learn them. On dvqe-s16 (200 steps) the moving
    ranges gave PESQ 1.52 / OVRL 2.15 against 1.49 / 2.04 fixed (float 1.57 / 2.19; docs/int8-fidelity.md).
    distill: weight of the float model as the target. 1 (default): the training loss against the
    float model's own output on the same input (knowledge distillation: the int8 model learns to
    sound like the float one); 0: against the clean speech, as in training (QAT then goes on
    training the model: on dvqe-s16, 30 test clips, PESQ -0.05 against float, where distillation
    gave -0.01); in between: that mix of the two losses.
    scenarios: simulator scenarios (empty = every scenario the model serves).
    keep_float / float_dsp: as in PTQConfig. weight_decay / grad_clip as in training.
    data: corpus folder (None: $POCKETVQE_DATA or ~/.cache/pocketvqe/corpus).
    enroll_seconds: enrollment length range of personalized models.
    """

    steps: int = 200
    lr: float = 1e-4
    batch: int = 8
    clip_seconds: float = 2.0
    warmup: int = 10
    freeze_observers_after: int = -1
    freeze_bn_after: int = 0
    scenarios: tuple[str, ...] = ()
    keep_float: tuple[str, ...] = ()
    float_dsp: bool = True
    per_channel: bool = True
    weight_decay: float = 0.0
    grad_clip: float = 3.0
    enroll_seconds: tuple[float, float] = (5.0, 10.0)
    data: str | None = None
    seed: int = 0
    init_batches: int = 4
    percentile: float = 99.9
    fixed_ranges: bool = False
    distill: float = 1.0

    def __post_init__(self):
        _tuplify(self)

        def bad(msg):
            raise PocketVQEError(f"QATConfig: {msg}")
        for name in ("steps", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                bad(f"{name}={v!r} must be an integer >= 1")
        for name in ("warmup", "seed", "freeze_bn_after", "init_batches"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                bad(f"{name}={v!r} must be an integer >= 0")
        if not isinstance(self.freeze_observers_after, int) or self.freeze_observers_after < -1:
            bad(f"freeze_observers_after={self.freeze_observers_after!r} must be a step >= 0, or -1 for never")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            bad(f"lr={self.lr!r} must be a positive number (QAT fine-tunes: 1e-4 is a good start)")
        if not (isinstance(self.percentile, (int, float)) and 50.0 < self.percentile <= 100.0):
            bad(f"percentile={self.percentile!r} must be in (50, 100] (99.9 lets the rarest frames saturate)")
        if not (isinstance(self.distill, (int, float)) and 0.0 <= self.distill <= 1.0):
            bad(f"distill={self.distill!r} must be in [0, 1] (0: clean target, 1: the float model's output)")
        if not self.clip_seconds >= 1.0:
            bad(f"clip_seconds={self.clip_seconds} must be >= 1 (the simulator's minimum)")
        if not self.weight_decay >= 0 or not self.grad_clip >= 0:
            bad("weight_decay and grad_clip must be >= 0 (grad_clip 0 turns clipping off)")
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            bad(f"unknown scenarios {unknown}: choose from {', '.join(SCENARIOS)}")
        if len(self.enroll_seconds) != 2 or not 0.5 <= self.enroll_seconds[0] <= self.enroll_seconds[1] <= 60:
            bad(f"enroll_seconds={self.enroll_seconds} must be (low, high) with 0.5 <= low <= high <= 60")
        _check_keep_float("QATConfig", self.keep_float)

    def lr_at(self, step: int) -> float:
        return self.lr * min(1.0, (step + 1) / (self.warmup + 1)) if self.warmup else self.lr

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QATConfig":
        return cls(**d)
