"""Per-layer weight telemetry for ReCU layers, computed once per epoch on the device.

For each binary layer with standardised latent weight w1, clamp bound Q and
w2 = clamp(w1, -Q, Q) (w2 = w1 with the clamp off):

    flip_rate     fraction of sign(w2) that changed since the previous collection
    beyond_clamp  fraction with |w1| > Q: the "dead" weights the clamp pulls back
    q             Q(tau) = -b ln(2 - 2 tau), b = mean|w1|
    quant_error   ||w2 - s sign(w2)||^2 / ||w2||^2 with s = mean|w2| (the L2-optimal scale)
    entropy_bits  Shannon entropy of the histogram below, in bits
    hist          counts of w1 / b over HIST_BINS fixed bins on [-HIST_RANGE, HIST_RANGE]
                  (tails in the edge bins); in units of b, the clamp sits at +-Q/b
    alpha         mean, std, min, max of the learned scale (None when alpha is off)

Everything is computed as device tensors and flattened into one vector, so the trainer
moves metrics and telemetry to the host together in a single transfer per epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from recu_core.layers import BinaryConv2d, BinaryLinear, binary_layers
from recu_core.quantizers import binary_sign

HIST_BINS = 48
HIST_RANGE = 6.0
_SCALARS = ("flip_rate", "beyond_clamp", "q", "quant_error", "entropy_bits")
_ALPHA = ("mean", "std", "min", "max")
_WIDTH = len(_SCALARS) + len(_ALPHA) + HIST_BINS


def _clamped(layer: BinaryConv2d | BinaryLinear) -> tuple[Tensor, Tensor, Tensor]:
    """(w1, Q, w2) for the layer's current weights, in fp32, without autograd."""
    w1 = layer.latent_weight().detach().float()
    q = layer.clamp_bound(w1)
    return w1, q, (torch.clamp(w1, -q, q) if layer.options.clamp else w1)


def _layer_vector(
    layer: BinaryConv2d | BinaryLinear, previous_sign: Tensor
) -> tuple[Tensor, Tensor]:
    """(telemetry vector, current sign(w2)) for one layer."""
    w1, q, w2 = _clamped(layer)
    sign = binary_sign(w2)
    flip_rate = (sign != previous_sign).float().mean()
    beyond = (w1.abs() > q).float().mean()
    scale = w2.abs().mean()
    quant_error = (w2 - scale * sign).pow(2).sum() / w2.pow(2).sum().clamp_min(1e-12)
    b = w1.abs().mean().clamp_min(1e-12)
    units = (w1 / b).clamp(-HIST_RANGE, HIST_RANGE).flatten()
    hist = torch.histc(units, bins=HIST_BINS, min=-HIST_RANGE, max=HIST_RANGE)
    p = hist / hist.sum()
    entropy = -(p * torch.log2(p.clamp_min(1e-12))).sum()
    if layer.alpha is not None:
        a = layer.alpha.detach().float().flatten()
        alpha = torch.stack([a.mean(), a.std(correction=0), a.min(), a.max()])
    else:
        alpha = torch.zeros(len(_ALPHA), device=w1.device)
    scalars = torch.stack([flip_rate, beyond, q, quant_error, entropy])
    return torch.cat([scalars, alpha, hist]), sign


class WeightTelemetry:
    """Collects the telemetry vector of every binary layer and remembers the last signs."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = binary_layers(model)
        with torch.no_grad():
            self._signs = [binary_sign(_clamped(layer)[2]) for _, layer in self.layers]

    @torch.no_grad()
    def collect(self, device: torch.device) -> Tensor:
        """One flat device vector for all layers; updates the stored signs. No host sync."""
        if not self.layers:
            return torch.zeros(0, device=device)
        vectors = []
        for i, (_, layer) in enumerate(self.layers):
            vector, self._signs[i] = _layer_vector(layer, self._signs[i])
            vectors.append(vector)
        return torch.cat(vectors)

    @property
    def size(self) -> int:
        return len(self.layers) * _WIDTH

    def unpack(self, values: list[float]) -> dict[str, Any]:
        """The host-side dict for one epoch, from the values ``collect`` returned."""
        layers: dict[str, Any] = {}
        for i, (name, layer) in enumerate(self.layers):
            row = values[i * _WIDTH : (i + 1) * _WIDTH]
            entry: dict[str, Any] = dict(zip(_SCALARS, row[: len(_SCALARS)], strict=True))
            alpha = row[len(_SCALARS) : len(_SCALARS) + len(_ALPHA)]
            entry["alpha"] = (
                dict(zip(_ALPHA, alpha, strict=True)) if layer.alpha is not None else None
            )
            entry["hist"] = [int(c) for c in row[len(_SCALARS) + len(_ALPHA) :]]
            layers[name] = entry
        return {
            "hist_range": [-HIST_RANGE, HIST_RANGE],
            "hist_bins": HIST_BINS,
            "hist_unit": "b (Laplace scale, mean |w1|)",
            "layers": layers,
        }
