"""DeepVQE building blocks, each written once as ``forward(x, state) -> (y, state)``.

Tensors are (B, C, T, F): batch, channels, frames, frequency bins. A block called on T frames with
its initial state is the offline model; called on one frame at a time it is the streaming model.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from pocketvqe.kernels import LinearGRU, push


def elu(x: torch.Tensor) -> torch.Tensor:
    """ELU(alpha=1) as relu(x) + exp(x - relu(x)) - 1  (x - relu(x) = min(x, 0), exactly).

    aten.elu is not delegated by XNNPACK, and the clamp(max=0) form fails to build in int8
    (xnn_status_unsupported_parameter). relu, sub, add and exp lower in fp32 and int8; this form
    is 5 ops (the older relu(x) + exp(-relu(-x)) - 1 was 7, and neg runs only in fp32).
    """
    r = torch.relu(x)
    return r + torch.exp(x - r) - 1.0


def conv_out_bins(n_bins: int, stride: int) -> int:
    """Frequency bins after a 3-tap conv with padding 1 and the given stride."""
    return (n_bins - 1) // stride + 1


class CausalConv2d(nn.Module):
    """Conv over (time, freq) that sees the current and ``kt - 1`` past frames (state: those frames)."""

    def __init__(self, cin: int, cout: int, n_bins: int, kernel=(4, 3), stride_f: int = 1):
        super().__init__()
        self.cin, self.n_bins, self.past = cin, n_bins, kernel[0] - 1
        self.conv = nn.Conv2d(cin, cout, kernel, stride=(1, stride_f), padding=(0, kernel[1] // 2))

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.cin, self.past, self.n_bins)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window, state = push(state, x, dim=2)                 # (B, Cin, past + T, F)
        return self.conv(window), state                       # (B, Cout, T, F')


class ConvBNELU(nn.Module):
    """Causal conv 4x3 -> BatchNorm -> ELU."""

    def __init__(self, cin: int, cout: int, n_bins: int, stride_f: int = 1):
        super().__init__()
        self.conv = CausalConv2d(cin, cout, n_bins, stride_f=stride_f)
        self.bn = nn.BatchNorm2d(cout)

    def init_state(self, batch: int) -> torch.Tensor:
        return self.conv.init_state(batch)

    def forward(self, x, state):
        y, state = self.conv(x, state)
        return elu(self.bn(y)), state


class EncoderState(NamedTuple):
    conv: torch.Tensor
    res: Optional[torch.Tensor]


class EncoderBlock(nn.Module):
    """Conv 4x3 with stride 2 in frequency (halves F), BN, ELU, then an optional residual block."""

    def __init__(self, cin: int, cout: int, n_bins: int, residual: bool):
        super().__init__()
        self.down = ConvBNELU(cin, cout, n_bins, stride_f=2)
        self.out_bins = conv_out_bins(n_bins, 2)
        self.res = ConvBNELU(cout, cout, self.out_bins) if residual else None

    def init_state(self, batch: int) -> EncoderState:
        return EncoderState(self.down.init_state(batch), self.res.init_state(batch) if self.res else None)

    def forward(self, x, state: EncoderState):
        y, s_conv = self.down(x, state.conv)                  # (B, Cout, T, F/2)
        s_res = None
        if self.res is not None:
            r, s_res = self.res(y, state.res)
            y = y + r
        return y, EncoderState(s_conv, s_res)


class DecoderState(NamedTuple):
    res: Optional[torch.Tensor]
    subpix: torch.Tensor


class DecoderBlock(nn.Module):
    """Skip (1x1 conv of the encoder output, added), optional residual block, sub-pixel conv.

    The sub-pixel conv makes 2*Cout channels and interleaves them into 2F bins, cropped to ``out_bins``.
    The last block (``last=True``) returns the raw 27 CCM channels, without BN/ELU.
    """

    def __init__(self, cin: int, cskip: int, cout: int, n_bins: int, out_bins: int, residual: bool, last: bool):
        super().__init__()
        self.cout, self.out_bins, self.last = cout, out_bins, last
        self.skip = nn.Conv2d(cskip, cin, 1)
        self.res = ConvBNELU(cin, cin, n_bins) if residual else None
        self.subpix = CausalConv2d(cin, 2 * cout, n_bins)
        self.bn = None if last else nn.BatchNorm2d(cout)

    def init_state(self, batch: int) -> DecoderState:
        return DecoderState(self.res.init_state(batch) if self.res else None, self.subpix.init_state(batch))

    @torch.no_grad()
    def fold_bn(self) -> None:
        """Fold the eval-mode BatchNorm that follows the sub-pixel reshape into the sub-pixel conv
        (exact; conv channel p*Cout + c feeds BN channel c). int8 then quantizes the normalized
        conv output: the trained dvqe-s16's raw sub-pixel outputs span +-190 against +-20 after BN."""
        if self.bn is None or isinstance(self.bn, nn.Identity):
            return
        bn, conv = self.bn, self.subpix.conv
        g = bn.weight / torch.sqrt(bn.running_var + bn.eps)                   # (Cout,)
        g2, shift = g.repeat(2), (bn.bias - bn.running_mean * g).repeat(2)   # (2*Cout,)
        conv.weight.mul_(g2[:, None, None, None])
        conv.bias.copy_(conv.bias * g2 + shift)
        self.bn = nn.Identity()

    def forward(self, x, skip, state: DecoderState):
        x = x + self.skip(skip)
        s_res = None
        if self.res is not None:
            r, s_res = self.res(x, state.res)
            x = x + r
        y, s_sub = self.subpix(x, state.subpix)               # (B, 2*Cout, T, F)
        B, _, T, F = y.shape
        y = y.reshape(B, 2, self.cout, T, F).permute(0, 2, 3, 4, 1)   # (B, Cout, T, F, 2)
        y = y.reshape(B, self.cout, T, 2 * F)[..., :self.out_bins]      # (B, Cout, T, F_out)
        if not self.last:
            y = elu(self.bn(y))
        return y, DecoderState(s_res, s_sub)


class AlignState(NamedTuple):
    keys: torch.Tensor      # (B, h, F, D-1)   past far-end keys, newest last
    far: torch.Tensor       # (B, D-1, Cf, F)  past far-end features, newest last
    sim: torch.Tensor       # (B, h, 4, D)     past similarity frames for the 5x3 merge conv


class AlignBlock(nn.Module):
    """Soft delay estimation between mic and far-end features (DeepVQE's AlignBlock).

    Q = 1x1(mic), K = 1x1(far) with h channels; for each delay d in [0, D) the similarity
    sum_f Q[t, f] K[t - d, f]; a causal 5x3 conv over (time, delay) merges the h channels; softmax
    over delay weights the delayed far-end features. Window index j holds delay D - 1 - j.
    """

    def __init__(self, c_mic: int, c_far: int, n_bins: int, heads: int, delay: int):
        super().__init__()
        self.h, self.D, self.c_far, self.n_bins = heads, delay, c_far, n_bins
        self.q = nn.Conv2d(c_mic, heads, 1)
        self.k = nn.Conv2d(c_far, heads, 1)
        self.merge = nn.Conv2d(heads, 1, (5, 3), padding=(0, 1))
        self.scale = n_bins ** -0.5

    def init_state(self, batch: int) -> AlignState:
        return AlignState(torch.zeros(batch, self.h, self.n_bins, self.D - 1),
                          torch.zeros(batch, self.D - 1, self.c_far, self.n_bins),
                          torch.zeros(batch, self.h, 4, self.D))

    def forward(self, mic, far, state: AlignState):
        B, _, T, F = far.shape
        D = self.D
        q = self.q(mic) * self.scale                                  # (B, h, T, F)
        kwin, s_keys = push(state.keys, self.k(far).transpose(2, 3), dim=3)   # (B, h, F, D-1+T)
        fwin, s_far = push(state.far, far.permute(0, 2, 1, 3), dim=1)         # (B, D-1+T, Cf, F)
        if T == 1:
            sim = torch.bmm(q.reshape(B * self.h, 1, F), kwin.reshape(B * self.h, F, D))
            sim = sim.reshape(B, self.h, 1, D)                        # (B, h, 1, D)
        else:
            kt = kwin.transpose(2, 3)                                 # (B, h, D-1+T, F)
            sim = torch.stack([(q * kt[:, :, j:j + T]).sum(-1) for j in range(D)], dim=-1)  # (B, h, T, D)
        swin, s_sim = push(state.sim, sim, dim=2)                     # (B, h, 4+T, D)
        # Softmax on a 3-D view: XNNPACK mis-lowers softmax over the last dim of a conv's 4-D output.
        w = torch.softmax(self.merge(swin).reshape(B, T, D), dim=-1)  # (B, T, D)
        if T == 1:
            out = torch.bmm(w, fwin.reshape(B, D, self.c_far * F))            # (B, 1, Cf*F)
            out = out.reshape(B, 1, self.c_far, F)                             # (B, T, Cf, F)
        else:
            w = w.reshape(B, T, D, 1, 1)
            out = sum(w[:, :, j] * fwin[:, j:j + T] for j in range(D))         # (B, T, Cf, F)
        return out.permute(0, 2, 1, 3), AlignState(s_keys, s_far, s_sim)      # (B, Cf, T, F)


class LayerNorm(nn.Module):
    """LayerNorm over the last dim with means as matmuls, so XNNPACK delegates it."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("avg", torch.full((dim, 1), 1.0 / dim), persistent=False)

    def forward(self, x):
        xc = x - x @ self.avg
        var = (xc * xc) @ self.avg
        return xc * torch.rsqrt(var + self.eps) * self.weight + self.bias


class Bottleneck(nn.Module):
    """GRU over the flattened C*F features, then Linear back to C*F.

    Personalized: a projected speaker embedding is concatenated to the GRU input and the GRU output
    is LayerNorm'd; the LayerNorm'd output is also what enrollment averages into the embedding.
    """

    def __init__(self, channels: int, n_bins: int, hidden: int, speaker_proj: int = 0, speaker_dim: int = 0):
        super().__init__()
        self.c, self.f, self.hidden = channels, n_bins, hidden
        self.speaker_dim = speaker_dim or hidden                      # internal embedding: the GRU's own size
        self.proj = nn.Linear(self.speaker_dim, speaker_proj) if speaker_proj else None
        self.gru = LinearGRU(channels * n_bins + speaker_proj, hidden)
        self.norm = LayerNorm(hidden) if speaker_proj else None
        self.fc = nn.Linear(hidden, channels * n_bins)

    def init_state(self, batch: int) -> torch.Tensor:
        return self.gru.init_state(batch)

    def features(self, x, h, speaker=None):
        """x (B, C, T, F) -> GRU features (B, T, H) (LayerNorm'd if personalized), h."""
        B, C, T, F = x.shape
        z = x.permute(0, 2, 1, 3).reshape(B, T, C * F)                # (B, T, C*F)
        if self.proj is not None:
            if speaker is None:
                speaker = torch.zeros(B, self.speaker_dim, dtype=x.dtype, device=x.device)
            # (B, 1, D) -> (B, 1, P): no reshape between the int8 linear and the cat (XNNPACK needs
            # a reshape's input and output qparams equal, the cat imposes its own)
            s = self.proj(speaker.reshape(B, 1, self.speaker_dim))    # (B, 1, P)
            z = torch.cat([z, s if T == 1 else s.expand(B, T, s.shape[-1])], dim=-1)
        y, h = self.gru(z, h)                                          # (B, T, H)
        return (self.norm(y) if self.norm is not None else y), h

    def forward(self, x, h, speaker=None):
        B, C, T, F = x.shape
        y, h = self.features(x, h, speaker)
        y = self.fc(y).reshape(B, T, C, F).permute(0, 2, 1, 3)        # (B, C, T, F)
        return y, h
