import os
import shutil

import numpy as np
import pytest
import torch

from pocketvqe.models import Enhancer, get_config
from pocketvqe.models.checkpoint import randomize_bn_stats

# Tests run many tiny ops: one intra-op thread avoids OpenMP spin-waits on a shared 2-core machine.
torch.set_num_threads(1)


randomize_bn = randomize_bn_stats          # one home: pocketvqe.models.checkpoint


@pytest.fixture(scope="session")
def native_runner():
    """``native_runner(arch)``: the cached native runner folder for ``arch`` (built on first use); the
    test is skipped when the compilers are missing outside CI (in CI, `make setup` installs them, so a
    missing one fails)."""
    return _native_runner_or_skip


def _native_runner_or_skip(arch: str):
    from pocketvqe.device_tests import native

    tools = ["cmake", "g++"] + (["aarch64-linux-gnu-g++", "qemu-aarch64"] if arch == "aarch64" else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} missing: `make setup` installs them"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return native.build_runner(arch)


@pytest.fixture
def make_enhancer():
    def make(name: str, seed: int = 0) -> Enhancer:
        torch.manual_seed(seed)
        return randomize_bn(Enhancer(get_config(name)), seed).eval()
    return make


@pytest.fixture
def speech_like():
    """A deterministic speech-like test signal: harmonic bursts with a pitch glide, plus noise."""
    def make(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        t = np.arange(int(seconds * sr)) / sr
        f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
        env = (np.sin(2 * np.pi * 2.5 * t) > -0.2).astype(float)
        return (0.1 * voiced * env + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    return make


@pytest.fixture
def bn_randomizer():
    return randomize_bn
