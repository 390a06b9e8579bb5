"""The AlignBlock's far-end ring buffer: the last ``length`` frames along a time axis.

Kept as a shift register (concatenate, keep the tail) so the newest frame is always last;
that keeps delay d at a fixed index (``length - 1 - d`` of the window) and lowers to cat + slice.

>>> window, buf = push(buf, x, dim=2)       # buf (B, C, L, F), x (B, C, T, F) -> window (B, C, L+T, F)
"""
from __future__ import annotations

import torch


def push(buf: torch.Tensor, x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``x`` to ``buf`` along ``dim``; return the whole window and the new buffer (same size)."""
    window = torch.cat([buf, x], dim=dim)
    keep = buf.shape[dim]
    return window, window.narrow(dim, window.shape[dim] - keep, keep)

