"""pocketvqe: DeepVQE-family speech enhancement shipped as int8 ExecuTorch programs.

>>> from pocketvqe import load_model, enhance_arrays
>>> model = load_model("models/checkpoints/dvqe-s16.pt")          # or a .pt2 / .pte
>>> y = enhance_arrays(model, mic, 48000, far=far)                # same rate and length as mic
"""
from .quiet import quiet_libraries

__version__ = "0.1.0"
__all__ = ["__version__", "enhance_arrays", "load_model"]

quiet_libraries()          # before torch / torchao / executorch print their import-time notes


def __getattr__(name: str):
    # The API lives in the top stage (inference), which imports every other stage: load it on first
    # use so that `import pocketvqe.models` stays light.
    if name in ("load_model", "enhance_arrays"):
        from . import inference
        return getattr(inference, name)
    raise AttributeError(f"module 'pocketvqe' has no attribute {name!r}")
