"""The DeepVQE model family: configs, blocks, the spectral network, the PCM enhancer, checkpoints."""
from .config import ModelConfig, get_config, list_configs
from .deepvqe import DeepVQE, NetState
from .enhancer import Enhancer, EnhancerState

__all__ = ["ModelConfig", "get_config", "list_configs", "DeepVQE", "NetState", "Enhancer", "EnhancerState"]
