"""Inference-only binary layers that compute on packed sign bits (XNOR and popcount).

``PackedBinaryConv2d`` replaces a trained ``BinaryConv2d`` (and, where exact, the
BatchNorm that follows it). In eval mode the float layer computes

    y = alpha * conv(sign(x), sign(clamp(w1, -Q, Q)))          then BN(y)

and the packed layer computes the same from bits: the integer dot product of each
receptive field with each filter over the elements that are not padding (zero padding
contributes 0, neither +1 nor -1), then ``scale * dot + bias`` per output channel, where
scale = alpha and bias = 0, or with the BatchNorm folded in:

    scale = gamma * alpha / sqrt(var + eps),  bias = beta - gamma * mean / sqrt(var + eps)

scale and bias are kept in float64 (16 bytes per channel) so that the folding adds no
rounding of its own, and ``scale * dot + bias`` is computed in float64 (the integer dot
is exact there) and rounded once to the input's dtype: each output is the nearest float32
to the folded affine map, closer to the exact value than the float layer's own chain of
float32 steps, and both engines round it identically.

With ReActNet's RSign (``BinaryOptions.activation_threshold="rsign"``) the float layer
binarises sign(x - b) with a learned threshold b per input channel; the packed layer keeps
b (``threshold``, in the trained dtype) and packs the sign bits of x - b, computed in the
input's dtype exactly as the float layer computes it, so the bits are the same (x = b
gives +0, a +1; x = -0 with b = 0 gives -0, a -1, in both).

Each layer runs on one of two engines (``InferenceEngine``): ``reference`` (NumPy, im2col
and ``bits.xnor_dot``) or ``fast`` (Numba kernels on channel-packed bits); ``engine`` is
set by ``load_packed_model`` and both give the same integer sums.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recu_core.activations import subtract_threshold
from recu_core.config import InferenceEngine
from recu_core.export.bits import from_int32, pack_bits, sign_bits, words_for, xnor_dot
from recu_core.export.engines import channel_packed_filters, fast_conv

_MAX_COLUMN_ELEMENTS = 1 << 24  # input columns unfolded per chunk (64 MiB of float32)


def _register_threshold(module: nn.Module, channels: int, enabled: bool) -> None:
    """The RSign threshold b (channels,) as a buffer, or None (not in the state_dict)."""
    module.register_buffer("threshold", torch.zeros(channels) if enabled else None)


def _shifted(x: Tensor, threshold: Tensor | None) -> Tensor:
    """x - b in x's dtype (the float layer's own subtraction), or x without a threshold."""
    return x if threshold is None else subtract_threshold(x, threshold.to(x.dtype))


class PackedBinaryConv2d(nn.Module):
    bits: Tensor  # (out, words) int32 bit patterns
    scale: Tensor  # (out,) float64
    bias: Tensor  # (out,) float64
    threshold: Tensor | None  # (in,) RSign's b, or None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        *,
        threshold: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        k = in_channels * kernel_size[0] * kernel_size[1]
        self.register_buffer("bits", torch.zeros(out_channels, words_for(k), dtype=torch.int32))
        self.register_buffer("scale", torch.ones(out_channels, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(out_channels, dtype=torch.float64))
        _register_threshold(self, in_channels, threshold)
        self._masks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.engine = InferenceEngine.REFERENCE
        self._filters: np.ndarray | None = None  # the fast engine's layout, built once

    def _fast(self, x: Tensor) -> Tensor:
        if self._filters is None:
            self._filters = channel_packed_filters(
                from_int32(self.bits), self.in_channels, self.kernel_size
            )
        return fast_conv(
            x,
            self._filters,
            self.scale.numpy(),
            self.bias.numpy(),
            self.stride,
            self.padding,
            self.in_channels,
        )

    def _mask(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Packed valid-element bits (W, L) and the valid count per position (L,)."""
        key = (height, width)
        if key not in self._masks:
            ones = torch.ones(1, self.in_channels, height, width)
            valid = F.unfold(ones, self.kernel_size, padding=self.padding, stride=self.stride)[0]
            bits = valid.numpy().astype(np.uint8)  # (K, L), 1 = a real input element
            self._masks[key] = (pack_bits(bits, axis=0), bits.sum(axis=0, dtype=np.int32))
        return self._masks[key]

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out, H', W')
        x = _shifted(x, self.threshold)
        if self.engine is InferenceEngine.FAST:
            return self._fast(x)
        b, _, h, w = x.shape
        oh = (h + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        mask, valid = self._mask(h, w)
        weights = from_int32(self.bits)
        k = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        step = max(1, _MAX_COLUMN_ELEMENTS // (k * oh * ow))
        dots = []
        for start in range(0, b, step):
            cols = F.unfold(
                x[start : start + step], self.kernel_size, padding=self.padding, stride=self.stride
            )
            dots.append(xnor_dot(pack_bits(sign_bits(cols), axis=1), weights, mask, valid))
        dot = torch.from_numpy(np.concatenate(dots)).double()
        out = dot * self.scale.double()[None, :, None] + self.bias.double()[None, :, None]
        return out.to(x.dtype).view(b, self.out_channels, oh, ow)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, packed"
        )


class PackedBinaryLinear(nn.Module):
    bits: Tensor
    scale: Tensor
    bias: Tensor
    threshold: Tensor | None

    def __init__(self, in_features: int, out_features: int, *, threshold: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "bits", torch.zeros(out_features, words_for(in_features), dtype=torch.int32)
        )
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float64))
        _register_threshold(self, in_features, threshold)
        # no padding: every element is real, one "position"
        self._mask = pack_bits(np.ones((in_features, 1), np.uint8), axis=0)
        self._valid = np.array([in_features], dtype=np.int32)
        self.engine = InferenceEngine.REFERENCE
        self._filters: np.ndarray | None = None

    def forward(self, x: Tensor) -> Tensor:  # (B, in) -> (B, out)
        x = _shifted(x, self.threshold)
        if self.engine is InferenceEngine.FAST:  # a 1x1 conv on a 1x1 image
            if self._filters is None:
                self._filters = channel_packed_filters(
                    from_int32(self.bits), self.in_features, (1, 1)
                )
            out = fast_conv(
                x[:, :, None, None],
                self._filters,
                self.scale.numpy(),
                self.bias.numpy(),
                (1, 1),
                (0, 0),
                self.in_features,
            )
            return out[:, :, 0, 0]
        a = pack_bits(sign_bits(x), axis=1)[:, :, None]  # (B, W, 1)
        dot = torch.from_numpy(xnor_dot(a, from_int32(self.bits), self._mask, self._valid)[:, :, 0])
        return (dot.double() * self.scale.double() + self.bias.double()).to(x.dtype)
