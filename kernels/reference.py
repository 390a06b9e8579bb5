"""Numpy reference implementations of every kernel, written for clarity; tests compare against them."""
from __future__ import annotations

import numpy as np


def sqrt_hann(n: int) -> np.ndarray:
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n))


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Streaming-convention STFT of a 1-D signal: (n_fft - hop) zeros of history, one frame per hop.

    Returns complex (T, F) with T = len(x) // hop.
    """
    w = sqrt_hann(n_fft)
    buf = np.concatenate([np.zeros(n_fft - hop), x])
    T = len(x) // hop
    return np.stack([np.fft.rfft(w * buf[t * hop:t * hop + n_fft]) for t in range(T)])


def istft(spec: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Overlap-add synthesis matching :func:`stft`; output hop t ends ``n_fft - hop`` samples late."""
    w = sqrt_hann(n_fft)
    T = spec.shape[0]
    out = np.zeros((T + n_fft // hop - 1) * hop)
    for t in range(T):
        out[t * hop:t * hop + n_fft] += w * np.fft.irfft(spec[t], n_fft)
    return out[:T * hop]


def ccm(mask: np.ndarray, spec: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CCM with complex arithmetic: mask (B, 27, T, F), spec/out (B, 2, T, F), state (B, 2, 2, F)."""
    B, _, T, F = mask.shape
    basis = np.exp(2j * np.pi * np.arange(3) / 3)
    M = np.einsum("bkntf,k->bntf", mask.reshape(B, 3, 9, T, F), basis)       # (B, 9, T, F) complex
    X = np.concatenate([state, spec], axis=2)
    Xc = np.pad(X[:, 0] + 1j * X[:, 1], ((0, 0), (0, 0), (1, 1)))           # (B, T+2, F+2)
    Y = np.zeros((B, T, F), dtype=complex)
    for t in range(T):
        for i in range(3):
            for j in range(3):
                Y[:, t] += M[:, i * 3 + j, t] * Xc[:, t + 2 - i, j:j + F]
    return np.stack([Y.real, Y.imag], axis=1), X[:, :, T:]


def gru(x: np.ndarray, h: np.ndarray, w_ih, w_hh, b_ih, b_hh) -> tuple[np.ndarray, np.ndarray]:
    """nn.GRU equations, gate order (r, z, n): x (B, T, In), h (B, H) -> y (B, T, H), h."""
    H = h.shape[1]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    ys = []
    for t in range(x.shape[1]):
        gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = sig(gi[:, :H] + gh[:, :H])
        z = sig(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        ys.append(h)
    return np.stack(ys, axis=1), h


def ring_push(buf: np.ndarray, x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Window = buf ++ x along ``axis``; new buffer = its last ``buf.shape[axis]`` frames."""
    window = np.concatenate([buf, x], axis=axis)
    return window, np.take(window, np.arange(window.shape[axis] - buf.shape[axis], window.shape[axis]), axis=axis)
