"""Streaming STFT analysis / overlap-add synthesis as matmuls with a DFT basis.

One module serves offline (T hops at once) and streaming (one hop per call): the state is the
last ``n_fft - hop`` input samples (analysis) and the pending overlap-add tail (synthesis).
Written with matmul, reshape, cat and pad only, so it lowers into an XNNPACK delegate.

>>> stft = StreamingSTFT(n_fft=320, hop=160)
>>> spec, a = stft.analysis(torch.randn(1, 160 * 5), stft.init_analysis_state(1))   # (1, 2, 5, 161)
>>> pcm, s = stft.synthesis(spec, stft.init_synthesis_state(1))                      # (1, 800)
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sqrt_hann(n: int) -> torch.Tensor:
    """Periodic sqrt-Hann window; its square overlap-adds to 1 at 50 % overlap."""
    return torch.hann_window(n, periodic=True, dtype=torch.float64).sqrt()


def dft_bases(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (n_fft, 2F) and inverse (2F, n_fft) real-DFT bases (float64), F = n_fft // 2 + 1.

    Forward: [Re | Im] = frame @ fwd with Re_k = sum x_n cos(2 pi k n / N), Im_k = -sum x_n sin(...).
    Inverse: frame = [Re | Im] @ inv, the irfft (imaginary parts of DC and Nyquist ignored).
    """
    n_bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_bins, dtype=torch.float64)
    ang = 2 * math.pi * torch.outer(n, k) / n_fft                       # (N, F)
    fwd = torch.cat([torch.cos(ang), -torch.sin(ang)], dim=1)           # (N, 2F)
    c = torch.full((n_bins,), 2.0, dtype=torch.float64)
    c[0] = 1.0
    if n_fft % 2 == 0:
        c[-1] = 1.0
    inv = torch.cat([(c[:, None] * torch.cos(ang.T)), -(c[:, None] * torch.sin(ang.T))], dim=0) / n_fft  # (2F, N)
    return fwd, inv


class StreamingSTFT(nn.Module):
    """sqrt-Hann STFT with hop ``hop``; frame t covers input samples [t*hop - (n_fft-hop), t*hop + hop).

    Spectra are real tensors (B, 2, T, F): channel 0 real, channel 1 imaginary.
    Synthesis output hop t is input hop t delayed by ``n_fft - hop`` samples (the algorithmic delay).
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        if n_fft % hop:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop ({hop})")
        self.n_fft, self.hop, self.n_bins = n_fft, hop, n_fft // 2 + 1
        self.overlap = n_fft // hop                                     # frames covering one sample
        win = sqrt_hann(n_fft)
        fwd, inv = dft_bases(n_fft)
        self.register_buffer("fwd", (win[:, None] * fwd).float(), persistent=False)   # window folded in
        self.register_buffer("inv", (inv * win[None, :]).float(), persistent=False)

    def init_analysis_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.n_fft - self.hop)

    def init_synthesis_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.n_fft - self.hop)

    def analysis(self, pcm: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pcm (B, T*hop), state (B, n_fft-hop) -> spec (B, 2, T, F), state."""
        B, n = pcm.shape
        T = n // self.hop
        buf = torch.cat([state, pcm], dim=1)                            # (B, n_fft - hop + T*hop)
        if T == 1:
            frames = buf.reshape(B, 1, self.n_fft)                      # (B, 1, n_fft)
        else:
            frames = buf.unfold(1, self.n_fft, self.hop)                # (B, T, n_fft)
        spec = frames @ self.fwd                                        # (B, T, 2F)
        spec = spec.reshape(B, T, 2, self.n_bins).permute(0, 2, 1, 3)   # (B, 2, T, F)
        return spec, buf[:, buf.shape[1] - (self.n_fft - self.hop):]

    def synthesis(self, spec: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """spec (B, 2, T, F), state (B, n_fft-hop) -> pcm (B, T*hop), state."""
        B, _, T, F = spec.shape
        R, hop = self.overlap, self.hop
        frames = spec.permute(0, 2, 1, 3).reshape(B, T, 2 * F) @ self.inv      # (B, T, n_fft)
        parts = frames.reshape(B, T, R, hop)                                   # (B, T, R, hop)
        # Part r of frame t lands on output hop t + r; the state holds hops T..T+R-2 pending.
        acc = nn.functional.pad(state.reshape(B, R - 1, hop), (0, 0, 0, T))    # (B, T+R-1, hop)
        for r in range(R):
            part = parts.narrow(2, r, 1).reshape(B, T, hop)                    # (B, T, hop)
            acc = acc + nn.functional.pad(part, (0, 0, r, R - 1 - r))
        out = acc[:, :T].reshape(B, T * hop)
        return out, acc[:, T:].reshape(B, (R - 1) * hop)
