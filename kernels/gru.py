"""A GRU built from six ``nn.Linear`` so every gate weight quantizes to int8 and lowers to XNNPACK.

Matches ``nn.GRU`` (one layer, batch_first) numerically and loads its weights. Training over long
sequences uses the fused ATen kernel with the same weights; export and single steps use the cell.

>>> gru = LinearGRU(8, 16)
>>> y, h = gru(torch.randn(2, 5, 8), gru.init_state(2))        # y (2, 5, 16), h (2, 16)
"""
from __future__ import annotations

import torch
from torch import nn


class LinearGRU(nn.Module):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.ir, self.iz, self.in_ = (nn.Linear(input_size, hidden_size) for _ in range(3))
        self.hr, self.hz, self.hn = (nn.Linear(hidden_size, hidden_size) for _ in range(3))
        bound = hidden_size ** -0.5                     # nn.GRU's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.hidden_size)

    def cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: x (B, In), h (B, H) -> h (B, H), the nn.GRU equations."""
        r = torch.sigmoid(self.ir(x) + self.hr(h))
        z = torch.sigmoid(self.iz(x) + self.hz(h))
        n = torch.tanh(self.in_(x) + r * self.hn(h))
        return n + z * (h - n)                          # (1 - z) * n + z * h

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, In), h (B, H) -> y (B, T, H), h (B, H)."""
        B, T, _ = x.shape
        if T > 1 and not torch.compiler.is_exporting():
            return self._fused(x, h)
        ys = []
        for t in range(T):   # narrow + reshape (not x[:, t]): XNNPACK delegates them, not select
            h = self.cell(x.narrow(1, t, 1).reshape(B, self.input_size), h)
            ys.append(h.reshape(B, 1, self.hidden_size))
        return (ys[0] if T == 1 else torch.cat(ys, dim=1)), h

    def _fused(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = [torch.cat([self.ir.weight, self.iz.weight, self.in_.weight]),
             torch.cat([self.hr.weight, self.hz.weight, self.hn.weight]),
             torch.cat([self.ir.bias, self.iz.bias, self.in_.bias]),
             torch.cat([self.hr.bias, self.hz.bias, self.hn.bias])]
        y, hn = torch._VF.gru(x, h.unsqueeze(0), w, True, 1, 0.0, self.training, False, True)
        return y, hn[0]

    @torch.no_grad()
    def load_from_gru(self, gru: nn.GRU) -> "LinearGRU":
        """Copy the weights of a one-layer unidirectional ``nn.GRU`` (gate order r, z, n)."""
        if gru.num_layers != 1 or gru.bidirectional or gru.input_size != self.input_size \
                or gru.hidden_size != self.hidden_size:
            raise ValueError("load_from_gru needs a 1-layer unidirectional nn.GRU of the same sizes")
        H = self.hidden_size
        for i, (lin_i, lin_h) in enumerate([(self.ir, self.hr), (self.iz, self.hz), (self.in_, self.hn)]):
            lin_i.weight.copy_(gru.weight_ih_l0[i * H:(i + 1) * H])
            lin_i.bias.copy_(gru.bias_ih_l0[i * H:(i + 1) * H])
            lin_h.weight.copy_(gru.weight_hh_l0[i * H:(i + 1) * H])
            lin_h.bias.copy_(gru.bias_hh_l0[i * H:(i + 1) * H])
        return self
