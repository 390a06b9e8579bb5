"""pocketvqe: DeepVQE-family speech enhancement shipped as int8 ExecuTorch programs."""

__version__ = "0.1.0"
