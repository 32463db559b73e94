"""The fast engine's kernels: 1-bit convolution on channel-packed sign bits (Numba).

Activations are packed along channels, 64 to a uint64 word, one word group per pixel
(NHWC): channel c of pixel (y, x) is bit c % 64 of word c // 64; unused bits are 0 in
activations and filters alike, so they never differ. Filters are packed the same way per
tap, laid out (kh, kw, words, out) so that the innermost loop runs over output channels
(contiguous, vectorised; with AVX-512 VPOPCNTDQ LLVM emits ``vpopcntq``, elsewhere its
own popcount sequence). For output position p and channel o, over the taps t of the
receptive field that fall inside the image (zero padding contributes nothing):

    dot[p, o] = taps(p) * C - 2 * sum_{t inside} popcount(a[t] XOR w[o, t])
    out[p, o] = scale[o] * dot[p, o] + bias[o]          (float64, then the output's dtype)

Integer sums are exact; the affine step is one multiply and one add in float64 (scale and
bias are float64), rounded once to the output's dtype, exactly as the reference engine
rounds it (no fused multiply-add: fastmath is off).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

WORD = 64


def _ctpop(typingctx: Any, word: Any) -> Any:
    """LLVM's ``ctpop`` on a uint64 (the hardware POPCNT/VPOPCNTQ where the CPU has it)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


_popcount: Any = intrinsic(_ctpop)


@njit(parallel=True, cache=True)
def pack_signs(values: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - jitted
    """Sign bits of ``values`` (B, H, W, C), signed integers carrying the floats' bit
    patterns (negative = sign bit set, -0.0 included), into ``out`` (B, H, W, words)."""
    batch, height, width, channels = values.shape
    words = out.shape[3]
    for row in prange(batch * height):
        b, y = row // height, row % height
        for x in range(width):
            for w in range(words):
                word = np.uint64(0)
                base = w * WORD
                for k in range(min(WORD, channels - base)):
                    if values[b, y, x, base + k] < 0:
                        word |= np.uint64(1) << np.uint64(k)
                out[b, y, x, w] = word


@njit(parallel=True, cache=True)
def binary_conv(
    packed: np.ndarray,
    filters: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    stride: tuple[int, int],
    padding: tuple[int, int],
    channels: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """``out`` (B, OH, OW, O) = scale * dot + bias, dot over the taps inside the image.

    packed: (B, H, W, words) uint64; filters: (KH, KW, words, O) uint64."""
    batch, height, width, words = packed.shape
    kernel_h, kernel_w, _, outs = filters.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for row in prange(batch * out_h):
        b, oy = row // out_h, row % out_h
        acc = np.empty(outs, np.uint64)
        dot = np.empty(outs, np.float64)
        for ox in range(out_w):
            acc[:] = 0
            taps = 0
            for ky in range(kernel_h):
                iy = oy * stride[0] - padding[0] + ky
                if iy < 0 or iy >= height:
                    continue
                for kx in range(kernel_w):
                    ix = ox * stride[1] - padding[1] + kx
                    if ix < 0 or ix >= width:
                        continue
                    taps += 1
                    for w in range(words):
                        a = packed[b, iy, ix, w]
                        for o in range(outs):
                            acc[o] += _popcount(a ^ filters[ky, kx, w, o])
            n = np.int64(taps * channels)
            for o in range(outs):
                dot[o] = n - 2 * np.int64(acc[o])
            for o in range(outs):
                out[b, oy, ox, o] = dot[o] * scale[o] + bias[o]
