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
rounding of its own; they are applied in the input's dtype.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recu_core.export.bits import from_int32, pack_bits, sign_bits, words_for, xnor_dot

_MAX_COLUMN_ELEMENTS = 1 << 24  # input columns unfolded per chunk (64 MiB of float32)


class PackedBinaryConv2d(nn.Module):
    bits: Tensor  # (out, words) int32 bit patterns
    scale: Tensor  # (out,) float64
    bias: Tensor  # (out,) float64

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        k = in_channels * kernel_size[0] * kernel_size[1]
        self.register_buffer("bits", torch.zeros(out_channels, words_for(k), dtype=torch.int32))
        self.register_buffer("scale", torch.ones(out_channels, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(out_channels, dtype=torch.float64))
        self._masks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

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
        dot = torch.from_numpy(np.concatenate(dots)).to(x.dtype)
        scale, bias = self.scale.to(x.dtype), self.bias.to(x.dtype)
        out = dot * scale[None, :, None] + bias[None, :, None]
        return out.view(b, self.out_channels, oh, ow)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, packed"
        )


class PackedBinaryLinear(nn.Module):
    bits: Tensor
    scale: Tensor
    bias: Tensor

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "bits", torch.zeros(out_features, words_for(in_features), dtype=torch.int32)
        )
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float64))
        # no padding: every element is real, one "position"
        self._mask = pack_bits(np.ones((in_features, 1), np.uint8), axis=0)
        self._valid = np.array([in_features], dtype=np.int32)

    def forward(self, x: Tensor) -> Tensor:  # (B, in) -> (B, out)
        a = pack_bits(sign_bits(x), axis=1)[:, :, None]  # (B, W, 1)
        dot = torch.from_numpy(xnor_dot(a, from_int32(self.bits), self._mask, self._valid)[:, :, 0])
        return dot.to(x.dtype) * self.scale.to(x.dtype) + self.bias.to(x.dtype)
