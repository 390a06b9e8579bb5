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


def mixed_radix_bases(n_fft: int, radix: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Cooley-Tukey stage of the real DFT (float64): N = n_fft = R * M, n = R*m + r, k = k1 + M*k2.

    X[k] = sum_r W_R^(r*k2) W_N^(r*k1) Y_r[k1], Y_r the M-point DFT of x[r::R], W_N = exp(-2 pi i / N).
    Complex values travel as four real components [re, im, im, re], so the twiddle is one elementwise mul:
      inner (M, 4M):      x[r::R] @ inner = Y_r[k1] as [re, im, im, re] (columns comp*M + k1)
      twiddle (R, 4, M):  [c, s, c, -s] with c + i s = exp(2 pi i r k1 / N); Y_r * twiddle sums pairwise
                          (0+1, 2+3) to W_N^(r*k1) Y_r
      outer (4R, 2*K2):   the R-point DFT over r (rows comp*R + r) -> [Re | Im] of X[k1 + M*k2], K2 = ceil(F / M)
    Run backwards (outer.T, twiddle, inner.T) the chain is its adjoint: the irfft up to the c_k / N weights.
    """
    R, M = radix, n_fft // radix
    K2 = -(-(n_fft // 2 + 1) // M)
    m, r, k2 = (torch.arange(n, dtype=torch.float64) for n in (M, R, K2))
    ang = 2 * math.pi * torch.outer(m, m) / M                           # (M, M) [m, k1]
    inner = torch.cat([ang.cos(), -ang.sin(), -ang.sin(), ang.cos()], dim=1)                  # (M, 4M)
    ang = 2 * math.pi * torch.outer(r, m) / n_fft                       # (R, M) [r, k1]
    twiddle = torch.stack([ang.cos(), ang.sin(), ang.cos(), -ang.sin()], dim=1)              # (R, 4, M)
    ang = 2 * math.pi * torch.outer(r, k2) / R                          # (R, K2) [r, k2]
    re = torch.cat([ang.cos(), -ang.sin()], dim=1)                      # (R, 2*K2) from re components
    im = torch.cat([ang.sin(), ang.cos()], dim=1)                       # (R, 2*K2) from im components
    return inner, twiddle, torch.cat([re, re, im, im], dim=0)           # outer (4R, 2*K2)


class StreamingSTFT(nn.Module):
    """sqrt-Hann STFT with hop ``hop``; frame t covers input samples [t*hop - (n_fft-hop), t*hop + hop).

    Spectra are real tensors (B, 2, T, F): channel 0 real, channel 1 imaginary.
    Synthesis output hop t is input hop t delayed by ``n_fft - hop`` samples (the algorithmic delay).
    The DFTs are one mixed-radix stage (:func:`mixed_radix_bases`, radix R = the divisor of n_fft nearest
    sqrt(n_fft)): 19 KB of constants at n_fft=320 where the dense bases (:func:`dft_bases`) take 824 KB.
    Analysis and synthesis share one window and one twiddle table (analysis permutes, then multiplies;
    synthesis multiplies, then permutes), so a program stores each once.
    Tables are read from ``_buffers``: nn.Module.__getattr__ costs ~1 us a lookup, +15 % on the eager step.
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        if n_fft % hop:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop ({hop})")
        self.n_fft, self.hop, self.n_bins = n_fft, hop, n_fft // 2 + 1
        self.overlap = n_fft // hop                                     # frames covering one sample
        self.radix = min((d for d in range(1, n_fft + 1) if n_fft % d == 0), key=lambda d: abs(d * d - n_fft))
        M = n_fft // self.radix
        inner, twiddle, outer = mixed_radix_bases(n_fft, self.radix)
        K2 = outer.shape[1] // 2
        win = sqrt_hann(n_fft).reshape(M, -1)                           # (M, R): w[R*m + r]
        c = torch.zeros(K2 * M, dtype=torch.float64)                    # irfft weights c_k / N, 0 on padded bins
        c[:self.n_bins] = 2.0 / n_fft
        c[0] = 1.0 / n_fft                                              # DC and Nyquist count once
        if n_fft % 2 == 0:
            c[n_fft // 2] = 1.0 / n_fft
        consts = dict(inner=inner, outer=outer,
                      twiddle=twiddle.permute(2, 1, 0), win=win.T,      # (M, 4, R), (R, M)
                      irfft_weight=c.reshape(K2, 1, M).expand(K2, 2, M).permute(2, 1, 0))   # (M, 2, K2)
        for name, t in consts.items():
            self.register_buffer(name, t.contiguous().float(), persistent=False)

    def init_analysis_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.n_fft - self.hop)

    def init_synthesis_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.n_fft - self.hop)

    def analysis(self, pcm: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pcm (B, T*hop), state (B, n_fft-hop) -> spec (B, 2, T, F), state."""
        B, n = pcm.shape
        T, R, M, b = n // self.hop, self.radix, self.n_fft // self.radix, self._buffers
        buf = torch.cat([state, pcm], dim=1)                            # (B, n_fft - hop + T*hop)
        if T == 1:
            frames = buf.reshape(B, 1, M, R)                            # (B, 1, M, R): sample R*m + r
        else:
            frames = buf.unfold(1, self.n_fft, self.hop).reshape(B, T, M, R)    # (B, T, M, R)
        x = b["win"] * frames.transpose(2, 3)                           # (B, T, R, M): row r is x[r::R]
        y = (x @ b["inner"]).reshape(B, T, R, 4, M)                     # (B, T, R, 4, M): Y_r[k1]
        y = (b["twiddle"] * y.permute(0, 1, 4, 3, 2)).reshape(B, T, M, 4 * R)      # (B, T, M, 4R)
        spec = (y @ b["outer"]).reshape(B, T, M, 2, -1)                 # (B, T, M, 2, K2): X[k1 + M*k2]
        spec = spec.permute(0, 3, 1, 4, 2).reshape(B, 2, T, -1)         # (B, 2, T, K2*M)
        return spec.narrow(3, 0, self.n_bins), buf[:, buf.shape[1] - (self.n_fft - self.hop):]

    def synthesis(self, spec: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """spec (B, 2, T, F), state (B, n_fft-hop) -> pcm (B, T*hop), state."""
        B, _, T, F = spec.shape
        R, M, hop, ov, b = self.radix, self.n_fft // self.radix, self.hop, self.overlap, self._buffers
        K2 = -(-F // M)
        # analysis backwards: bins zero-padded to K2*M and weighted by c_k / N, then the transposed chain
        x = nn.functional.pad(spec, (0, K2 * M - F)).reshape(B, 2, T, K2, M)        # (B, 2, T, K2, M)
        x = (b["irfft_weight"] * x.permute(0, 2, 4, 1, 3)).reshape(B, T, M, 2 * K2)  # (B, T, M, 2K2)
        y = nn.functional.linear(x, b["outer"]).reshape(B, T, M, 4, R)  # (B, T, M, 4, R)
        y = (b["twiddle"] * y).permute(0, 1, 4, 3, 2).reshape(B, T, R, 4 * M)      # (B, T, R, 4M)
        y = nn.functional.linear(y, b["inner"])                         # (B, T, R, M)
        frames = (b["win"] * y).transpose(2, 3)                         # (B, T, M, R): sample R*m + r
        if T == 1:                                                      # streaming: add the pending tail
            acc = nn.functional.pad(state, (0, hop)) + frames.reshape(B, self.n_fft)  # (B, n_fft)
            return acc.narrow(1, 0, hop), acc.narrow(1, hop, self.n_fft - hop)
        parts = frames.reshape(B, T, ov, hop)                           # (B, T, ov, hop)
        # Part r of frame t lands on output hop t + r; the state holds hops T..T+ov-2 pending.
        acc = nn.functional.pad(state.reshape(B, ov - 1, hop), (0, 0, 0, T))  # (B, T+ov-1, hop)
        for r in range(ov):
            part = parts.narrow(2, r, 1).reshape(B, T, hop)             # (B, T, hop)
            acc = acc + nn.functional.pad(part, (0, 0, r, ov - 1 - r))
        out = acc[:, :T].reshape(B, T * hop)
        return out, acc[:, T:].reshape(B, (ov - 1) * hop)
