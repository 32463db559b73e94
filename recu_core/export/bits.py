"""Sign bits packed 32 to a word, and the XNOR-popcount dot product on them.

A binary value v in {-1, +1} is stored as one bit, 1 for -1 and 0 for +1 (its sign
bit). Element k of a vector is bit (k mod 32) of word k // 32; the last word's unused bits
are 0. For two packed vectors a, w of n elements and a mask m of the n' elements taken
into account (padding excluded),

    sum_k a_k * w_k = n' - 2 * popcount((a XOR w) AND m)

since a_k * w_k is +1 where the signs agree and -1 where they differ.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

WORD_BITS = 32
_SHIFTS = np.arange(WORD_BITS, dtype=np.uint32)


def words_for(n: int) -> int:
    return (n + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pack a 0/1 array along ``axis`` into uint32 words (that axis shrinks to words)."""
    bits = np.moveaxis(np.asarray(bits, dtype=np.uint32), axis, -1)
    n = bits.shape[-1]
    pad = words_for(n) * WORD_BITS - n
    if pad:
        bits = np.concatenate([bits, np.zeros((*bits.shape[:-1], pad), np.uint32)], axis=-1)
    grouped = bits.reshape(*bits.shape[:-1], -1, WORD_BITS)
    words = np.bitwise_or.reduce(grouped << _SHIFTS, axis=-1).astype(np.uint32)
    return np.moveaxis(words, -1, axis)


def unpack_bits(words: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """The inverse of ``pack_bits``: the first ``n`` bits along ``axis`` as 0/1 uint8."""
    words = np.moveaxis(np.asarray(words, dtype=np.uint32), axis, -1)
    bits = (words[..., None] >> _SHIFTS) & 1
    bits = bits.reshape(*words.shape[:-1], -1)[..., :n].astype(np.uint8)
    return np.moveaxis(bits, -1, axis)


def sign_bits(x: Tensor) -> np.ndarray:
    """1 where sign(x) = -1 (the sign bit: -0.0 counts as negative, like copysign)."""
    return torch.signbit(x).numpy().astype(np.uint8)


def as_int32(words: np.ndarray) -> Tensor:
    """uint32 words as an int32 tensor with the same bit pattern (for safetensors)."""
    return torch.from_numpy(np.ascontiguousarray(words, dtype=np.uint32).view(np.int32))


def from_int32(t: Tensor) -> np.ndarray:
    return t.numpy().view(np.uint32)


def xnor_dot(a: np.ndarray, w: np.ndarray, mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """sum_k a_k w_k for every (batch, output, position).

    a: (B, W, L) packed input columns; w: (O, W) packed filters; mask: (W, L) packed
    valid-element bits per position; valid: (L,) number of valid elements per position.
    Returns int32 (B, O, L).
    """
    out = np.empty((a.shape[0], w.shape[0], a.shape[2]), dtype=np.int32)
    # chunk the batch so the (b, O, W, L) XOR stays around 32 MiB
    per_image = w.shape[0] * a.shape[1] * a.shape[2] * 4
    step = max(1, (32 << 20) // max(per_image, 1))
    wm = w[:, :, None]  # (O, W, 1)
    for start in range(0, a.shape[0], step):
        chunk = a[start : start + step, None]  # (b, 1, W, L)
        differ = np.bitwise_count((chunk ^ wm) & mask).sum(axis=2, dtype=np.int32)
        out[start : start + step] = valid[None, None, :] - 2 * differ
    return out
