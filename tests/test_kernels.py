"""Kernels against their numpy references and against torch's own STFT / GRU."""
import numpy as np
import pytest
import torch

from pocketvqe.kernels import LinearGRU, StreamingSTFT, apply_ccm, init_ccm_state, push
from pocketvqe.kernels import reference as ref
from pocketvqe.kernels.stft import dft_bases


@pytest.mark.parametrize("n_fft,hop", [(320, 160), (480, 240), (512, 128)])
def test_stft_matches_numpy_and_torch(n_fft, hop):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(hop * 40).astype(np.float32)
    stft = StreamingSTFT(n_fft, hop)
    spec, _ = stft.analysis(torch.from_numpy(x)[None], stft.init_analysis_state(1))
    got = spec[0, 0].numpy() + 1j * spec[0, 1].numpy()                  # (T, F)
    want = ref.stft(x, n_fft, hop)
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()
    # torch.stft on the same signal with the streaming history (n_fft - hop zeros) prepended
    padded = torch.from_numpy(np.concatenate([np.zeros(n_fft - hop, np.float32), x]))
    tst = torch.stft(padded, n_fft, hop, window=torch.hann_window(n_fft).sqrt(), center=False,
                     return_complex=True).T.numpy()
    assert np.abs(got - tst[:got.shape[0]]).max() < 1e-4 * np.abs(tst).max()


@pytest.mark.parametrize("n_fft,hop", [(320, 160), (480, 240)])
def test_istft_perfect_reconstruction_and_matches_torch(n_fft, hop):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(hop * 50).astype(np.float32)
    stft = StreamingSTFT(n_fft, hop)
    spec, _ = stft.analysis(torch.from_numpy(x)[None], stft.init_analysis_state(1))
    y, _ = stft.synthesis(spec, stft.init_synthesis_state(1))
    delay = n_fft - hop
    assert np.abs(y[0, delay:].numpy() - x[:-delay]).max() < 1e-5           # delayed copy of the input
    spec_np = spec[0, 0].numpy() + 1j * spec[0, 1].numpy()
    assert np.abs(y[0].numpy() - ref.istft(spec_np, n_fft, hop)).max() < 1e-5
    # Our frame t is torch's centred frame t (center=True) for t >= 1 (frame 0 differs only in the
    # reflect padding), so torch.istft of our frames reconstructs the input.
    win = torch.hann_window(n_fft).sqrt()
    centred = torch.stft(torch.from_numpy(x), n_fft, hop, window=win, center=True, return_complex=True)
    ours = torch.from_numpy(spec_np.T.copy())
    assert (ours[:, 1:] - centred[:, 1:ours.shape[1]]).abs().max() < 1e-4 * centred.abs().max()
    ours = torch.cat([centred[:, :1], ours[:, 1:], centred[:, ours.shape[1]:]], dim=1)
    rec = torch.istft(ours, n_fft, hop, window=win, center=True, length=len(x)).numpy()
    assert np.abs(rec - x).max() < 1e-4


def test_stft_streaming_equals_offline():
    stft = StreamingSTFT(320, 160)
    x = torch.randn(2, 160 * 20)
    spec_off, a_off = stft.analysis(x, stft.init_analysis_state(2))
    y_off, s_off = stft.synthesis(spec_off, stft.init_synthesis_state(2))
    a, s, ys = stft.init_analysis_state(2), stft.init_synthesis_state(2), []
    for t in range(20):
        sp, a = stft.analysis(x[:, t * 160:(t + 1) * 160], a)
        y, s = stft.synthesis(sp, s)
        ys.append(y)
    assert torch.allclose(torch.cat(ys, 1), y_off, atol=1e-5)
    assert torch.allclose(a, a_off) and torch.allclose(s, s_off, atol=1e-5)


def _dense_stft(n_fft, hop, pcm, a_state, spec, s_state):
    """Float64 analysis of ``pcm`` and synthesis of ``spec`` with the dense bases (the reference)."""
    fwd, inv = dft_bases(n_fft)
    win = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).sqrt()
    B, T, F = pcm.shape[0], pcm.shape[1] // hop, n_fft // 2 + 1
    frames = torch.cat([a_state, pcm], 1).double().unfold(1, n_fft, hop) * win          # (B, T, N)
    want_spec = (frames @ fwd).reshape(B, T, 2, F).permute(0, 2, 1, 3)                  # (B, 2, T, F)
    y = (spec.double().permute(0, 2, 1, 3).reshape(B, T, 2 * F) @ inv) * win            # (B, T, N)
    out = torch.cat([s_state.double(), torch.zeros(B, T * hop, dtype=torch.float64)], 1)
    for t in range(T):
        out[:, t * hop:t * hop + n_fft] += y[:, t]
    return want_spec, out[:, :T * hop], out[:, T * hop:]


@pytest.mark.parametrize("n_fft,hop", [(320, 160), (480, 240)])
def test_stft_mixed_radix_is_small_and_matches_dense_bases(n_fft, hop):
    stft = StreamingSTFT(n_fft, hop)
    F = n_fft // 2 + 1
    assert sum(b.numel() * b.element_size() for b in stft.buffers()) * 6 <= 2 * n_fft * 2 * F * 4
    g = torch.Generator().manual_seed(0)
    T = 12
    x, a0, s0 = (torch.randn(2, n, generator=g) for n in (T * hop, n_fft - hop, n_fft - hop))
    spec, a = stft.analysis(x, a0)                                              # offline
    y, s = stft.synthesis(spec, s0)
    want_spec, want_y, want_s = _dense_stft(n_fft, hop, x, a0, spec, s0)
    assert (spec - want_spec).abs().max() < 1e-6 * want_spec.abs().max()       # |X| ~ 40: 1e-6 relative
    assert (y - want_y).abs().max() < 1e-5 and (s - want_s).abs().max() < 1e-5
    assert torch.equal(a, x[:, -(n_fft - hop):])
    a, s, specs, ys = a0, s0, [], []                                             # streaming, one hop a call
    for t in range(T):
        sp, a = stft.analysis(x[:, t * hop:(t + 1) * hop], a)
        yt, s = stft.synthesis(spec[:, :, t:t + 1], s)
        specs.append(sp)
        ys.append(yt)
    assert (torch.cat(specs, 2) - want_spec).abs().max() < 1e-6 * want_spec.abs().max()
    assert (torch.cat(ys, 1) - want_y).abs().max() < 1e-5 and (s - want_s).abs().max() < 1e-5


def test_ccm_matches_numpy_complex_reference():
    g = torch.Generator().manual_seed(0)
    mask = torch.randn(2, 27, 7, 33, generator=g)
    spec = torch.randn(2, 2, 7, 33, generator=g)
    state = torch.randn(2, 2, 2, 33, generator=g)
    out, new_state = apply_ccm(mask, spec, state)
    want, want_state = ref.ccm(mask.numpy(), spec.numpy(), state.numpy())
    assert np.abs(out.numpy() - want).max() < 1e-4
    assert np.array_equal(new_state.numpy(), want_state)


def test_ccm_identity_mask_passes_spectrum_through():
    # basis coefficient 1 on basis 0 (real axis) of the centre tap (t, f) is the identity
    spec = torch.randn(1, 2, 5, 17)
    mask = torch.zeros(1, 27, 5, 17)
    mask[:, 0 * 9 + 1] = 1.0                                  # basis 0, tap (i=0, j=0 -> index 1)
    out, _ = apply_ccm(mask, spec, init_ccm_state(1, 17))
    assert torch.allclose(out, spec, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 9])
def test_linear_gru_matches_nn_gru(steps):
    torch.manual_seed(0)
    gru = torch.nn.GRU(12, 20, batch_first=True)
    ours = LinearGRU(12, 20).load_from_gru(gru)
    x, h0 = torch.randn(3, steps, 12), torch.randn(3, 20)
    want, hn = gru(x, h0[None])
    got, h = ours(x, h0)                                      # fused path when steps > 1
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(h, hn[0], atol=1e-6)
    hs = h0                                                   # cell path, step by step
    for t in range(steps):
        hs = ours.cell(x[:, t], hs)
    assert torch.allclose(hs, hn[0], atol=1e-5)


def test_linear_gru_matches_numpy():
    torch.manual_seed(1)
    gru = torch.nn.GRU(6, 8, batch_first=True)
    ours = LinearGRU(6, 8).load_from_gru(gru)
    x, h0 = torch.randn(2, 5, 6), torch.zeros(2, 8)
    got, _ = ours(x, h0)
    want, _ = ref.gru(x.double().numpy(), h0.double().numpy(), *(p.detach().double().numpy() for p in
                      (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)))
    assert np.abs(got.detach().numpy() - want).max() < 1e-5


def test_linear_gru_refuses_other_sizes():
    with pytest.raises(ValueError):
        LinearGRU(6, 8).load_from_gru(torch.nn.GRU(6, 9))


def test_ring_buffer_matches_numpy_and_keeps_last_frames():
    buf = torch.arange(12.0).reshape(1, 1, 4, 3)
    x = torch.full((1, 1, 2, 3), -1.0)
    window, new = push(buf, x, dim=2)
    w_np, n_np = ref.ring_push(buf.numpy(), x.numpy(), axis=2)
    assert np.array_equal(window.numpy(), w_np) and np.array_equal(new.numpy(), n_np)
    assert new.shape == buf.shape and torch.equal(new[0, 0, -1], x[0, 0, -1])
