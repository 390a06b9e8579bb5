"""PCM in, PCM out: streaming STFT + DeepVQE + overlap-add, one module for offline and streaming.

>>> enh = Enhancer(get_config("dvqe-s16")).eval()
>>> y, state = enh(mic, far, enh.init_state(1))          # mic/far (1, N*160) -> y (1, N*160)
>>> clean = enh.enhance(mic_np, far_np)                    # numpy, any length, aligned to the input
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import nn

from pocketvqe.kernels import StreamingSTFT

from .config import ModelConfig
from .deepvqe import DeepVQE, NetState
from .dvector import dvector


class EnhancerState(NamedTuple):
    mic_stft: torch.Tensor              # (B, n_fft - hop) past mic samples
    far_stft: Optional[torch.Tensor]    # (B, n_fft - hop) past far-end samples (None without far end)
    net: NetState
    ola: torch.Tensor                   # (B, n_fft - hop) pending overlap-add output


class Enhancer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.stft = StreamingSTFT(cfg.n_fft, cfg.hop)
        self.net = DeepVQE(cfg)

    @property
    def speaker_dim(self) -> int:
        return self.net.speaker_dim

    def init_state(self, batch: int = 1) -> EnhancerState:
        return EnhancerState(self.stft.init_analysis_state(batch),
                             self.stft.init_analysis_state(batch) if self.cfg.has_far else None,
                             self.net.init_state(batch),
                             self.stft.init_synthesis_state(batch))

    def forward(self, mic, far, state: EnhancerState, speaker=None):
        """mic/far (B, N*hop) PCM, speaker (B, H) -> enhanced PCM (B, N*hop) delayed by n_fft - hop, state."""
        mic_spec, s_mic = self.stft.analysis(mic, state.mic_stft)       # (B, 2, N, F)
        far_spec, s_far = None, None
        if self.cfg.has_far:
            far_spec, s_far = self.stft.analysis(far, state.far_stft)
        out, s_net = self.net(mic_spec, far_spec, state.net, speaker)
        pcm, s_ola = self.stft.synthesis(out, state.ola)
        return pcm, EnhancerState(s_mic, s_far, s_net, s_ola)

    def embed_frames(self, mic, state: EnhancerState):
        """Enrollment features per hop: mic (B, N*hop) -> (B, N, H), state (far end is silent)."""
        mic_spec, s_mic = self.stft.analysis(mic, state.mic_stft)
        far_spec, s_far = None, None
        if self.cfg.has_far:
            far_spec, s_far = self.stft.analysis(torch.zeros_like(mic), state.far_stft)
        feats, s_net = self.net.embed(mic_spec, far_spec, state.net)
        return feats, state._replace(mic_stft=s_mic, far_stft=s_far, net=s_net)

    # ---- offline convenience on numpy signals (model's sample rate) ----
    @torch.no_grad()
    def enroll(self, enroll_pcm: np.ndarray) -> torch.Tensor:
        """Speaker embedding (D,): mean of the enrollment features over all frames (internal), or the
        separate speaker model's d-vector (``speaker_embedding="resemblyzer"``)."""
        if self.cfg.speaker_embedding != "internal":
            return torch.from_numpy(dvector(enroll_pcm, self.cfg.sample_rate))
        x = self._frames(enroll_pcm)
        feats, _ = self.embed_frames(x, self.init_state(1))
        return feats[0].mean(0)

    @torch.no_grad()
    def enhance(self, mic: np.ndarray, far: np.ndarray | None = None, speaker: torch.Tensor | None = None,
                chunk_frames: int = 1000, progress=None) -> np.ndarray:
        """Enhance a whole signal; output has the input's length and is aligned to it. Runs ``chunk_frames``
        hops at a time with the state carried over (equal to one pass over the whole signal, memory flat
        in its length); ``progress(hops)`` is called after each chunk."""
        delay, hop = self.cfg.algorithmic_latency_samples, self.cfg.hop
        n = len(mic)
        x = self._frames(mic, extra=delay)
        f = self._frames(far if far is not None else np.zeros(n, np.float32), extra=delay) if self.cfg.has_far else None
        spk = speaker.reshape(1, -1) if speaker is not None else None
        state, out, step = self.init_state(1), np.empty(x.shape[1], np.float32), chunk_frames * hop
        for at in range(0, x.shape[1], step):
            y, state = self(x[:, at:at + step], None if f is None else f[:, at:at + step], state, spk)
            out[at:at + y.shape[1]] = y[0].numpy()
            if progress is not None:
                progress(y.shape[1] // hop)
        return out[delay:delay + n]

    def _frames(self, x: np.ndarray, extra: int = 0) -> torch.Tensor:
        hop = self.cfg.hop
        total = len(x) + extra
        total += (-total) % hop
        return torch.from_numpy(np.pad(np.asarray(x, np.float32), (0, total - len(x)))).reshape(1, -1)
