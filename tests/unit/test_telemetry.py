"""Weight telemetry: each figure against a direct computation."""

import math

import pytest
import torch

from recu_core.config import BinaryOptions
from recu_core.layers import set_tau
from recu_core.models import create_model
from recu_core.telemetry import HIST_BINS, WeightTelemetry


def _model(options=None):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=1, image_size=8, options=options)
    set_tau(model, 0.9)
    return model


def test_figures_match_direct_computation():
    model = _model()
    telemetry = WeightTelemetry(model)
    report = telemetry.unpack(telemetry.collect(torch.device("cpu")).tolist())
    assert len(report["layers"]) == 18
    name, layer = telemetry.layers[3]
    entry = report["layers"][name]
    w1 = layer.latent_weight().detach()
    q = -w1.abs().mean() * math.log(2 - 2 * 0.9)
    assert entry["q"] == pytest.approx(q.item(), rel=1e-5)
    assert entry["beyond_clamp"] == pytest.approx((w1.abs() > q).float().mean().item())
    assert entry["flip_rate"] == 0.0  # nothing changed since construction
    assert sum(entry["hist"]) == w1.numel()
    assert 0 < entry["entropy_bits"] <= math.log2(HIST_BINS)
    w2 = w1.clamp(-q, q)
    s = w2.abs().mean()
    expected_err = ((w2 - s * torch.where(w2 >= 0, 1.0, -1.0)) ** 2).sum() / (w2**2).sum()
    assert entry["quant_error"] == pytest.approx(expected_err.item(), rel=1e-4)
    alpha = layer.alpha.detach().flatten()
    assert entry["alpha"]["mean"] == pytest.approx(alpha.mean().item(), rel=1e-6)
    assert entry["alpha"]["max"] == pytest.approx(alpha.max().item(), rel=1e-6)


def test_flip_rate_counts_sign_changes_since_last_collection():
    model = _model()
    telemetry = WeightTelemetry(model)
    name, layer = telemetry.layers[0]
    with torch.no_grad():
        layer.weight[0].neg_()  # flip every sign of filter 0: 1/16 of the layer
    first = telemetry.unpack(telemetry.collect(torch.device("cpu")).tolist())
    assert first["layers"][name]["flip_rate"] == pytest.approx(1 / 16, abs=0.01)
    second = telemetry.unpack(telemetry.collect(torch.device("cpu")).tolist())
    assert second["layers"][name]["flip_rate"] == 0.0


def _quant_error(w):
    s = w.abs().mean()
    return (((w - s * torch.where(w >= 0, 1.0, -1.0)) ** 2).sum() / (w**2).sum()).item()


def test_alpha_off_reports_none_and_clamp_off_measures_unclamped_weights():
    model = _model(BinaryOptions(alpha="none", clamp=False))
    telemetry = WeightTelemetry(model)
    report = telemetry.unpack(telemetry.collect(torch.device("cpu")).tolist())
    name, layer = telemetry.layers[0]
    entry = report["layers"][name]
    assert entry["alpha"] is None
    assert entry["beyond_clamp"] > 0  # still reported: where the clamp would act
    w1 = layer.latent_weight().detach()
    q = layer.clamp_bound(w1)
    assert entry["quant_error"] == pytest.approx(_quant_error(w1), rel=1e-4)
    assert entry["quant_error"] != pytest.approx(_quant_error(w1.clamp(-q, q)), rel=1e-3)


def test_full_precision_model_has_no_telemetry():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=1, image_size=8, binary=False)
    telemetry = WeightTelemetry(model)
    assert telemetry.collect(torch.device("cpu")).numel() == 0
    assert telemetry.unpack([])["layers"] == {}
