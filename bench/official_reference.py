"""A reference of the official ReCU code, written from its definitions (not copied).

What ``z-hXu/ReCU`` defines, re-expressed for side-by-side checks: the binary conv of
``cifar/modules/binarized_modules.py`` (Q turned into a Python float in every forward,
``torch.sign``, autograd through the activation scaling), the networks of
``cifar/models_cifar/resnet.py``, ``resnet2.py``, ``vgg.py`` and
``imagenet/models_imagenet/resnet.py``, and the epoch loop of ``cifar/main.py``
(hand-set warm-up, PyTorch's CosineAnnealingLR, tau set per epoch, best_prec1).
Modules are registered in this project's order so that the two state dicts align
tensor by tensor (``copy_state``); registration order changes no function.

Used by tests/unit/test_official_networks.py and bench/official_parity.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class OfficialBinarizeConv2d(nn.Conv2d):
    """The official ReCU binary conv, forward and gradients as its autograd defines them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = nn.Parameter(torch.rand(self.weight.size(0), 1, 1))
        self.register_buffer("tau", torch.tensor(1.0))

    def forward(self, a: Tensor) -> Tensor:
        w = self.weight
        w0 = w - w.mean([1, 2, 3], keepdim=True)
        w1 = w0 / (torch.sqrt(w0.var([1, 2, 3], keepdim=True) + 1e-5) / 2 / math.sqrt(2))
        q = (-w1.abs().mean() * torch.log(2 - 2 * self.tau)).item()
        w2 = torch.clamp(w1, -q, q)
        a0 = a / torch.sqrt(a.var([1, 2, 3], keepdim=True) + 1e-5) if self.training else a
        bw = w2 + (torch.sign(w2) - w2).detach()  # sign, identity gradient
        grad_a = (2 - 2 * a0.abs()).clamp(min=0)  # ApproxSign
        ba = torch.sign(a0).detach() + grad_a * (a0 - a0.detach())
        out = F.conv2d(ba, bw, None, self.stride, self.padding)
        return out * self.alpha


def _bin(cin: int, cout: int, stride: int = 1) -> nn.Module:
    return OfficialBinarizeConv2d(cin, cout, 3, stride, 1, bias=False)


def _pad_shortcut(cin: int, cout: int, stride: int):
    """Official option-A shortcut: AvgPool2d((2, 2)) and planes // 4 zero channels per side."""
    if stride == 1 and cin == cout:
        return lambda x: x
    pad = 0 if cin == cout else cout // 4
    return lambda x: F.pad(F.avg_pool2d(x, 2), (0, 0, 0, 0, pad, pad))


class _CifarBiRealBlock(nn.Module):  # resnet.py BasicBlock_1w1a
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _bin(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _bin(cout, cout), nn.BatchNorm2d(cout)
        self.shortcut = _pad_shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.hardtanh(self.bn1(self.conv1(x)) + self.shortcut(x))
        return F.hardtanh(self.bn2(self.conv2(out)) + out)


class _CifarBasicBlock(_CifarBiRealBlock):  # resnet2.py BasicBlock_1w1a
    def forward(self, x: Tensor) -> Tensor:
        out = F.hardtanh(self.bn1(self.conv1(x)))
        return F.hardtanh(self.bn2(self.conv2(out)) + self.shortcut(x))


class OfficialCifarResNet(nn.Module):
    def __init__(self, block, widths, depths, *, stem_hardtanh: bool, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.stem_hardtanh = stem_hardtanh
        layers, cin = [], widths[0]
        for stage, (cout, depth) in enumerate(zip(widths, depths, strict=True)):
            for i in range(depth):
                layers.append(block(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn2 = nn.BatchNorm1d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x))
        if self.stem_hardtanh:
            out = F.hardtanh(out)
        out = self.layers(out)
        out = F.avg_pool2d(out, out.size(3)).flatten(1)
        return self.linear(self.bn2(out))


class OfficialVGGSmall(nn.Module):  # vgg.py
    POOL_AFTER = (1, 3, 5)  # max-pool after conv1, conv3 and conv5, before their BatchNorm

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv0, self.bn0 = nn.Conv2d(3, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)
        plan = [(128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
        for i, (cin, cout) in enumerate(plan, start=1):
            self.add_module(f"conv{i}", _bin(cin, cout))
            self.add_module(f"bn{i}", nn.BatchNorm2d(cout))
        self.fc = nn.Linear(512 * 4 * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.hardtanh(self.bn0(self.conv0(x)))
        for i in range(1, 6):
            x = getattr(self, f"conv{i}")(x)
            if i in self.POOL_AFTER:
                x = F.max_pool2d(x, 2, 2)
            x = F.hardtanh(getattr(self, f"bn{i}")(x))
        return self.fc(x.flatten(1))


class _ImageNetBlock(nn.Module):  # imagenet resnet.py BasicBlock
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _bin(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _bin(cout, cout), nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = F.hardtanh(self.bn1(self.conv1(x)) + residual)
        return F.hardtanh(self.bn2(self.conv2(out)) + out)


class OfficialImageNetResNet(nn.Module):
    def __init__(self, depths, num_classes: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        layers, cin = [], 64
        for stage, (cout, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            for i in range(depth):
                layers.append(_ImageNetBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn2 = nn.BatchNorm1d(512)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.hardtanh(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layers(x)
        # The official AvgPool2d(7) at 224x224 input is this global average pool.
        return self.fc(self.bn2(F.adaptive_avg_pool2d(x, 1).flatten(1)))

    def official_name(self, name: str) -> str:
        """This module's parameter name as the official module names it."""
        return name.replace("layers.", "layer")


R18 = ((64, 128, 256, 512), (2, 2, 2, 2))
REFERENCES = {
    "resnet20": lambda: OfficialCifarResNet(
        _CifarBiRealBlock, (16, 32, 64), (3, 3, 3), stem_hardtanh=True, num_classes=10
    ),
    "resnet18": lambda: OfficialCifarResNet(
        _CifarBasicBlock, *R18, stem_hardtanh=False, num_classes=10
    ),
    # No official file: the Bi-Real blocks of resnet.py on ResNet-18's widths.
    "resnet18_bireal": lambda: OfficialCifarResNet(
        _CifarBiRealBlock, *R18, stem_hardtanh=True, num_classes=10
    ),
    "vgg_small": lambda: OfficialVGGSmall(num_classes=10),
    "resnet18_imagenet": lambda: OfficialImageNetResNet((2, 2, 2, 2), num_classes=10),
    "resnet34_imagenet": lambda: OfficialImageNetResNet((3, 4, 6, 3), num_classes=10),
}


def set_official_tau(model: nn.Module, tau: float) -> None:
    """What the official loop does once per epoch: ``module.tau = tau`` on every binary conv."""
    for m in model.modules():
        if isinstance(m, OfficialBinarizeConv2d):
            m.tau = torch.tensor(tau, dtype=m.weight.dtype)


def official_tau(epoch: int, epochs: int, tau_min: float, tau_max: float) -> float:
    """``cpt_tau`` of the official main.py: A e^(epoch/epochs) + B, in float32 as there."""
    a = torch.tensor(np.e)
    t_min, t_max = torch.tensor(tau_min).float(), torch.tensor(tau_max).float()
    big_a = (t_max - t_min) / (a - 1)
    return float(big_a * torch.tensor([torch.pow(a, epoch / epochs)]).float() + t_min - big_a)


@torch.no_grad()
def copy_state(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s tensors into ``target`` in state-dict order (shapes checked)."""
    mine, theirs = source.state_dict(), target.state_dict()
    if len(mine) != len(theirs):
        raise ValueError(f"{len(mine)} tensors against the official {len(theirs)}")
    for (key, a), (ref_key, b) in zip(mine.items(), theirs.items(), strict=True):
        if a.shape != b.shape:
            raise ValueError(f"{key} {tuple(a.shape)} vs official {ref_key} {tuple(b.shape)}")
        b.copy_(a)


Batches = Callable[[int], Iterable[tuple[Tensor, Tensor]]]


def official_training(
    model: nn.Module,
    train_batches: Batches,
    test_batches: Callable[[], Iterator[tuple[Tensor, Tensor]]],
    *,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    tau_min: float,
    tau_max: float,
    warm_up: bool = True,
) -> dict[str, list[float]]:
    """The epoch loop of the official cifar/main.py on the given batches.

    Returns per-epoch test accuracy, the running best_prec1, lr and images/s: training
    images over the epoch's wall time, evaluation included (as recu_core reports it),
    with the official per-step ``.item()`` calls.
    """
    optimizer = torch.optim.SGD(
        [{"params": model.parameters(), "initial_lr": lr}],
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, epochs - warm_up * 4, eta_min=0, last_epoch=-1
    )
    criterion = nn.CrossEntropyLoss()
    out: dict[str, list[float]] = {
        "test_acc": [],
        "best_test_acc": [],
        "lr": [],
        "images_per_s": [],
    }
    best = 0.0
    for epoch in range(epochs):
        if warm_up and epoch < 5:
            for group in optimizer.param_groups:
                group["lr"] = lr * (epoch + 1) / 5
        out["lr"].append(optimizer.param_groups[0]["lr"])
        set_official_tau(model, official_tau(epoch, epochs, tau_min, tau_max))
        model.train()
        seen, started = 0, time.perf_counter()
        for x, y in train_batches(epoch):
            output = model(x)
            loss = criterion(output, y)
            loss.item()  # the official AverageMeter updates
            (output.argmax(1) == y).float().mean().item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += y.shape[0]
        if epoch >= 4 * warm_up:
            scheduler.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in test_batches():
                correct += int((model(x).argmax(1) == y).sum())
                total += y.shape[0]
        out["images_per_s"].append(seen / (time.perf_counter() - started))
        acc = correct / total
        best = max(best, acc)
        out["test_acc"].append(acc)
        out["best_test_acc"].append(best)
    return out
