"""Checkpoints: ``{format, config, state_dict, versions, meta}`` written atomically, read with weights_only.

>>> save_checkpoint("x.pt", enhancer, meta={"step": 1000})
>>> enh, ckpt = load_checkpoint("x.pt")                 # eval mode, config from the file
>>> enh, _ = load_checkpoint("x.pt", expect="dvqe-s16")  # refuses a checkpoint of another config
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy
import torch

from pocketvqe import __version__
from pocketvqe.errors import PocketVQEError
from pocketvqe.fileio import atomic_path, atomic_write_text

from .config import ModelConfig
from .enhancer import Enhancer

FORMAT = "pocketvqe-checkpoint-1"


def versions() -> dict:
    out = {"pocketvqe": __version__, "torch": str(torch.__version__), "numpy": str(numpy.__version__)}
    try:
        from importlib.metadata import version
        out["executorch"] = version("executorch")
        out["torchao"] = version("torchao")
    except Exception:  # pragma: no cover - executorch is a hard dependency
        pass
    return out


def save_checkpoint(path: str | os.PathLike, enhancer: Enhancer, meta: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write the checkpoint and, beside it, ``<name>.json`` with the resolved config and meta."""
    path = Path(path)
    ckpt = {"format": FORMAT, "config": enhancer.cfg.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in enhancer.state_dict().items()},
            "versions": versions(), "meta": dict(meta or {})}
    if extra:
        ckpt.update(extra)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    sidecar = {k: ckpt[k] for k in ("format", "config", "versions", "meta")}
    atomic_write_text(path.with_suffix(".json"), json.dumps(sidecar, indent=2, default=str) + "\n")
    return path


def _unreadable(path: Path, exc: Exception) -> str:
    """The error line for checkpoint bytes ``torch.load(weights_only=True)`` refused: a pickled object it will
    not build (a pickle that could run code) or bytes that are no pickle at all; torch's own advice (load
    with weights_only=False) is the unsafe thing, so only its one-line reason is kept."""
    text = str(exc)
    code = re.search(r"unsupported GLOBAL (\S+)", text)
    if code:
        return (f"checkpoint {path} holds a pickled object ({code.group(1)}) that a weights-only load refuses: "
                "loading it could run code, so it is not loaded; use a checkpoint written by `pocketvqe train`")
    skip = ("Please file", "Check the documentation", "WeightsUnpickler error")      # torch's boilerplate lines
    if "Weights only load failed" in text:
        reason = next((ln.strip() for ln in text.splitlines()[1:] if ln.strip() and not ln.startswith(skip)), None)
    else:
        reason = (text.splitlines() or [None])[0]
    reason = (reason or type(exc).__name__)[:120]
    return f"checkpoint {path} is corrupt or truncated ({reason}): re-download or re-create it"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load the raw checkpoint dict (weights_only), with clear errors for missing/corrupt files."""
    path = Path(path)
    if not path.exists():
        raise PocketVQEError(f"checkpoint {path} does not exist: check the path, or create one with "
                             "`pocketvqe init --config NAME --out x.pt`")
    if path.stat().st_size == 0:
        raise PocketVQEError(f"checkpoint {path} is empty (0 bytes): the write was interrupted; re-create it")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:          # bytes that are not a checkpoint fail anywhere in the unpickler (IndexError, ...)
        raise PocketVQEError(_unreadable(path, exc)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PocketVQEError(f"{path} is not a pocketvqe checkpoint (expected format {FORMAT}); "
                             "for a .pte or .pt2 use the matching --model file type")
    missing = [k for k in ("config", "state_dict") if not isinstance(ckpt.get(k), dict)]
    if missing:
        raise PocketVQEError(f"checkpoint {path} has no {' or '.join(repr(k) for k in missing)}: it was not written by "
                             "`pocketvqe train` / `pocketvqe init` (or was edited); re-create it with them")
    return ckpt


def load_checkpoint(path: str | os.PathLike, expect: str | ModelConfig | None = None) -> tuple[Enhancer, dict]:
    """Build the Enhancer from the checkpoint's own config and load its weights (eval mode)."""
    ckpt = read_checkpoint(path)
    cfg = ModelConfig.from_dict(ckpt["config"])
    if expect is not None:
        want = expect if isinstance(expect, ModelConfig) else None
        name = expect.name if isinstance(expect, ModelConfig) else expect
        if cfg.name != name or (want is not None and want != cfg):
            raise PocketVQEError(f"checkpoint {path} holds config {cfg.name!r}, not {name!r}: "
                                 f"pass --config {cfg.name} or use a checkpoint of {name!r}")
    bad = [k for k, v in ckpt["state_dict"].items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise PocketVQEError(f"checkpoint {path} has non-finite (NaN/Inf) weights in {len(bad)} tensors ({bad[0]}"
                             f"{', ...' if len(bad) > 1 else ''}): training diverged or the file is damaged; "
                             "use an earlier checkpoint")
    enh = Enhancer(cfg)
    try:
        enh.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise PocketVQEError(f"checkpoint {path} does not match config {cfg.name!r} "
                             f"({str(exc).splitlines()[0][:160]}): it was written by another model definition") from None
    return enh.eval(), ckpt


def init_checkpoint(cfg: ModelConfig, seed: int = 0, bn_stats: bool = False) -> Enhancer:
    """A randomly initialised model, reproducible from the seed. With ``bn_stats`` every BatchNorm gets
    non-trivial running statistics (mean ~ N(0, 0.1), var in [0.5, 1.5)), as a trained model has:
    a fresh model's 0/1 statistics hide BatchNorm-folding faults in tests and profiles."""
    torch.manual_seed(seed)
    enh = Enhancer(cfg)
    return (randomize_bn_stats(enh, seed) if bn_stats else enh).eval()


def randomize_bn_stats(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm2d of ``model`` (in place) running statistics like a trained model's:
    mean ~ N(0, 0.1), var in [0.5, 1.5); returns ``model``."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model
