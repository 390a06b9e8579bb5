"""Complex compressed spectral MSE (exponent 0.3, magnitude/complex blend 0.7/0.3).

With S the sqrt-Hann STFT of the target and S' that of the (aligned) output, c the exponent::

    L = w * mean |(|S'|^c - |S|^c)|^2  +  (1 - w) * mean |S'_c - S_c|^2,   S_c = |S|^c e^{j angle S}

(mean over batch, frames and bins; the complex term is the squared complex difference). A zero
spectrum compresses to ~0 through ``eps`` so silent targets (far-end single talk) keep finite
gradients.

The speech-keeping term (``keep_weight``, 0 = off) adds ``keep_weight * mean relu(|S|^c - |S'|^c)^2``:
the compressed target magnitude the estimate falls short of. The MSE alone charges a removed speech
bin and an equally wrong residual-noise bin the same, so a model unsure of a bin learns to drop it
(over-suppression: the SIG, STOI and TSOS the first checkpoints lost); this term makes taking speech
away dearer than leaving a little noise in.

>>> loss = CompressedSpectralLoss(n_fft=320, hop=160)
>>> float(loss(x, x))                                       # doctest: +SKIP
0.0
"""
from __future__ import annotations

import torch
from torch import nn

from pocketvqe.kernels import StreamingSTFT


def compress_spectrum(spec: torch.Tensor, exponent: float, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """spec (B, 2, T, F) real/imag -> (|S|^c (B, T, F), S_c (B, 2, T, F))."""
    power = spec[:, 0] ** 2 + spec[:, 1] ** 2 + eps                    # (B, T, F)
    mag_c = power ** (exponent / 2)
    cplx_c = spec * (power ** ((exponent - 1) / 2)).unsqueeze(1)       # (B, 2, T, F)
    return mag_c, cplx_c


class CompressedSpectralLoss(nn.Module):
    """PCM (B, N) estimate vs target -> scalar loss (``reduction='mean'``) or per clip (B,) (``'none'``)."""

    def __init__(self, n_fft: int, hop: int, exponent: float = 0.3, mag_weight: float = 0.7, eps: float = 1e-8,
                 keep_weight: float = 0.0):
        super().__init__()
        if keep_weight < 0:
            raise ValueError(f"keep_weight={keep_weight} must be >= 0 (0 turns the speech-keeping term off)")
        self.stft = StreamingSTFT(n_fft, hop)
        self.hop, self.exponent, self.mag_weight, self.eps = hop, exponent, mag_weight, eps
        self.keep_weight = keep_weight

    def spectrum(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, 2, T, F); N is zero-padded to a multiple of hop; frames start with zero history."""
        pad = (-pcm.shape[1]) % self.hop
        if pad:
            pcm = nn.functional.pad(pcm, (0, pad))
        state = torch.zeros(pcm.shape[0], self.stft.n_fft - self.hop, dtype=pcm.dtype, device=pcm.device)
        return self.stft.analysis(pcm, state)[0]

    def terms(self, estimate: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-clip magnitude, complex and speech-keeping (shortfall) terms, each (B,)."""
        if estimate.shape != target.shape:
            raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ in shape")
        m_e, c_e = compress_spectrum(self.spectrum(estimate), self.exponent, self.eps)
        m_t, c_t = compress_spectrum(self.spectrum(target), self.exponent, self.eps)
        mag = (m_e - m_t).pow(2).mean(dim=(1, 2))
        cplx = (c_e - c_t).pow(2).sum(1).mean(dim=(1, 2))
        short = torch.relu(m_t - m_e).pow(2).mean(dim=(1, 2))
        return mag, cplx, short

    def forward(self, estimate: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        mag, cplx, short = self.terms(estimate, target)
        per_clip = self.mag_weight * mag + (1 - self.mag_weight) * cplx
        if self.keep_weight:
            per_clip = per_clip + self.keep_weight * short
        if reduction == "none":
            return per_clip
        if reduction != "mean":
            raise ValueError(f"reduction={reduction!r}: use 'mean' or 'none'")
        return per_clip.mean()
