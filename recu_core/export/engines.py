"""The two 1-bit engines of a packed network, and the choice between them.

``reference``: NumPy, im2col then XOR/popcount per receptive field (``bits.xnor_dot``);
slow and readable, the oracle. ``fast``: Numba kernels on channel-packed activations
(``fast_kernels``), the default. Both compute the same integer sums; the fast one is used
wherever Numba imports and passes a self-check on this CPU, and otherwise the reference
one is used with a warning that names the reason.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch import Tensor

from recu_core.config import InferenceEngine
from recu_core.export.bits import unpack_bits


class EngineFallbackWarning(RuntimeWarning):
    """The fast engine was asked for and is not available here; the reference one runs."""


@functools.cache
def fast_unavailable() -> str | None:
    """Why the fast engine cannot run here, or None when it can (checked once)."""
    try:
        from recu_core.export import fast_kernels
    except Exception as err:  # ImportError, or LLVM failing to initialise
        return f"numba is not usable: {type(err).__name__}: {err}"
    try:  # one 3x3 conv against its definition, so a miscompiled kernel is never used
        rng = np.random.default_rng(0)
        x = torch.from_numpy(rng.standard_normal((1, 70, 3, 3)))
        w = rng.integers(0, 2, (2, 70 * 9), dtype=np.uint8)
        from recu_core.export.bits import pack_bits

        filters = channel_packed_filters(pack_bits(w, axis=1), 70, (3, 3))
        got = fast_conv(x, filters, np.ones(2), np.zeros(2), (1, 1), (1, 1), 70)
        signs = torch.where(torch.signbit(x), -1.0, 1.0).double()
        weights = torch.from_numpy(1.0 - 2.0 * w.reshape(2, 70, 3, 3))
        want = torch.nn.functional.conv2d(signs, weights, padding=1)
        if not torch.equal(got, want):
            return "the compiled kernel failed its self-check on this CPU"
        del fast_kernels
    except Exception as err:
        return f"the fast kernels did not compile: {type(err).__name__}: {err}"
    return None


def resolve(engine: InferenceEngine | str) -> InferenceEngine:
    """The engine that will run: ``fast`` falls back to ``reference`` with a warning."""
    engine = InferenceEngine(engine)
    if engine is InferenceEngine.FAST and (reason := fast_unavailable()) is not None:
        warnings.warn(
            f"the fast 1-bit engine is not available ({reason}); using the reference engine",
            EngineFallbackWarning,
            stacklevel=2,
        )
        return InferenceEngine.REFERENCE
    return engine


def channel_packed_filters(
    bits: np.ndarray, in_channels: int, kernel_size: tuple[int, int]
) -> np.ndarray:
    """Filters stored (out, words32) over (C, KH, KW) as the fast kernel's (KH, KW,
    words64, out) uint64: channel c of tap (ky, kx) is bit c % 64 of word c // 64."""
    kh, kw = kernel_size
    outs = bits.shape[0]
    signs = unpack_bits(bits, in_channels * kh * kw).reshape(outs, in_channels, kh, kw)
    by_tap = signs.transpose(2, 3, 0, 1)  # (KH, KW, O, C)
    words = (in_channels + 63) // 64
    padded = np.zeros((kh, kw, outs, words * 64), np.uint8)
    padded[..., :in_channels] = by_tap
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    grouped = padded.reshape(kh, kw, outs, words, 64).astype(np.uint64)
    packed = (grouped * weights).sum(axis=-1, dtype=np.uint64)  # (KH, KW, O, words)
    return np.ascontiguousarray(packed.transpose(0, 1, 3, 2))


# per float dtype: the signed integer view of its bits (for the sign bit), and its NumPy type
_VIEWS = {torch.float32: (np.int32, np.float32), torch.float64: (np.int64, np.float64)}


def fast_conv(
    x: Tensor,
    filters: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    stride: tuple[int, int],
    padding: tuple[int, int],
    in_channels: int,
) -> Tensor:
    """The binary conv of float ``x`` (B, C, H, W) on the fast kernels; the result is a
    channels-last (B, O, OH, OW) tensor of x's dtype (a view of the kernel's NHWC array)."""
    import numba

    from recu_core.export import fast_kernels

    if x.dtype not in _VIEWS:
        raise TypeError(f"the fast engine runs float32 and float64, not {x.dtype}")
    most = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
    numba.set_num_threads(max(1, min(torch.get_num_threads(), most)))
    b, _, h, w = x.shape
    kh, kw = filters.shape[0], filters.shape[1]
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (w + 2 * padding[1] - kw) // stride[1] + 1
    nhwc = x.detach().permute(0, 2, 3, 1)
    bits_view, float_type = _VIEWS[x.dtype]
    values = nhwc.contiguous().numpy().view(bits_view)
    packed = np.empty((b, h, w, filters.shape[2]), np.uint64)
    fast_kernels.pack_signs(values, packed)
    out = np.empty((b, oh, ow, filters.shape[3]), float_type)
    fast_kernels.binary_conv(
        packed,
        filters,
        np.asarray(scale, np.float64),  # no copy: the layers keep them in float64
        np.asarray(bias, np.float64),
        stride,
        padding,
        in_channels,
        out,
    )
    return torch.from_numpy(out).permute(0, 3, 1, 2)
