"""Float training of DeepVQE-family models: recipe, loss, loop, DDP (``pocketvqe train``).

>>> from pocketvqe.train import TrainConfig, train, CompressedSpectralLoss     # doctest: +SKIP
>>> train(TrainConfig(model="dvqe-s16", steps=2000), get_config("dvqe-s16"), "runs/dvqe-s16")  # doctest: +SKIP
"""
from .config import TrainConfig
from .loop import (
                   Trainer,
                   TrainModel,
                   enhance_aligned,
                   load_init_weights,
                   resolve_model_config,
                   served_scenarios,
                   sim_config,
                   speaker_embedding,
                   train,
)
from .loss import CompressedSpectralLoss, compress_spectrum

__all__ = ["TrainConfig", "CompressedSpectralLoss", "compress_spectrum", "Trainer", "TrainModel", "enhance_aligned",
           "load_init_weights", "resolve_model_config", "served_scenarios", "sim_config", "speaker_embedding", "train"]
