"""Every registered model against an independent reference of the official ReCU network.

The references (bench/official_reference.py) are written from the official definitions
(``cifar/models_cifar/resnet.py``, ``resnet2.py``, ``vgg.py``,
``imagenet/models_imagenet/resnet.py`` and ``cifar/modules/binarized_modules.py``): the
official binary conv (Q turned into a Python float, ``torch.sign``, autograd through the
activation scaling), the official blocks, stems and heads. Each is built with its modules
registered in the project's order, so the two state dicts align tensor by tensor; the
weights (every parameter and buffer, randomised so that no BatchNorm is near identity)
are copied across and the outputs, input gradients and parameter gradients compared in
float64, in train and in eval mode. ``resnet18_bireal`` is the one registered network
with no official file: it is checked against its own definition (Bi-Real blocks on the
ResNet-18 widths), and against the official ResNet-18 to show that it is a different
function.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.official_reference import REFERENCES, copy_state, set_official_tau
from recu_core.config import MODEL_NAMES
from recu_core.layers import set_tau
from recu_core.models import create_model
from recu_core.train import parameter_groups

TAU = 0.9


# Official parameter counts with 10 classes (the reference's own count is checked too).
INPUT = dict.fromkeys(("resnet20", "resnet18", "resnet18_bireal", "vgg_small"), (4, 32))
INPUT |= {"resnet18_imagenet": (3, 64), "resnet34_imagenet": (2, 64)}


def _ours(name: str) -> nn.Module:
    size = INPUT[name][1]
    return create_model(name, num_classes=10, in_channels=3, image_size=size)


@torch.no_grad()
def _randomise_and_copy(ours: nn.Module, ref: nn.Module, seed: int = 1) -> None:
    """Random values in every tensor of ``ours`` (BatchNorm gamma away from 0, variances
    positive), then the same values into ``ref``, tensor by tensor in state-dict order.

    alpha takes powers of two: the project scales the binary weight by alpha, the official
    code the conv output, and only with an exact product do both give bit-equal outputs;
    otherwise rounding breaks the ties that max-pooling meets on integer conv sums
    differently, and the gradient goes to another (equally valid) maximum.
    """
    gen = torch.Generator().manual_seed(seed)
    mine, theirs = ours.state_dict(), ref.state_dict()
    assert len(mine) == len(theirs), f"{len(mine)} tensors against the official {len(theirs)}"
    for (key, a), (ref_key, b) in zip(mine.items(), theirs.items(), strict=True):
        assert a.shape == b.shape, f"{key} {tuple(a.shape)} vs official {ref_key} {tuple(b.shape)}"
        assert key.rsplit(".", 1)[1] == ref_key.rsplit(".", 1)[1], (key, ref_key)
        if key.endswith("alpha"):  # powers of two: alpha * (integer sum) is exact either way
            a.copy_(2.0 ** torch.randint(-2, 2, a.shape, generator=gen).to(a.dtype))
        elif key.endswith("running_var"):
            a.copy_(torch.rand(a.shape, generator=gen, dtype=a.dtype) + 0.5)
        elif a.dtype.is_floating_point and not key.endswith("tau"):
            bn_weight = key.endswith("weight") and a.ndim == 1
            a.copy_(torch.randn(a.shape, generator=gen, dtype=a.dtype) * 0.3 + bn_weight)
        b.copy_(a)


def _pair(name: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ours, ref = _ours(name).double(), REFERENCES[name]().double()
    _randomise_and_copy(ours, ref)
    set_tau(ours, TAU)
    set_official_tau(ref, TAU)
    return ours, ref


def _run(model: nn.Module, x: Tensor, train: bool) -> tuple[Tensor, Tensor, list[Tensor]]:
    model.train(train)
    x = x.clone().requires_grad_(True)
    out = model(x)
    # Random per-sample weights: with train-mode BatchNorm before the classifier, a loss
    # that weighs every sample alike has a zero input gradient.
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    (out * weights).sum().backward()
    grads = [p.grad for p in model.parameters()]
    return out.detach(), x.grad, grads


def _assert_close_scaled(what: str, a: Tensor, b: Tensor, scale: Tensor | None = None) -> None:
    """Equal to 1e-7 of ``scale`` (default: b's largest magnitude). Gradients through stacked
    random BatchNorms reach 1e14 in eval mode, so an absolute tolerance means nothing there;
    and a train-mode BatchNorm after a conv makes alpha's true gradient 0 (the output does
    not depend on a per-channel scale), so alpha is held to the scale of all gradients."""
    scale = (b.abs().max() if scale is None else scale).clamp(min=1e-12)
    torch.testing.assert_close(a / scale, b / scale, rtol=1e-7, atol=1e-9, msg=what)


def test_every_registered_model_has_a_reference():
    assert set(REFERENCES) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_parameter_count_matches_the_official_network(name):
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(_ours(name)) == count(REFERENCES[name]())


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_outputs_and_gradients_equal_the_official_network_in_float64(name, train):
    batch, size = INPUT[name]
    ours, ref = _pair(name)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, size, size, dtype=torch.float64, generator=gen)
    out, gx, grads = _run(ours, x, train)
    ref_out, ref_gx, ref_grads = _run(ref, x, train)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-9)
    _assert_close_scaled("input", gx, ref_gx)
    overall = max(g.abs().max() for g in ref_grads)
    for (pname, _), g, ref_g in zip(ours.named_parameters(), grads, ref_grads, strict=True):
        _assert_close_scaled(pname, g, ref_g, overall if pname.endswith("alpha") else None)
    if train:  # BatchNorm running statistics moved identically
        for (key, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
            if "running" in key:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=key)


def test_the_bireal_variant_is_not_the_official_resnet18():
    ours = _ours("resnet18_bireal").double()
    ref = REFERENCES["resnet18"]().double()
    _randomise_and_copy(ours, ref)  # same tensors fit: the parameter count is the same
    set_tau(ours, TAU)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    ours.eval(), ref.eval()
    assert (ours(x) - ref(x)).abs().max() > 1e-3


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_convs_start_at_the_official_kaiming_normal_scale(name):
    torch.manual_seed(0)
    model = _ours(name)
    for pname, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        out, fan_in = module.weight.shape[0], module.weight[0].numel()
        k = module.weight.shape[2] * module.weight.shape[3]
        fan = out * k if name == "vgg_small" else fan_in  # vgg.py: n = k * k * out_channels
        expected = math.sqrt(2.0 / fan)
        std = float(module.weight.detach().std())
        tolerance = 4 * expected / math.sqrt(2 * module.weight.numel()) + 0.02 * expected
        assert abs(std - expected) < tolerance, f"{pname}: std {std:.4f}, official {expected:.4f}"
        assert abs(float(module.weight.detach().mean())) < 5 * expected / math.sqrt(
            module.weight.numel()
        )


@pytest.mark.parametrize("name", ["resnet18_imagenet", "resnet34_imagenet"])
def test_imagenet_batchnorm2d_gammas_start_at_1e8(name):
    model = _ours(name)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    assert all(torch.all(m.weight == 1e-8) and torch.all(m.bias == 0) for m in bns)
    head = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(head) == 1
    assert torch.all(head[0].weight == 1)


def test_vgg_classifier_starts_as_the_official_one():
    fc = _ours("vgg_small").fc
    assert torch.all(fc.bias == 0)
    assert abs(float(fc.weight.detach().std()) - 0.01) < 0.0005


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_weight_decay_groups_follow_the_official_optimiser(name):
    """ImageNet: decay exactly the parameters whose official names hold 'conv' or 'fc';
    CIFAR: decay everything (the official CIFAR optimiser has one group)."""
    ours, ref = _ours(name), REFERENCES[name]()
    groups = parameter_groups(ours, weight_decay=1e-4)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(ours.parameters()))
    ref_names = [n for n, _ in ref.named_parameters()]
    if name.endswith("_imagenet"):
        official = [
            "conv" in ref.official_name(n) or "fc" in ref.official_name(n) for n in ref_names
        ]
        assert 0 < sum(official) < len(official)
    else:
        official = [True] * len(ref_names)
    mine = [id(p) in decayed for p in ours.parameters()]
    assert mine == official


def _official_optimizer(name: str, ref: nn.Module) -> torch.optim.Optimizer:
    """SGD as the official main.py builds it: one group (CIFAR), or decay only on the
    parameters whose official names hold 'conv' or 'fc' (ImageNet)."""
    if not name.endswith("_imagenet"):
        groups = [{"params": list(ref.parameters()), "initial_lr": 0.1}]
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-3)
    named = [(ref.official_name(n), p) for n, p in ref.named_parameters()]
    decayed = [p for n, p in named if "conv" in n or "fc" in n]
    rest = [p for n, p in named if not ("conv" in n or "fc" in n)]
    groups = [
        {"params": decayed, "initial_lr": 0.1},
        {"params": rest, "initial_lr": 0.1, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-3)


@pytest.mark.parametrize(
    ("name", "batch", "steps"), [("resnet20", 32, 8), ("resnet18_imagenet", 4, 2)]
)
def test_sgd_steps_follow_the_official_training_in_float64(name, batch, steps):
    """The trainer's optimizer (its weight-decay groups) and freshly initialised model
    against the official loop's, step by step, stay equal in float64. (Binary networks
    are chaotic: in float32, or from badly conditioned random states, rounding flips a few
    signs and two runs of either implementation part within a few steps.)"""
    from recu_core.config import TrainConfig
    from recu_core.train import build_optimizer

    torch.manual_seed(0)
    ours, ref = _ours(name).double(), REFERENCES[name]().double()
    copy_state(ours, ref)
    set_tau(ours, TAU)
    set_official_tau(ref, TAU)
    ours_opt = build_optimizer(TrainConfig(optimizer={"weight_decay": 1e-3}), ours)
    ref_opt = _official_optimizer(name, ref)
    size = INPUT[name][1]
    gen = torch.Generator().manual_seed(4)
    for _ in range(steps):
        x = torch.randn(batch, 3, size, size, dtype=torch.float64, generator=gen)
        y = torch.randint(0, 10, (batch,), generator=gen)
        for model, opt in ((ours, ours_opt), (ref, ref_opt)):
            model.train()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (key, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8, msg=key)
