"""On-device kernels: streaming STFT, complex convolving mask, int8-friendly GRU, ring buffer."""
from .ccm import apply_ccm, init_ccm_state
from .gru import LinearGRU
from .ring import push
from .stft import StreamingSTFT

__all__ = ["StreamingSTFT", "apply_ccm", "init_ccm_state", "LinearGRU", "push"]
