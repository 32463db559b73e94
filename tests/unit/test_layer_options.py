"""The layer options of BinaryOptions beyond ReCU, each against an independent reference.

BiPer's weight binarizer and regulariser, real weights (stage 1), ReActNet's RSign and
RPReLU, and the ReSTE / EDE activation estimators with their per-epoch schedules: forward
and gradient against NumPy (closed forms from the papers, and finite differences of the
functions the estimators differentiate), every registered model with every option, and
the defaults left exactly as ReCU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from recu_core.activations import RPReLU
from recu_core.config import BinaryOptions, TrainConfig
from recu_core.estimators import RESTE_CLIP, RESTE_INTERVAL, ede_grad, reste_grad, scheduled_sign
from recu_core.layers import (
    BinaryConv2d,
    BinaryLinear,
    binary_layers,
    regularization_loss,
    set_epoch_progress,
    set_tau,
    use_compiled_kernels,
)
from recu_core.models import create_model, list_models
from recu_core.schedules import ede_k, ede_t_at, reste_o_at
from tests.helpers import HostSyncs

OPTIONS = {
    "biper": {"weight_binarizer": "biper"},
    "biper_real": {"weight_binarizer": "biper", "weights": "real"},
    "real": {"weights": "real"},
    "rsign": {"activation_threshold": "rsign"},
    "rprelu": {"activation": "rprelu"},
    "reste": {"activation_ste": "reste"},
    "ede": {"activation_ste": "ede"},
}
INPUTS = {  # as tests/unit/test_models.py: small inputs keep the suite fast
    "resnet20": (1, 8),
    "resnet18": (1, 8),
    "resnet18_bireal": (1, 8),
    "vgg_small": (1, 8),
    "resnet18_imagenet": (3, 32),
    "resnet34_imagenet": (3, 32),
}


def _model(name: str, options: BinaryOptions, seed: int = 0) -> torch.nn.Module:
    channels, size = INPUTS[name]
    torch.manual_seed(seed)
    return create_model(name, num_classes=5, in_channels=channels, image_size=size, options=options)


def _x(name: str, seed: int = 1) -> torch.Tensor:
    channels, size = INPUTS[name]
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(seed))


# --- configuration -----------------------------------------------------------------------


def test_defaults_are_recu():
    options = BinaryOptions()
    assert (options.weights, options.weight_binarizer) == ("binary", "recu")
    assert (options.activation_threshold, options.activation) == ("none", "hardtanh")
    assert options.activation_ste == "approx_sign"
    assert options.clamp
    assert options.standardize


def test_biper_defaults_to_its_recipe_and_explicit_fields_win():
    biper = BinaryOptions(weight_binarizer="biper")
    assert not biper.clamp
    assert not biper.standardize
    explicit = BinaryOptions.model_validate({"weight_binarizer": "biper", "standardize": True})
    assert explicit.standardize
    assert not explicit.clamp
    stored = TrainConfig(binary_options=biper).stored()
    assert TrainConfig.model_validate(stored).binary_options == biper


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weights", "ternary"),
        ("weight_binarizer", "sin"),
        ("biper_frequency", 0.0),
        ("biper_regularizer", -1.0),
        ("activation_threshold", "learned"),
        ("activation", "relu"),
        ("activation_ste", "tanh"),
        ("reste_o_start", 0.5),
        ("ede_t_start", 0.0),
    ],
)
def test_bad_option_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        TrainConfig.model_validate({"binary_options": {field: value}})
    assert any(e["loc"] == ("binary_options", field) for e in info.value.errors())


# --- schedules ---------------------------------------------------------------------------


def test_reste_exponent_schedule_is_reste_cosine_ramp():
    epochs = 40
    got = np.array([reste_o_at(e, epochs, 1.0, 3.0) for e in range(epochs + 1)])
    ratio = np.arange(epochs + 1) / epochs
    expected = 1 + (1 - np.cos(ratio * np.pi / 2)) * (3 - 1)  # ReSTE main.py, o_end = 3
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-14)
    assert got[0] == 1.0
    assert got[-1] == pytest.approx(3.0)
    assert np.all(np.diff(got) > 0)


def test_ede_schedule_is_log_uniform_with_k_at_least_one_over_t():
    epochs = 25
    t = np.array([ede_t_at(e, epochs, 1e-3, 10.0) for e in range(epochs + 1)])
    log_expected = np.log10(1e-3) + (np.log10(10.0) - np.log10(1e-3)) * np.arange(26) / epochs
    np.testing.assert_allclose(t, 10.0**log_expected, rtol=1e-12)
    k = np.array([ede_k(v) for v in t])
    np.testing.assert_allclose(k, np.where(t < 1, 1 / t, 1.0), rtol=1e-15)
    with pytest.raises(ValueError, match="epoch must lie in"):
        ede_t_at(26, epochs, 1e-3, 10.0)


# --- the activation estimators -----------------------------------------------------------


def _numpy_reste_grad(x: np.ndarray, o: float) -> np.ndarray:
    a = np.abs(x)
    power = (1 / o) * np.power(np.maximum(a, RESTE_INTERVAL), (1 - o) / o)
    near = RESTE_INTERVAL ** (1 / o) / RESTE_INTERVAL
    return np.where(a > RESTE_CLIP, 0.0, np.where(a <= RESTE_INTERVAL, near, power))


@pytest.mark.parametrize("o", [1.0, 1.7, 3.0])
def test_reste_gradient_matches_numpy_and_the_power_functions_derivative(o):
    x = np.concatenate([np.linspace(-2, 2, 401), [0.0, -0.1, 0.1, 1.5, -1.5, 1.5001]])
    got = reste_grad(torch.from_numpy(x), torch.tensor(o, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, _numpy_reste_grad(x, o), rtol=1e-12, atol=0)
    # where the power law is kept, g is the derivative of sign(x)|x|^(1/o) (finite difference)
    inside = x[(np.abs(x) > 0.11) & (np.abs(x) < 1.49)]
    h = 1e-6
    power = lambda v: np.sign(v) * np.abs(v) ** (1 / o)  # noqa: E731
    numeric = (power(inside + h) - power(inside - h)) / (2 * h)
    got_inside = reste_grad(torch.from_numpy(inside), torch.tensor(o, dtype=torch.float64))
    np.testing.assert_allclose(got_inside.numpy(), numeric, rtol=1e-6)
    # near zero, the secant slope of the power law over [0, d]
    assert got[x == 0.0][0] == pytest.approx(RESTE_INTERVAL ** (1 / o) / RESTE_INTERVAL)
    assert got[x == 1.5001][0] == 0.0


@pytest.mark.parametrize(("t", "k"), [(1e-3, 1e3), (0.5, 2.0), (10.0, 1.0)])
def test_ede_gradient_is_the_derivative_of_k_tanh_tx(t, k):
    x = np.linspace(-3, 3, 301)
    t64, k64 = torch.tensor(t, dtype=torch.float64), torch.tensor(k, dtype=torch.float64)
    got = ede_grad(torch.from_numpy(x), t64, k64).numpy()
    np.testing.assert_allclose(got, k * t * (1 - np.tanh(t * x) ** 2), rtol=1e-12, atol=1e-14)
    h = 1e-6
    numeric = (k * np.tanh(t * (x + h)) - k * np.tanh(t * (x - h))) / (2 * h)
    np.testing.assert_allclose(got, numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(("name", "params"), [("reste", (2.0, 0.0)), ("ede", (0.7, 1 / 0.7))])
def test_scheduled_sign_is_binary_forward_and_estimator_backward(name, params):
    x = torch.tensor([-2.0, -0.5, -0.0, 0.0, 0.05, 0.3, 1.2, 3.0], dtype=torch.float64)
    x.requires_grad_(True)
    p = torch.tensor(params, dtype=torch.float64)
    upstream = torch.linspace(0.5, 2.0, x.numel(), dtype=torch.float64)
    out = scheduled_sign(name, x, p)
    assert out.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    out.backward(upstream)
    xs = x.detach().numpy()
    if name == "reste":
        g = _numpy_reste_grad(xs, params[0])
    else:
        g = params[1] * params[0] * (1 - np.tanh(params[0] * xs) ** 2)
    np.testing.assert_allclose(x.grad.numpy(), upstream.numpy() * g, rtol=1e-12)


def test_set_epoch_progress_sets_each_layers_schedule_and_changes_the_gradient():
    options = BinaryOptions(activation_ste="reste", reste_o_start=1.0, reste_o_end=3.0)
    layer = BinaryConv2d(3, 4, 3, padding=1, options=options).double().eval()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64) * 0.8
    grads = []
    for epoch in (0, 10):
        set_epoch_progress(layer, epoch, 10)
        o = reste_o_at(epoch, 10, 1.0, 3.0)
        assert layer.ste_params[0].item() == pytest.approx(o, rel=1e-6)
        xg = x.clone().requires_grad_(True)
        layer(xg).sum().backward()
        grads.append(xg.grad)
    assert not torch.allclose(grads[0], grads[1])
    ede = BinaryConv2d(3, 4, 3, options=BinaryOptions(activation_ste="ede"))
    set_epoch_progress(ede, 3, 12)
    t = ede_t_at(3, 12, 1e-3, 10.0)
    assert ede.ste_params.tolist() == pytest.approx([t, ede_k(t)], rel=1e-6)
    assert "ste_params" not in ede.state_dict()  # set per epoch, never stored


def test_gradient_only_options_leave_the_forward_bit_identical():
    """ReSTE and EDE change only the backward: the same model's outputs are equal, in
    training (scaled activations) and in eval."""
    for train in (True, False):
        outputs = []
        for options in ({}, OPTIONS["reste"], OPTIONS["ede"]):
            model = _model("resnet20", BinaryOptions(**options)).train(train)
            set_tau(model, 0.9)
            outputs.append(model(_x("resnet20")))
        assert torch.equal(outputs[0], outputs[1])
        assert torch.equal(outputs[0], outputs[2])


# --- BiPer and real weights --------------------------------------------------------------


def test_biper_weight_is_sign_of_sine_with_gradient_f_cos_fw():
    f = 20.0
    options = BinaryOptions(weight_binarizer="biper", biper_frequency=f, alpha="none")
    layer = BinaryConv2d(3, 4, 3, options=options).double()
    w = layer.weight.detach().numpy().copy()
    wb = layer.binary_weight()
    np.testing.assert_array_equal(wb.detach().numpy(), np.where(np.sin(f * w) >= 0, 1.0, -1.0))
    upstream = torch.randn_like(wb)
    wb.backward(upstream)
    np.testing.assert_allclose(
        layer.weight.grad.numpy(), upstream.numpy() * f * np.cos(f * w), rtol=1e-12
    )


def test_biper_composes_with_standardise_and_clamp_when_asked():
    options = BinaryOptions(weight_binarizer="biper", standardize=True, clamp=True)
    layer = BinaryConv2d(3, 4, 3, options=options).double()
    set_tau(layer, 0.9)
    recu = BinaryConv2d(3, 4, 3, options=BinaryOptions()).double()
    recu.load_state_dict(layer.state_dict())
    set_tau(recu, 0.9)
    w2 = recu.clamped_weight().detach()
    expected = torch.where(torch.sin(options.biper_frequency * w2) >= 0, 1.0, -1.0)
    assert torch.equal(layer.binary_weight().detach(), expected.double())


def test_biper_regularization_loss_and_its_gradient():
    lam, f = 0.05, 7.0
    options = BinaryOptions(weight_binarizer="biper", biper_frequency=f, biper_regularizer=lam)
    model = _model("resnet20", options).double()
    weights = [layer.weight.detach().numpy().copy() for _, layer in binary_layers(model)]
    loss = regularization_loss(model)
    expected = sum(lam * np.mean(np.sin(f * w) ** 2) for w in weights)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    for (_, layer), w in zip(binary_layers(model), weights, strict=True):
        grad = lam * 2 * np.sin(f * w) * np.cos(f * w) * f / w.size
        np.testing.assert_allclose(layer.weight.grad.numpy(), grad, rtol=1e-10, atol=1e-18)


def test_regularization_loss_is_exactly_zero_without_biper():
    for options in (BinaryOptions(), BinaryOptions(weight_binarizer="biper", biper_regularizer=0)):
        loss = regularization_loss(_model("resnet20", options))
        assert loss.item() == 0.0
        assert loss.ndim == 0
        assert not loss.requires_grad


@pytest.mark.parametrize("binarizer", ["recu", "biper"])
def test_real_weights_use_the_presign_value_with_binary_inputs(binarizer):
    options = BinaryOptions(weights="real", weight_binarizer=binarizer)
    layer = BinaryConv2d(3, 4, 3, padding=1, options=options).double().eval()
    set_tau(layer, 0.9)
    w = layer.weight.detach().numpy()
    if binarizer == "recu":  # the DESIGN chain without its last sign
        w0 = w - w.mean(axis=(1, 2, 3), keepdims=True)
        sd = np.sqrt(w0.var(axis=(1, 2, 3), ddof=1, keepdims=True) + 1e-5) / (2 * np.sqrt(2))
        w1 = w0 / sd
        q = -np.abs(w1).mean() * np.log(2 - 2 * 0.9)
        v = np.clip(w1, -q, q)
    else:
        v = np.sin(options.biper_frequency * w)
    assert len(np.unique(v)) > 2  # real-valued
    alpha = layer.alpha.detach().numpy().reshape(-1, 1, 1, 1)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    signs = torch.where(x >= 0, 1.0, -1.0).double()
    expected = F.conv2d(signs, torch.from_numpy(v * alpha), padding=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


# --- RSign and RPReLU --------------------------------------------------------------------


@pytest.mark.parametrize("train", [True, False])
def test_rsign_binarises_x_minus_b_and_b_gets_minus_the_shifted_inputs_gradient(train):
    options = BinaryOptions(activation_threshold="rsign", activation_ste="clipped")
    layer = BinaryConv2d(3, 4, 3, padding=1, options=options).double().train(train)
    with torch.no_grad():
        layer.threshold.copy_(torch.tensor([0.3, -0.2, 0.0]))
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    b = layer.threshold.detach().numpy().reshape(1, 3, 1, 1)
    signs = np.where(x.detach().numpy() - b >= 0, 1.0, -1.0)
    expected = F.conv2d(torch.from_numpy(signs), layer.scaled_binary_weight().detach(), padding=1)
    out = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    assert layer.threshold.grad.abs().sum() > 0
    torch.testing.assert_close(layer.threshold.grad, -x.grad.sum(dim=(0, 2, 3)))


def test_rsign_at_its_initial_zero_threshold_is_recus_function_exactly():
    for train in (True, False):
        outs = [
            _model("resnet18", BinaryOptions(**o)).train(train)(_x("resnet18"))
            for o in ({}, OPTIONS["rsign"])
        ]
        assert torch.equal(outs[0], outs[1])


def test_rsign_on_a_linear_layer():
    layer = BinaryLinear(6, 3, options=BinaryOptions(activation_threshold="rsign")).double()
    layer.eval()
    with torch.no_grad():
        layer.threshold.copy_(torch.linspace(-0.5, 0.5, 6))
    x = torch.randn(4, 6, dtype=torch.float64)
    signs = torch.where(x - layer.threshold.detach() >= 0, 1.0, -1.0).double()
    torch.testing.assert_close(layer(x), signs @ layer.scaled_binary_weight().detach().T)


def test_rprelu_forward_and_gradients_match_numpy():
    act = RPReLU(3).double()
    with torch.no_grad():
        act.gamma.copy_(torch.tensor([0.1, -0.2, 0.0]))
        act.slope.copy_(torch.tensor([0.25, -0.5, 1.5]))
        act.zeta.copy_(torch.tensor([0.0, 0.3, -0.1]))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    g, s, z = (p.detach().numpy().reshape(1, 3, 1, 1) for p in (act.gamma, act.slope, act.zeta))
    u = x.detach().numpy() - g
    expected = np.where(u > 0, u, s * u) + z
    out = act(x)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    r = upstream.numpy()
    du = np.where(u > 0, 1.0, s)
    np.testing.assert_allclose(x.grad.numpy(), r * du, rtol=1e-12)
    np.testing.assert_allclose(act.gamma.grad.numpy(), -(r * du).sum(axis=(0, 2, 3)), rtol=1e-12)
    slope_grad = (r * np.where(u > 0, 0.0, u)).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(act.slope.grad.numpy(), slope_grad, rtol=1e-12)
    np.testing.assert_allclose(act.zeta.grad.numpy(), r.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_rprelu_sits_after_batchnorm_and_residual_in_every_block():
    model = _model("resnet18", BinaryOptions(activation="rprelu"))
    block = model.blocks[0]
    assert isinstance(block.act1, RPReLU)
    assert isinstance(block.act2, RPReLU)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        block.act2.zeta.fill_(0.7)
        block.act2.gamma.fill_(0.2)
        block.act2.slope.fill_(0.1)
        h = block.act1(block.bn1(block.conv1(x)))
        u = block.bn2(block.conv2(h)) + block.shortcut(x) - 0.2
        expected = torch.where(u > 0, u, 0.1 * u) + 0.7
        torch.testing.assert_close(block(x), expected)
    assert isinstance(model.stem[-1], torch.nn.Identity)  # the stem is unchanged


# --- every model, every option; the defaults unchanged -----------------------------------


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_every_model_trains_with_every_option(name, option):
    assert set(list_models()) == set(INPUTS)
    model = _model(name, BinaryOptions(**OPTIONS[option]))
    set_tau(model, 0.9)
    set_epoch_progress(model, 2, 5)
    model.train()
    x = _x(name)
    with HostSyncs(fail=True):  # no device-to-host synchronisation per step
        out = model(x)
        loss = out.logsumexp(1).mean() + regularization_loss(model)
        loss.backward()
    assert out.shape == (2, 5)
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} has no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    model.eval()
    assert torch.isfinite(model(x)).all()


def _added_keys(name: str, option: str) -> set[str]:
    default = set(_model(name, BinaryOptions()).state_dict())
    changed = set(_model(name, BinaryOptions(**OPTIONS[option])).state_dict())
    assert default <= changed, f"{option} removed keys: {default - changed}"
    return changed - default


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_options_add_only_their_own_state_dict_keys(name):
    convs = [n for n, _ in binary_layers(_model(name, BinaryOptions()))]
    for option in ("biper", "real", "reste", "ede"):
        assert _added_keys(name, option) == set()
    assert _added_keys(name, "rsign") == {f"{n}.threshold" for n in convs}
    added = _added_keys(name, "rprelu")
    assert added
    assert all(k.rsplit(".", 1)[1] in {"gamma", "slope", "zeta"} for k in added)
    assert len(added) == 3 * len(convs)  # one RPReLU per binary conv


def test_default_state_dict_keys_are_the_official_ones():
    keys = set(_model("resnet20", BinaryOptions()).state_dict())
    block = {k.split(".", 2)[2] for k in keys if k.startswith("blocks.0.")}
    bn = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    expected = {f"{c}.{p}" for c in ("conv1", "conv2") for p in ("weight", "alpha", "tau")}
    expected |= {f"{b}.{p}" for b in ("bn1", "bn2") for p in bn}
    assert block == expected


def test_scheduled_estimators_survive_compiled_kernels_and_state_dict_round_trip():
    options = BinaryOptions(activation_ste="ede")
    model = _model("resnet20", options)
    use_compiled_kernels(model)  # ignored by the scheduled estimators: eager, no error
    assert not any(layer.compiled_kernels for _, layer in binary_layers(model))
    twin = _model("resnet20", options, seed=5)
    twin.load_state_dict(model.state_dict(), strict=True)
    x = _x("resnet20")
    model.eval(), twin.eval()
    assert torch.equal(model(x), twin(x))


def test_epoch_progress_is_a_no_op_for_recu():
    model = _model("resnet20", BinaryOptions())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_epoch_progress(model, 3, 10)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert math.isfinite(reste_o_at(0, 1, 1.0, 3.0))
