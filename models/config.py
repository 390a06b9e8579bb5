"""Model configurations: frozen, validated, registered by name.

>>> cfg = get_config("dvqe-s16")
>>> cfg.n_bins, cfg.hop
(161, 160)
>>> small = dataclasses.replace(cfg, name="tiny", mic_channels=(4, 8, 8, 8))   # validated again
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pocketvqe.errors import PocketVQEError

SPEAKER_EMBEDDINGS = {"internal": 0, "resemblyzer": 256}     # source -> fixed dimension (0: gru_hidden)


@dataclass(frozen=True)
class ModelConfig:
    """A DeepVQE-family network.

    mic_channels / dec_channels: encoder and decoder filters (the last decoder block outputs the
    27 CCM channels). far_channels: far-end encoder filters; empty means a noise-suppression-only
    model with no far-end branch. The aligned far-end features join the input of mic block
    ``align_at`` (0-based; 2 = the paper's block 3). gru_hidden: bottleneck GRU size.
    personalized: PVQE speaker conditioning: an embedding projected to ``speaker_proj`` and
    concatenated to the GRU input. ``speaker_embedding`` says where it comes from: ``internal``
    (PVQE: the model's own LayerNorm'd GRU output averaged over an enrollment pass, dimension
    gru_hidden) or ``resemblyzer`` (a separate speaker model's 256-d d-vector, the PVQE paper's
    baseline; computed on the host, so device programs take it as an input).
    """

    name: str
    sample_rate: int = 16000
    n_fft: int = 320
    hop: int = 160
    mic_channels: tuple[int, ...] = (16, 40, 56, 24)
    far_channels: tuple[int, ...] = (8, 24)
    dec_channels: tuple[int, ...] = (40, 32, 32, 27)
    residual: bool = False
    gru_hidden: int = 64
    align_delay: int = 100
    align_heads: int = 8
    align_at: int = 2
    personalized: bool = False
    speaker_proj: int = 32
    speaker_embedding: str = "internal"
    compress: float = 0.3

    def __post_init__(self):
        def bad(msg):
            raise PocketVQEError(f"config {self.name!r}: {msg}")
        if self.n_fft <= 0 or self.hop <= 0 or self.n_fft % self.hop:
            bad(f"n_fft ({self.n_fft}) must be a positive multiple of hop ({self.hop})")
        if len(self.dec_channels) != len(self.mic_channels):
            bad("dec_channels needs one block per mic encoder block")
        if self.dec_channels[-1] != 27:
            bad("the last decoder block must output the 27 CCM channels")
        if self.far_channels and len(self.far_channels) != self.align_at:
            bad(f"far_channels needs align_at={self.align_at} blocks to reach the mic block it joins")
        if self.far_channels and not 0 < self.align_at < len(self.mic_channels):
            bad("align_at must point inside the mic encoder")
        if min(self.mic_channels + self.far_channels + self.dec_channels) <= 0 or self.gru_hidden <= 0:
            bad("channel counts and gru_hidden must be positive")
        if self.far_channels and (self.align_delay < 1 or self.align_heads < 1):
            bad("align_delay and align_heads must be >= 1")
        if self.speaker_embedding not in SPEAKER_EMBEDDINGS:
            bad(f"speaker_embedding must be one of {sorted(SPEAKER_EMBEDDINGS)}, not {self.speaker_embedding!r}")
        if not 0 < self.compress <= 1:
            bad("compress (power-law exponent) must be in (0, 1]")

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def speaker_dim(self) -> int:
        """Length of the speaker embedding a personalized model takes (0 if not personalized)."""
        if not self.personalized:
            return 0
        return self.gru_hidden if self.speaker_embedding == "internal" else SPEAKER_EMBEDDINGS[self.speaker_embedding]

    @property
    def has_far(self) -> bool:
        return bool(self.far_channels)

    @property
    def algorithmic_latency_samples(self) -> int:
        """Output hop t carries input hop t delayed by the window overlap."""
        return self.n_fft - self.hop

    @property
    def algorithmic_latency_ms(self) -> float:
        """One hop of buffering plus the window overlap (the DNS Challenge definition: frame + look-back delay)."""
        return 1000.0 * self.n_fft / self.sample_rate

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise PocketVQEError(f"unknown config keys {sorted(unknown)}: this file was written by another "
                                 "pocketvqe version; re-create it with this one")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


_S = dict(mic_channels=(16, 40, 56, 24), far_channels=(8, 24), dec_channels=(40, 32, 32, 27),
          residual=False, align_heads=8)
_L = dict(mic_channels=(64, 128, 128, 128, 128), far_channels=(32, 128), dec_channels=(128, 128, 128, 64, 27),
          residual=True, align_heads=32)
_16 = dict(sample_rate=16000, n_fft=320, hop=160)
_24 = dict(sample_rate=24000, n_fft=480, hop=240)

# GRU sizes chosen so the 24 kHz models match the paper's parameter counts (7.5 M and 0.59 M).
REGISTRY: dict[str, ModelConfig] = {c.name: c for c in [
    ModelConfig("dvqe-s16", **_16, **_S, gru_hidden=192),
    ModelConfig("dvqe16", **_16, **_L, gru_hidden=552),
    ModelConfig("dvqe-s24", **_24, **_S, gru_hidden=192),
    ModelConfig("dvqe24", **_24, **_L, gru_hidden=552),
    ModelConfig("pvqe-s16", **_16, **_S, gru_hidden=192, personalized=True),
    ModelConfig("pvqe16", **_16, **_L, gru_hidden=552, personalized=True, speaker_proj=128),
    ModelConfig("pvqe-s16-dvec", **_16, **_S, gru_hidden=192, personalized=True, speaker_embedding="resemblyzer"),
    ModelConfig("ns-s16", **_16, **{**_S, "far_channels": ()}, gru_hidden=192),
]}


def get_config(name: str) -> ModelConfig:
    try:
        return REGISTRY[name]
    except KeyError:
        raise PocketVQEError(f"unknown config {name!r}: choose one of {', '.join(REGISTRY)} "
                             "(see `pocketvqe info --list`)") from None


def list_configs() -> list[str]:
    return list(REGISTRY)
