"""ReCU binary layers: 1-bit weights and 1-bit activations (Xu et al., ICCV 2021).

For a latent weight w of shape (out, ...) the forward pass computes

    w0 = w - mean(w)                              per output filter
    w1 = w0 / (sqrt(var(w0) + eps) / (2*sqrt(2)))  per filter: std 2*sqrt(2), Laplace b = 2
    b  = mean(|w1|)                               maximum-likelihood Laplace scale, whole layer
    Q  = -b * ln(2 - 2*tau)                       tau-quantile of Laplace(0, b), detached
    w2 = clamp(w1, -Q, Q)                         the ReCU clamp: "revives" dead weights
    wb = sign(w2)                                 identity straight-through gradient

and for the input activation a (training only; sign is scale-invariant, so eval skips it)

    a0 = a / sqrt(var(a) + eps)                   per sample, over all non-batch dims
    ab = sign(a0)                                 ApproxSign gradient by default

    out = op(ab, wb) * alpha = op(ab, wb * alpha)  alpha: learned, per output channel

alpha is applied to the (small) binary weight rather than the (large) output: the same
function, since alpha is per output channel, without a pass over the activation in
forward and two in backward.

tau lives in a buffer that the schedule sets once per epoch; Q stays a device tensor, so
a training step makes no device-to-host synchronisation (the official code calls
``.cpu().item()`` on Q in every forward of every layer). The layers subclass ``nn.Conv2d``
and ``nn.Linear`` and only transform the weight inside ``forward`` (as timm's StdConv2d
does), so state_dict keys stay standard.

Other methods' layer options (``BinaryOptions``; docs/models.md, "Layer options") change
single steps of this chain: the weight binarizer (``binarizers``: BiPer's sign(sin(f w1))),
real weights for stage 1 of a two-stage recipe (the layer uses its pre-sign value), a
learnable threshold per input channel before the activation sign (``activations``:
ReActNet's RSign, sign(a - b)), and activation estimators with per-epoch parameters
(``estimators``: ReSTE, EDE). With the defaults every one of them is off and the chain is
ReCU's, op for op. Two model-level hooks serve the training loop:
``regularization_loss(model)`` (BiPer's term; zero for ReCU) and
``set_epoch_progress(model, epoch, epochs)`` (the estimators' schedules).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recu_core.activations import subtract_threshold
from recu_core.binarizers import biper_penalty, biper_value
from recu_core.config import BinaryOptions
from recu_core.estimators import SCHEDULED_STES, scheduled_sign
from recu_core.quantizers import get_scaled_ste, get_ste
from recu_core.schedules import ede_k, ede_t_at, reste_o_at

EPS = 1e-5
_STD_TARGET = 2 * math.sqrt(2)  # filter std after standardisation: Laplace scale b = 2


def standardize_filters(w: Tensor, eps: float = EPS) -> Tensor:
    """w1 = (w - mean) / (sqrt(var + eps) / (2*sqrt(2))), per output filter (dim 0)."""
    dims = tuple(range(1, w.ndim))
    w0 = w - w.mean(dim=dims, keepdim=True)
    return w0 / (torch.sqrt(w0.var(dim=dims, keepdim=True) + eps) / _STD_TARGET)


def laplace_quantile(b: Tensor, tau: Tensor) -> Tensor:
    """Q(tau) = -b * ln(2 - 2*tau): P(X <= Q) = tau for X ~ Laplace(0, b), tau in (0.5, 1)."""
    return -b * torch.log(2 - 2 * tau)


def recu_clamp_bound(w1: Tensor, tau: Tensor) -> Tensor:
    """Q for the layer: b = mean|w1| estimated from the weights themselves, detached."""
    return laplace_quantile(w1.abs().mean(), tau).detach()


def scale_per_sample(a: Tensor, eps: float = EPS) -> Tensor:
    """a0 = a / sqrt(var(a) + eps), the variance taken per sample over all non-batch dims."""
    dims = tuple(range(1, a.ndim))
    return a / torch.sqrt(a.var(dim=dims, keepdim=True) + eps)


class _ReCUMixin:
    """Weight and activation binarisation shared by the conv and the linear layer."""

    weight: Tensor
    tau: Tensor
    alpha: nn.Parameter | None
    threshold: nn.Parameter | None
    ste_params: Tensor
    options: BinaryOptions
    training: bool
    compiled_kernels: bool

    def _init_recu(
        self, options: BinaryOptions, alpha_shape: tuple[int, ...], in_channels: int
    ) -> None:
        self.options = options
        self._scheduled_ste = options.activation_ste in SCHEDULED_STES
        self._act_quantizer = get_ste("identity" if self._scheduled_ste else options.activation_ste)
        self.use_compiled_kernels(False)
        self._weight_quantizer = get_ste("identity")
        self.register_buffer("tau", torch.tensor(0.85))  # type: ignore[attr-defined]
        if options.alpha == "learned":
            # Uniform(0, 1) initialisation, as in the official ReCU code.
            self.alpha = nn.Parameter(torch.rand(alpha_shape))
        else:
            self.register_parameter("alpha", None)  # type: ignore[attr-defined]
        if options.activation_threshold == "rsign":
            self.threshold = nn.Parameter(torch.zeros(in_channels))  # ReActNet: b = 0
        else:
            self.register_parameter("threshold", None)  # type: ignore[attr-defined]
        if self._scheduled_ste:  # set per epoch, never stored: not in the state_dict
            params = torch.tensor(ste_parameters(options, 0, 1))
            self.register_buffer("ste_params", params, persistent=False)  # type: ignore[attr-defined]

    def use_compiled_kernels(self, enabled: bool) -> None:
        """Fuse the activation backward with torch.compile (see quantizers); the
        scheduled estimators (ReSTE, EDE) always run eagerly."""
        self.compiled_kernels = enabled and not self._scheduled_ste
        if not self._scheduled_ste:
            self._scaled_act_quantizer = get_scaled_ste(
                self.options.activation_ste, compiled=enabled
            )

    def latent_weight(self) -> Tensor:
        """w1: the (optionally) standardised latent weight that the clamp acts on."""
        return standardize_filters(self.weight) if self.options.standardize else self.weight

    def clamp_bound(self, w1: Tensor) -> Tensor:
        """Q(tau) for this layer's current weights."""
        return recu_clamp_bound(w1, self.tau)

    def clamped_weight(self) -> Tensor:
        """w2 = clamp(w1, -Q, Q), or w1 with the clamp off."""
        w1 = self.latent_weight()
        if self.options.clamp:
            q = self.clamp_bound(w1)
            w1 = torch.clamp(w1, -q, q)
        return w1

    def presign_weight(self) -> Tensor:
        """v, the value whose sign is the binary weight: w2, or sin(f w2) with BiPer."""
        w2 = self.clamped_weight()
        if self.options.weight_binarizer == "biper":
            return biper_value(w2, self.options.biper_frequency)
        return w2

    def binary_weight(self) -> Tensor:
        """sign(v) with an identity straight-through gradient (ReCU: sign(clamp(w1, -Q,
        Q))); v itself with ``weights="real"`` (stage 1: real weights, binary inputs)."""
        v = self.presign_weight()
        if self.options.weights == "real":
            return v
        return self._weight_quantizer(v)

    def binary_input(self, a: Tensor) -> Tensor:
        """sign(a0): per-sample scaled in training (one fused op), then the activation STE;
        with RSign the threshold is subtracted first: sign(a - b) (scale-invariant)."""
        if self.threshold is not None:
            a = subtract_threshold(a, self.threshold)
        if self._scheduled_ste:
            if self.training and self.options.scale_activations:
                a = scale_per_sample(a)
            return scheduled_sign(self.options.activation_ste, a, self.ste_params)
        if self.training and self.options.scale_activations:
            return self._scaled_act_quantizer(a)
        return self._act_quantizer(a)

    def adds_loss_term(self) -> bool:
        """Whether ``regularization`` gives a term (BiPer with a non-zero lambda)."""
        options = self.options
        return options.weight_binarizer == "biper" and options.biper_regularizer != 0

    def regularization(self) -> Tensor | None:
        """BiPer's lambda * mean(sin(f w2)^2), or None when this layer adds no loss term."""
        options = self.options
        if not self.adds_loss_term():
            return None
        penalty = biper_penalty(self.clamped_weight(), options.biper_frequency)
        return options.biper_regularizer * penalty

    def scaled_binary_weight(self) -> Tensor:
        """alpha * sign(w2), alpha broadcast over each output filter."""
        wb = self.binary_weight()
        if self.alpha is None:
            return wb
        return wb * self.alpha.view((-1,) + (1,) * (wb.ndim - 1))


class BinaryConv2d(_ReCUMixin, nn.Conv2d):
    """nn.Conv2d with ReCU 1-bit weights and activations; alpha has shape (out, 1, 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        *,
        bias: bool = False,
        options: BinaryOptions | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self._init_recu(options or BinaryOptions(), (out_channels, 1, 1), in_channels)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out, H', W')
        return F.conv2d(
            self.binary_input(x),
            self.scaled_binary_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {_options_repr(self.options)}"


class BinaryLinear(_ReCUMixin, nn.Linear):
    """nn.Linear with ReCU 1-bit weights and activations; alpha has shape (out,)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = False,
        options: BinaryOptions | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._init_recu(options or BinaryOptions(), (out_features,), in_features)

    def forward(self, x: Tensor) -> Tensor:  # (B, in) -> (B, out)
        return F.linear(self.binary_input(x), self.scaled_binary_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {_options_repr(self.options)}"


BINARY_LAYERS = (BinaryConv2d, BinaryLinear)


def _options_repr(options: BinaryOptions) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.model_dump().items())


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryConv2d | BinaryLinear]]:
    """(qualified name, layer) for every ReCU layer of ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BINARY_LAYERS)]


def use_compiled_kernels(model: nn.Module, enabled: bool = True) -> None:
    """Switch every binary layer's activation backward to the torch.compile-fused kernel."""
    for _, layer in binary_layers(model):
        layer.use_compiled_kernels(enabled)


@torch.no_grad()
def set_tau(model: nn.Module, tau: float) -> None:
    """Write tau into every binary layer's buffer in place (no reallocation, no sync)."""
    if not 0.5 < tau < 1.0:
        raise ValueError(
            f"tau must lie in (0.5, 1) so that Q(tau) is positive and finite, got {tau}"
        )
    for _, layer in binary_layers(model):
        layer.tau.fill_(tau)


def ste_parameters(options: BinaryOptions, epoch: float, epochs: int) -> tuple[float, float]:
    """The scheduled estimator's parameters at ``epoch`` of ``epochs``: (o, 0) for ReSTE,
    (t, k) for EDE, (0, 0) for the estimators without a schedule."""
    if options.activation_ste == "reste":
        o = reste_o_at(epoch, epochs, options.reste_o_start, options.reste_o_end)
        return (o, 0.0)
    if options.activation_ste == "ede":
        t = ede_t_at(epoch, epochs, options.ede_t_start, options.ede_t_end)
        return (t, ede_k(t))
    return (0.0, 0.0)


@torch.no_grad()
def set_epoch_progress(model: nn.Module, epoch: float, epochs: int) -> None:
    """Set every per-epoch quantity of the layer options for ``epoch`` of ``epochs``
    (ReSTE's o, EDE's t and k), in place; a no-op for layers without one (ReCU's
    defaults). tau has its own schedule: ``set_tau``."""
    for _, layer in binary_layers(model):
        if layer._scheduled_ste:
            for i, value in enumerate(ste_parameters(layer.options, epoch, epochs)):
                layer.ste_params[i].fill_(value)


def adds_loss_terms(model: nn.Module) -> bool:
    """Whether any binary layer of ``model`` adds a loss term (asked once per run, so a
    ReCU step pays nothing for ``regularization_loss``)."""
    return any(layer.adds_loss_term() for _, layer in binary_layers(model))


def regularization_loss(model: nn.Module) -> Tensor:
    """The sum of every binary layer's loss term (BiPer's lambda * mean(sin(f w)^2)), a
    0-d tensor on the model's device: exactly 0 when no layer asks for one (ReCU)."""
    terms = [t for _, layer in binary_layers(model) if (t := layer.regularization()) is not None]
    if terms:
        return torch.stack(terms).sum()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return torch.zeros((), device=device)
