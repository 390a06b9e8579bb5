"""DeepVQE / DeepVQE-S / PVQE on compressed complex spectra.

mic (and far-end) spectrum -> power-law compression -> mic encoder (far-end encoder + AlignBlock
joins at block ``align_at``) -> GRU bottleneck -> decoder with skips -> 27-channel CCM applied to
the uncompressed mic spectrum. Spectra are (B, 2, T, F) real/imag.

>>> net = DeepVQE(get_config("dvqe-s16")).eval()
>>> out, state = net(mic_spec, far_spec, net.init_state(1))      # out (1, 2, T, 161)
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from pocketvqe.kernels import apply_ccm, init_ccm_state

from .blocks import AlignBlock, AlignState, Bottleneck, DecoderBlock, DecoderState, EncoderBlock, EncoderState
from .config import ModelConfig


class NetState(NamedTuple):
    mic: tuple[EncoderState, ...]
    far: tuple[EncoderState, ...]
    align: Optional[AlignState]
    gru: torch.Tensor
    dec: tuple[DecoderState, ...]
    ccm: torch.Tensor


def compress(spec: torch.Tensor, power: float, eps: float = 1e-8) -> torch.Tensor:
    """|X|^power * exp(j angle X) for spec (B, 2, T, F)."""
    re, im = spec[:, 0:1], spec[:, 1:2]
    # (|X|^2 + eps)^((power - 1) / 2) as exp(log(.)): XNNPACK delegates exp/log but not pow.
    return spec * torch.exp(torch.log(re * re + im * im + eps) * ((power - 1.0) / 2.0))


class DeepVQE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        L = len(cfg.mic_channels)
        bins = [cfg.n_bins]
        for _ in range(L):
            bins.append((bins[-1] - 1) // 2 + 1)
        self.bins = bins                                         # bins[i]: input bins of mic block i
        c_far = cfg.far_channels[-1] if cfg.has_far else 0
        mic = []
        for i, c in enumerate(cfg.mic_channels):
            cin = 2 if i == 0 else cfg.mic_channels[i - 1] + (c_far if i == cfg.align_at else 0)
            mic.append(EncoderBlock(cin, c, bins[i], cfg.residual))
        self.mic = nn.ModuleList(mic)
        self.far = nn.ModuleList(
            EncoderBlock(2 if i == 0 else cfg.far_channels[i - 1], c, bins[i], cfg.residual)
            for i, c in enumerate(cfg.far_channels))
        self.align = (AlignBlock(cfg.mic_channels[cfg.align_at - 1], c_far, bins[cfg.align_at],
                                 cfg.align_heads, cfg.align_delay) if cfg.has_far else None)
        self.bottleneck = Bottleneck(cfg.mic_channels[-1], bins[L], cfg.gru_hidden,
                                     cfg.speaker_proj if cfg.personalized else 0, cfg.speaker_dim)
        dec = []
        for i, cout in enumerate(cfg.dec_channels):
            enc = L - 1 - i                                      # encoder block whose output is the skip
            cin = cfg.mic_channels[-1] if i == 0 else cfg.dec_channels[i - 1]
            dec.append(DecoderBlock(cin, cfg.mic_channels[enc], cout, bins[enc + 1], bins[enc],
                                    cfg.residual, last=i == L - 1))
        self.dec = nn.ModuleList(dec)

    @property
    def speaker_dim(self) -> int:
        return self.cfg.speaker_dim

    def init_state(self, batch: int = 1) -> NetState:
        return NetState(
            mic=tuple(b.init_state(batch) for b in self.mic),
            far=tuple(b.init_state(batch) for b in self.far),
            align=self.align.init_state(batch) if self.align is not None else None,
            gru=self.bottleneck.init_state(batch),
            dec=tuple(b.init_state(batch) for b in self.dec),
            ccm=init_ccm_state(batch, self.cfg.n_bins))

    def _encode(self, mic_spec, far_spec, state: NetState):
        """Compressed spectra through both encoders -> (skips, new mic/far/align states)."""
        if self.cfg.has_far and far_spec is None:
            raise ValueError(f"{self.cfg.name} needs a far-end spectrum")
        x = compress(mic_spec, self.cfg.compress)                     # (B, 2, T, F)
        far_states, align_state = [], None
        if self.cfg.has_far:
            y = compress(far_spec, self.cfg.compress)
            for blk, st in zip(self.far, state.far):
                y, st = blk(y, st)                                     # (B, Cf_i, T, F_i)
                far_states.append(st)
        skips, mic_states = [], []
        for i, (blk, st) in enumerate(zip(self.mic, state.mic)):
            if self.cfg.has_far and i == self.cfg.align_at:
                aligned, align_state = self.align(x, y, state.align)  # (B, Cf, T, F_i)
                x = torch.cat([x, aligned], dim=1)
            x, st = blk(x, st)
            skips.append(x)
            mic_states.append(st)
        return skips, tuple(mic_states), tuple(far_states), align_state

    def forward(self, mic_spec, far_spec, state: NetState, speaker=None):
        """mic_spec/far_spec (B, 2, T, F), speaker (B, H) or None -> enhanced spec (B, 2, T, F), state."""
        skips, s_mic, s_far, s_align = self._encode(mic_spec, far_spec, state)
        x, s_gru = self.bottleneck(skips[-1], state.gru, speaker)       # (B, C, T, F_L)
        s_dec = []
        for i, (blk, st) in enumerate(zip(self.dec, state.dec)):
            x, st = blk(x, skips[-1 - i], st)
            s_dec.append(st)
        out, s_ccm = apply_ccm(x, mic_spec, state.ccm)                  # x: (B, 27, T, F)
        return out, NetState(s_mic, s_far, s_align, s_gru, tuple(s_dec), s_ccm)

    def embed(self, mic_spec, far_spec, state: NetState):
        """Enrollment features: per-frame LayerNorm'd GRU output with a zero speaker -> (B, T, H), state."""
        if not self.cfg.personalized or self.cfg.speaker_embedding != "internal":
            raise ValueError(f"{self.cfg.name} has no internal speaker embedding")
        skips, s_mic, s_far, s_align = self._encode(mic_spec, far_spec, state)
        feats, s_gru = self.bottleneck.features(skips[-1], state.gru, None)
        return feats, state._replace(mic=s_mic, far=s_far, align=s_align, gru=s_gru)
