"""Model facts for `pocketvqe info`: parameters, MACs per frame (counted by running one step), state shapes."""
from __future__ import annotations

import torch
from torch.utils import _pytree as pytree
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig
from .enhancer import Enhancer


def state_shapes(enh: Enhancer) -> dict[str, list[int]]:
    leaves, _ = pytree.tree_flatten_with_path(enh.init_state(1))
    out = {}
    for path, t in leaves:
        if t is not None:
            out[pytree.keystr(path).lstrip(".").replace("[", ".").replace("]", "")] = list(t.shape)
    return out


@torch.no_grad()
def macs_per_frame(enh: Enhancer) -> int:
    """Multiply-accumulates of one streaming step (one hop), counted by torch's FLOP counter
    over every conv / linear / matmul the step actually runs (STFT and iSTFT included)."""
    cfg = enh.cfg
    mic = torch.zeros(1, cfg.hop)
    far = torch.zeros(1, cfg.hop) if cfg.has_far else None
    spk = torch.zeros(1, enh.speaker_dim) if cfg.personalized else None
    counter = FlopCounterMode(display=False)
    with counter:
        enh(mic, far, enh.init_state(1), spk)
    return counter.get_total_flops() // 2


def describe(cfg: ModelConfig) -> dict:
    enh = Enhancer(cfg).eval()
    return {
        "name": cfg.name,
        "sample_rate": cfg.sample_rate,
        "hop": cfg.hop,
        "n_fft": cfg.n_fft,
        "n_bins": cfg.n_bins,
        "far_end": cfg.has_far,
        "personalized": cfg.personalized,
        "speaker_dim": enh.speaker_dim,
        "params": sum(p.numel() for p in enh.parameters()),
        "macs_per_frame": macs_per_frame(enh),
        "algorithmic_latency_ms": cfg.algorithmic_latency_ms,
        "algorithmic_delay_samples": cfg.algorithmic_latency_samples,
        "state": state_shapes(enh),
    }
