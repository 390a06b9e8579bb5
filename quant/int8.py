"""The int8 form of a model that a program is lowered from: the one entry point of every int8 flow.

``int8_reference(enhancer)`` applies the config's measured PTQ recipe (:func:`recommended_ptq`, the
one place int8 defaults live); ``int8_reference(enhancer, "q.pt2")`` takes a model already
quantized by `pocketvqe quantize` (PTQ or QAT). Either way a personalized model with the internal
speaker embedding also gets an int8 ``enroll_step`` (:mod:`quant.enroll`) calibrated on the recipe's
clips. `pocketvqe export`, `pocketvqe build`, the benchmarks and the profiler all call it, so they
build and time the same int8 program.

>>> ref = int8_reference(enhancer)                         # PTQ, the config's recipe   # doctest: +SKIP
>>> ref = int8_reference(enhancer, "runs/q.pt2")           # a quantized model (QAT)     # doctest: +SKIP
>>> y, *state = ref.step(mic_hop, far_hop, *StreamStep(enhancer).init_state())           # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pocketvqe.errors import PocketVQEError
from pocketvqe.models import ModelConfig
from pocketvqe.models.step import EnrollStep, supports_device_enrollment

from .artifact import load_quantized
from .calibration import calibration_frames, check_calibration
from .config import PTQConfig, recommended_ptq
from .enroll import quantize_enroll
from .ptq import META_KEY, n_signals, quantize

RECIPES_OF_SOURCE = ("ptq", "qat")


@dataclass
class Int8Reference:
    """What an int8 program must equal: ``step``, the converted int8 step (``(*signals, *state) ->
    (enhanced, *state)``), ``enroll``, the int8 ``enroll_step`` (None without on-device enrollment),
    ``recipe`` (``ptq`` | ``qat``) and ``info`` (JSON-able: recipe config, calibration, source file)."""

    step: torch.fx.GraphModule
    recipe: str
    info: dict = field(default_factory=dict)
    enroll: torch.fx.GraphModule | None = None

    def describe(self) -> str:
        """One line for a stage message, e.g. ``PTQ, percentile ranges, net.dec.3 int8 with per-frame
        activation ranges``."""
        if self.recipe == "qat":
            return f"QAT model {self.info.get('source', '')}".strip()
        cfg = self.info.get("config", {})
        parts = [f"{', '.join(cfg['keep_float'])} fp32"] if cfg.get("keep_float") else []
        parts += [f"{', '.join(cfg['dynamic'])} int8 with per-frame activation ranges"] if cfg.get("dynamic") else []
        where = f" ({self.info['source']})" if self.info.get("source") else ""
        return f"PTQ{where}, {cfg.get('observer', '?')} ranges, {'; '.join(parts) or 'all int8'}"


# What a program's description leaves out of the recipe's record: run times (the same recipe must give
# the same bytes) and where this machine keeps its corpus (programs travel; machine paths do not).
NOT_PORTABLE = ("seconds", "convert_seconds", "corpus")


def _portable(info: dict) -> dict:
    return {k: (_portable(v) if isinstance(v, dict) else v) for k, v in info.items() if k not in NOT_PORTABLE}


def _from_pt2(enhancer, path: Path) -> tuple[torch.fx.GraphModule, str, dict]:
    qep, meta = load_quantized(path)
    cfg = meta.get("config")
    try:
        same = isinstance(cfg, dict) and ModelConfig.from_dict(cfg) == enhancer.cfg    # JSON lists vs tuples
    except PocketVQEError:
        same = False
    if not same:
        other = cfg.get("name") if isinstance(cfg, dict) else None
        raise PocketVQEError(f"{path} quantizes {other or 'another model'!r}, not the checkpoint's "
                             f"{enhancer.cfg.name!r} (or another version of its config): give the .pt2 made "
                             "from this checkpoint")
    quant = meta.get("quant") if isinstance(meta.get("quant"), dict) else {}
    recipe = quant.get("mode") if quant.get("mode") in RECIPES_OF_SOURCE else "qat"
    return qep.module(), recipe, {"source": str(path), **{k: v for k, v in quant.items() if k != "mode"}}


def int8_reference(enhancer, source: str | Path = "ptq", config: PTQConfig | None = None, *,
                   calibration=None, data=None, progress: bool = False) -> Int8Reference:
    """The int8 reference of ``enhancer`` (eval mode is taken; the module is not modified).

    ``source``: ``"ptq"`` (calibrate here with ``config``, default the config's measured recipe) or
    the path of a quantized ``.pt2`` of the same model config. ``config`` also decides the
    calibration clips of an int8 ``enroll_step`` (both sources). ``calibration``: per-hop step signal
    tuples to calibrate on instead of the recipe's simulated clips (``quant.calibration_frames``;
    a :class:`CalibFrames` also says where its clips start). ``data``: the corpus root."""
    enhancer = enhancer.eval()
    config = config if config is not None else recommended_ptq(enhancer.cfg.name)
    text = str(source)
    if text != "ptq" and not text.endswith(".pt2"):
        raise PocketVQEError(f"int8 source {text!r}: give 'ptq' (post-training quantization with the config's "
                             "recipe) or a quantized model PATH.pt2 made by `pocketvqe quantize`")
    device_enroll = supports_device_enrollment(enhancer.cfg)
    calib = None if calibration is None else check_calibration(calibration, n_signals(enhancer.cfg), enhancer.cfg.hop)
    if calib is None and (text == "ptq" or device_enroll):
        calib = calibration_frames(enhancer, config.calib_clips, config.calib_seconds, config.seed, data=data,
                                   progress=progress)
    if text == "ptq":
        gm = quantize(enhancer, config, calib, progress=progress)
        meta = gm.meta.get(META_KEY, {})
        ref = Int8Reference(gm, "ptq", _portable({k: v for k, v in meta.items() if k != "mode"}))
    else:
        gm, recipe, info = _from_pt2(enhancer, Path(text))
        ref = Int8Reference(gm, recipe, _portable(info))
    if device_enroll:
        ref.enroll = quantize_enroll(EnrollStep(enhancer).eval(), calib, config)
    return ref
