"""The DeepVQE model family: configs, blocks, the spectral network, the PCM enhancer, checkpoints."""
from .config import ModelConfig, get_config, list_configs
from .deepvqe import DeepVQE, NetState
from .enhancer import Enhancer, EnhancerState

__all__ = ["ModelConfig", "get_config", "list_configs", "DeepVQE", "NetState", "Enhancer", "EnhancerState"]
from .checkpoint import init_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402

__all__ += ["init_checkpoint", "load_checkpoint", "read_checkpoint", "save_checkpoint"]
