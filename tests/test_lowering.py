"""Export-readiness: every block and the whole dvqe-s16 step lower to XNNPACK and run in ExecuTorch.

fp32 programs must match eager to 1e-4 (max abs). int8 programs are compared with the PyTorch int8
reference (the converted PT2E GraphModule): XNNPACK's int8 kernels requantize with their own
rounding, so they differ from the reference's fp32 emulation by about one quantization step per
layer; we state the tolerance as an SNR (dB) over the outputs of several streamed frames.
"""
import pytest
import torch
from torch.utils import _pytree as pytree

from pocketvqe.export.lower import load_method, lower, to_buffer, undelegated_compute_ops
from pocketvqe.kernels import StreamingSTFT, apply_ccm
from pocketvqe.models.blocks import AlignBlock, Bottleneck, DecoderBlock, EncoderBlock
from pocketvqe.models.step import StreamStep, capture
from pocketvqe.quant import quantize_static, xnnpack_quantizer
from pocketvqe.signals import snr_db


def _quantizer():
    """The quantizer these tests were written against (the old xnnpack_quantizer defaults): per-channel
    int8 weights, min-max activation ranges, every op int8 (signal processing included)."""
    return xnnpack_quantizer(per_channel=True, float_dsp=False, observer="minmax", percentile=99.9)


class BlockStep(torch.nn.Module):
    """Wrap ``block(*signals, state) -> (y, state)`` as ``(*signals, *state leaves) -> (y, *state leaves)``."""

    def __init__(self, block, n_signals, state):
        super().__init__()
        self.block, self.n = block, n_signals
        leaves, self.spec = pytree.tree_flatten(state)
        self.idx = [i for i, t in enumerate(leaves) if t is not None]
        self.n_leaves = len(leaves)

    def forward(self, *args):
        leaves = [None] * self.n_leaves
        for i, t in zip(self.idx, args[self.n:]):
            leaves[i] = t
        y, state = self.block(*args[:self.n], pytree.tree_unflatten(leaves, self.spec))
        out = pytree.tree_leaves(state)
        return (y, *[out[i] for i in self.idx])


class STFTRoundTrip(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stft = StreamingSTFT(320, 160)

    def forward(self, pcm, state):
        spec, a = self.stft.analysis(pcm, state[0])
        y, s = self.stft.synthesis(spec * 0.5, state[1])
        return y, (a, s)


class CCM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv2d(4, 27, 1)          # something quantizable to produce the mask

    def forward(self, feat, spec, state):
        return apply_ccm(self.proj(feat), spec, state)


def _blocks():
    torch.manual_seed(0)
    enc = EncoderBlock(16, 24, 81, residual=True)
    dec = DecoderBlock(24, 16, 27, 41, 81, residual=True, last=False)
    align = AlignBlock(16, 8, 41, heads=4, delay=20)
    bott = Bottleneck(8, 11, 32, speaker_proj=0)
    return {
        "encoder": (enc, [torch.randn(1, 16, 1, 81)], enc.init_state(1)),
        "decoder": (dec, [torch.randn(1, 24, 1, 41), torch.randn(1, 16, 1, 41)], dec.init_state(1)),
        "align": (align, [torch.randn(1, 16, 1, 41), torch.randn(1, 8, 1, 41)], align.init_state(1)),
        "gru_bottleneck": (bott, [torch.randn(1, 8, 1, 11)], bott.init_state(1)),
        "ccm": (CCM(), [torch.randn(1, 4, 1, 161), torch.randn(1, 2, 1, 161)], torch.zeros(1, 2, 2, 161)),
        "stft": (STFTRoundTrip(), [torch.randn(1, 160)], (torch.zeros(1, 160), torch.zeros(1, 160))),
    }


def _frames(signals, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s.shape, generator=g) for s in signals] for _ in range(n)]


def _run_stream(fn, frames, state):
    outs = []
    for sig in frames:
        res = fn(*sig, *state)
        outs.append(res[0])
        state = list(res[1:])
    return torch.stack(outs), state


@pytest.mark.parametrize("quant", ["fp32", "int8"])
@pytest.mark.parametrize("name", list(_blocks()))
def test_block_lowers_fully_delegated_and_matches(name, quant, bn_randomizer):
    block, signals, state = _blocks()[name]
    wrapped = BlockStep(bn_randomizer(block).eval(), len(signals), state).eval()
    state_leaves = [t for t in pytree.tree_leaves(state) if t is not None]
    example = (*signals, *state_leaves)
    ref = wrapped
    ep = capture(wrapped, example)
    if quant == "int8":
        calib = [(*sig, *(torch.randn_like(t) for t in state_leaves)) for sig in _frames(signals, 8, seed=1)]
        ref = quantize_static(ep, calib, _quantizer())
        ep = capture(ref, example)
    edge = lower(ep)
    assert undelegated_compute_ops(edge) == []
    method = load_method(to_buffer(edge))
    frames = _frames(signals, 6, seed=2)
    got, _ = _run_stream(lambda *a: method.execute(a), frames, state_leaves)
    with torch.no_grad():
        want, _ = _run_stream(ref, frames, state_leaves)
    if quant == "fp32":
        assert (got - want).abs().max().item() < 1e-4
    else:
        assert snr_db(want, got) > 25.0, f"{name}: int8 program vs int8 reference SNR {snr_db(want, got):.1f} dB"


def _step_and_frames(make_enhancer, speech_like, n_frames):
    enh = make_enhancer("dvqe-s16")
    step = StreamStep(enh).eval()
    hop = enh.cfg.hop
    mic = speech_like(n_frames * hop / 16000, seed=0)
    far = speech_like(n_frames * hop / 16000, seed=5) * 0.5
    frames = [[torch.from_numpy(mic[t * hop:(t + 1) * hop]), torch.from_numpy(far[t * hop:(t + 1) * hop])]
              for t in range(n_frames)]
    return step, frames


def test_whole_step_fp32_program_matches_eager(make_enhancer, speech_like):
    step, frames = _step_and_frames(make_enhancer, speech_like, 60)
    edge = lower(capture(step, step.example_inputs()))
    assert undelegated_compute_ops(edge) == []
    method = load_method(to_buffer(edge))
    got, _ = _run_stream(lambda *a: method.execute(a), frames, step.init_state())
    with torch.no_grad():
        want, _ = _run_stream(step, frames, step.init_state())
    assert (got - want).abs().max().item() < 1e-4


def test_whole_step_int8_program_matches_int8_reference(make_enhancer, speech_like):
    """Tolerance: SNR > 20 dB against the PyTorch int8 reference over 60 streamed frames (the state
    is threaded, so per-layer rounding differences accumulate; measured ~28-35 dB)."""
    step, frames = _step_and_frames(make_enhancer, speech_like, 100)
    calib_frames, eval_frames = frames[:40], frames[40:]
    with torch.no_grad():                             # calibrate on real streamed states
        calib, state = [], step.init_state()
        for sig in calib_frames:
            calib.append((*sig, *state))
            state = list(step(*sig, *state)[1:])
    ref = quantize_static(capture(step, step.example_inputs()), calib, _quantizer())
    edge = lower(capture(ref, step.example_inputs()))
    assert undelegated_compute_ops(edge) == []
    n_quant_linear = sum(1 for n in ref.graph.nodes if n.target == torch.ops.aten.linear.default
                         and "dequantize_per_channel" in str(n.args[1].target))
    assert n_quant_linear >= 6 + 1                    # six GRU gate Linears + the bottleneck FC, all int8
    method = load_method(to_buffer(edge))
    got, _ = _run_stream(lambda *a: method.execute(a), eval_frames, step.init_state())
    with torch.no_grad():
        want, _ = _run_stream(ref, eval_frames, step.init_state())
    snr = snr_db(want.numpy(), got.numpy())
    print(f"int8 .pte vs int8 reference: SNR {snr:.1f} dB, max abs {float((got - want).abs().max()):.2e}")
    assert snr > 20.0
