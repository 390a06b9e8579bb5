"""Microbenchmarks (pytest-benchmark): `pytest --benchmark-only device_tests/` or `make bench`.

Kept apart from `make test`: timings are compared within one run (int8 vs fp32 vs eager), never
asserted in unit tests. The programs timed are the ones `pocketvqe build` ships: the same export
(:func:`pocketvqe.export.export_program`) of the same int8 reference (the config's PTQ recipe).
"""
import pytest
import torch

from pocketvqe.export import export_program
from pocketvqe.export.lower import load_method
from pocketvqe.kernels import LinearGRU, StreamingSTFT, apply_ccm, init_ccm_state
from pocketvqe.models import Enhancer, get_config
from pocketvqe.models.step import StreamStep
from pocketvqe.quant import int8_reference

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def step():
    torch.manual_seed(0)
    return StreamStep(Enhancer(get_config("dvqe-s16")).eval()).eval()


def _frame(step, seed=0):
    g = torch.Generator().manual_seed(seed)
    hop = step.cfg.hop
    return [0.1 * torch.randn(hop, generator=g), 0.1 * torch.randn(hop, generator=g)]


@pytest.fixture(scope="module")
def programs(step):
    enh = step.enhancer
    return {"fp32": load_method(export_program(enh).buffer),
            "int8": load_method(export_program(enh, int8_reference(enh)).buffer)}


def test_stft_analysis_hop(benchmark):
    stft = StreamingSTFT(320, 160)
    x, s = torch.randn(1, 160), stft.init_analysis_state(1)
    benchmark(lambda: stft.analysis(x, s))


def test_ccm_frame(benchmark):
    mask, spec = torch.randn(1, 27, 1, 161), torch.randn(1, 2, 1, 161)
    benchmark(lambda: apply_ccm(mask, spec, init_ccm_state(1, 161)))


def test_gru_cell(benchmark):
    gru = LinearGRU(264, 192)
    x, h = torch.randn(1, 264), torch.zeros(1, 192)
    with torch.no_grad():
        benchmark(lambda: gru.cell(x, h))


@pytest.mark.parametrize("variant", ["float-eager", "fp32-pte", "int8-pte"])
def test_dvqe_s16_step(benchmark, step, programs, variant):
    inputs = [*_frame(step), *step.init_state()]
    if variant == "float-eager":
        with torch.no_grad():
            benchmark(lambda: step(*inputs))
    else:
        method = programs[variant.split("-")[0]]
        benchmark(lambda: method.execute(inputs))
