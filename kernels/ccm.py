"""Complex convolving mask (CCM) of DeepVQE: a 3x3 complex kernel per time-frequency bin.

The 27 mask channels are 3 basis coefficients x 9 kernel taps. The basis vectors sit at 0, 120 and
240 degrees, so a tap is M = sum_k m_k * exp(j 2 pi k / 3). Tap (i, j) multiplies the mic spectrum at
frame t - i (i = 0, 1, 2) and bin f + j (j = -1, 0, 1); the outputs of the 9 taps add up.
State: the last 2 frames of the spectrum.

Written as three convolutions with constant weights and one multiply (7 ops, each one XNNPACK node,
instead of ~100 for the tap-by-tap form): a one-hot 3x3 conv gathers the 9 shifted copies of the
real and imaginary spectrum, a 1x1 conv maps the 27 mask channels to the taps' real and imaginary
parts, and a 1x1 conv of +-1 sums the 36 products into the real and imaginary outputs.

>>> out, state = apply_ccm(mask, spec, init_ccm_state(1, 161))    # mask (1, 27, T, 161), spec (1, 2, T, 161)
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as Fn

TIME_TAPS, FREQ_TAPS = 3, 3
TAPS = TIME_TAPS * FREQ_TAPS
_COS = (1.0, -0.5, -0.5)
_SIN = (0.0, math.sqrt(3) / 2, -math.sqrt(3) / 2)


def init_ccm_state(batch: int, n_bins: int) -> torch.Tensor:
    return torch.zeros(batch, 2, TIME_TAPS - 1, n_bins)


def ccm_weights() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Constant conv weights (gather (36, 2, 3, 3), basis (36, 27, 1, 1), total (2, 36, 1, 1)).

    The 36 product channels, 9 taps each: m_re * x_re | m_re * x_im | m_im * x_im | m_im * x_re.
    """
    gather = torch.zeros(4 * TAPS, 2, TIME_TAPS, FREQ_TAPS)
    basis = torch.zeros(4 * TAPS, 3 * TAPS, 1, 1)
    for i in range(TIME_TAPS):
        for j in range(FREQ_TAPS):
            tap, row = i * FREQ_TAPS + j, TIME_TAPS - 1 - i     # tap (i, j) reads window row 2 - i
            for block, part in enumerate((0, 1, 1, 0)):         # x_re, x_im, x_im, x_re
                gather[block * TAPS + tap, part, row, j] = 1.0
            for k in range(3):
                basis[tap, k * TAPS + tap] = basis[TAPS + tap, k * TAPS + tap] = _COS[k]
                basis[2 * TAPS + tap, k * TAPS + tap] = basis[3 * TAPS + tap, k * TAPS + tap] = _SIN[k]
    total = torch.zeros(2, 4 * TAPS, 1, 1)
    total[0, :TAPS], total[0, 2 * TAPS:3 * TAPS] = 1.0, -1.0            # re = m_re x_re - m_im x_im
    total[1, TAPS:2 * TAPS], total[1, 3 * TAPS:] = 1.0, 1.0             # im = m_re x_im + m_im x_re
    return gather, basis, total


_WEIGHTS = ccm_weights()


def apply_ccm(mask: torch.Tensor, spec: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask (B, 27, T, F), spec (B, 2, T, F), state (B, 2, 2, F) -> out (B, 2, T, F), state."""
    T = mask.shape[2]
    w = _WEIGHTS
    if w[0].device != mask.device or w[0].dtype != mask.dtype:      # no op in the CPU fp32 graph
        w = tuple(t.to(mask) for t in w)
    gather, basis, total = w
    x = torch.cat([state, spec], dim=2)                                  # (B, 2, T+2, F)
    taps = Fn.conv2d(Fn.pad(x, (1, 1)), gather)                          # (B, 36, T, F) X[t - i, f + j - 1]
    m = Fn.conv2d(mask, basis)                                           # (B, 36, T, F) tap re/im parts
    out = Fn.conv2d(m * taps, total)                                     # (B, 2, T, F)
    return out, x[:, :, T:]
