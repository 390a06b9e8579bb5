"""Complex convolving mask (CCM) of DeepVQE: a 3x3 complex kernel per time-frequency bin.

The 27 mask channels are 3 basis coefficients x 9 kernel taps. The basis vectors sit at 0, 120 and
240 degrees, so a tap is M = sum_k m_k * exp(j 2 pi k / 3). Tap (i, j) multiplies the mic spectrum at
frame t - i (i = 0, 1, 2) and bin f + j (j = -1, 0, 1); the outputs of the 9 taps add up.
State: the last 2 frames of the spectrum.

>>> out, state = apply_ccm(mask, spec, init_ccm_state(1, 161))    # mask (1, 27, T, 161), spec (1, 2, T, 161)
"""
from __future__ import annotations

import math

import torch

TIME_TAPS, FREQ_TAPS = 3, 3
_COS = (1.0, -0.5, -0.5)
_SIN = (0.0, math.sqrt(3) / 2, -math.sqrt(3) / 2)


def init_ccm_state(batch: int, n_bins: int) -> torch.Tensor:
    return torch.zeros(batch, 2, TIME_TAPS - 1, n_bins)


def apply_ccm(mask: torch.Tensor, spec: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask (B, 27, T, F), spec (B, 2, T, F), state (B, 2, 2, F) -> out (B, 2, T, F), state."""
    B, _, T, F = mask.shape
    # Channel slices (narrow), not integer indexing: select ops are not delegated by XNNPACK.
    m0, m1, m2 = mask[:, 0:9], mask[:, 9:18], mask[:, 18:27]              # (B, 9, T, F) per basis vector
    m_re = m0 * _COS[0] + m1 * _COS[1] + m2 * _COS[2]                     # (B, 9, T, F)
    m_im = (m1 - m2) * _SIN[1]
    x = torch.cat([state, spec], dim=2)                                  # (B, 2, T+2, F)
    x = torch.nn.functional.pad(x, (1, 1))                               # (B, 2, T+2, F+2)
    out_re = out_im = None
    for i in range(TIME_TAPS):
        for j in range(FREQ_TAPS):
            tap = i * FREQ_TAPS + j
            xs = x[:, :, TIME_TAPS - 1 - i:TIME_TAPS - 1 - i + T, j:j + F]   # X[t - i, f + j - 1]
            xr, xi = xs[:, 0:1], xs[:, 1:2]                                  # (B, 1, T, F)
            mr, mi = m_re[:, tap:tap + 1], m_im[:, tap:tap + 1]
            re, im = mr * xr - mi * xi, mr * xi + mi * xr
            out_re = re if out_re is None else out_re + re
            out_im = im if out_im is None else out_im + im
    out = torch.cat([out_re, out_im], dim=1)                            # (B, 2, T, F)
    return out, x[:, :, T:, 1:F + 1]

