"""The training function: one run of a ``TrainConfig``, with callbacks and exact resume.

Per epoch t of T: set tau(t) in every binary layer, run the training steps with the lr
of the epoch (``epoch_lr``, the official schedule) or of each step (``lr_at``), evaluate
on the validation split (if any) and the test split, collect weight telemetry, then move
all epoch figures to the host in one transfer (the only host synchronisation of the
epoch), update the best accuracy so far (``selection``), call the callbacks.

Resume is exact: the data order and augmentation of an epoch depend only on
(seed, epoch), and model, optimizer and BatchNorm state come from the checkpoint, so a
resumed run continues as the uninterrupted one would (within floating-point tolerance).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recu_core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from recu_core.config import TrainConfig
from recu_core.data import Dataset, Loader, has_split, load_dataset, make_loader
from recu_core.distill import Distillation
from recu_core.layers import (
    adds_loss_terms,
    regularization_loss,
    set_epoch_progress,
    set_tau,
    use_compiled_kernels,
)
from recu_core.manifest import RunManifest
from recu_core.models import create_model
from recu_core.provenance import collect_manifest
from recu_core.schedules import epoch_lr, lr_at, tau_at
from recu_core.selection import BestSoFar
from recu_core.settings import DataSettings
from recu_core.telemetry import WeightTelemetry

log = logging.getLogger("recu.train")


class TrainingStoppedError(Exception):
    """``train`` was asked to stop (``should_stop``) between two steps."""


@dataclass
class EpochReport:
    """What a callback sees after each epoch. ``epoch`` counts completed epochs (1-based)."""

    epoch: int
    total_epochs: int
    metrics: dict[str, float]
    telemetry: dict[str, Any]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    dataset_shape: dict[str, int]
    loader: str = "memory"  # which loader fed the run, and why (load_dataset's choice)
    run: RunManifest | None = None  # what the run is: code, device, data (its manifest)

    @property
    def is_best(self) -> bool:
        """Whether this epoch is the run's best so far (its checkpoint is the one to keep)."""
        return int(self.metrics["best_epoch"]) == self.epoch

    def manifest(self) -> dict[str, Any]:
        """The checkpoint manifest for the state after this epoch."""
        accuracy = {
            "best_test_acc": self.metrics["best_test_acc"],
            "best_epoch": int(self.metrics["best_epoch"]),
            "last_test_acc": self.metrics["test_acc"],
        }
        if "best_val_acc" in self.metrics:
            accuracy["best_val_acc"] = self.metrics["best_val_acc"]
            accuracy["test_acc_at_best_val"] = self.metrics["test_acc_at_best_val"]
        return {
            "config": self.config.model_dump(mode="json"),
            "epoch": self.epoch,
            "metrics": self.metrics,
            "accuracy": accuracy,
            "tau": self.metrics["tau"],
            "dataset_shape": self.dataset_shape,
            "loader": self.loader,
            **({} if self.run is None else {"run": self.run.model_dump(mode="json")}),
        }

    def save_checkpoint(self, path: str | Path) -> str:
        """Write a resumable checkpoint of this state; returns its sha256."""
        return save_checkpoint(path, _unwrap(self.model), self.optimizer, self.manifest())


Callback = Callable[[EpochReport], None]


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    loader: str = "memory"  # which loader fed the run, and why

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics (with the best_* figures of the whole run)."""
        return self.history[-1] if self.history else {}


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(config: TrainConfig, dataset: Dataset) -> nn.Module:
    """The model of ``config`` shaped for ``dataset`` (input channels, classes, size)."""
    return create_model(
        config.model,
        num_classes=dataset.num_classes,
        in_channels=dataset.in_channels,
        image_size=dataset.image_size,
        binary=config.binary,
        options=config.binary_options,
    )


def parameter_groups(model: nn.Module, *, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups: decay everything but ``model.no_weight_decay()`` names.

    The official ImageNet optimiser exempts BatchNorm and the downsample convs (the ImageNet
    models name them); the official CIFAR optimiser decays every parameter.
    """
    exempt_fn = getattr(model, "no_weight_decay", None)
    exempt: set[str] = set(exempt_fn()) if callable(exempt_fn) else set()
    named = list(model.named_parameters())
    unknown = exempt - {n for n, _ in named}
    if unknown:
        raise ValueError(f"no_weight_decay names unknown parameters: {sorted(unknown)}")
    decay = [p for n, p in named if n not in exempt]
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": weight_decay}]
    if exempt:
        groups.append({"params": [p for n, p in named if n in exempt], "weight_decay": 0.0})
    return groups


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    opt = config.optimizer
    groups = parameter_groups(model, weight_decay=opt.weight_decay)
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum)
    return torch.optim.Adam(groups, lr=opt.lr)


def _unwrap(model: nn.Module) -> nn.Module:
    """The original module behind a torch.compile wrapper."""
    return getattr(model, "_orig_mod", model)


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if config.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _world() -> tuple[int, int]:
    """(rank, world size) of the initialised torch.distributed group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _make_loaders(
    config: TrainConfig, dataset: Dataset, device: torch.device
) -> tuple[Loader, Loader | None, Loader]:
    """(train, validation or None, test) loaders; the batch size is global under DDP."""
    rank, world = _world()
    loader = functools.partial(
        make_loader,
        dataset,
        rank=rank,
        world_size=world,
        device=device,
        channels_last=config.channels_last,
    )
    eval_batch = max(config.batch_size, 256)
    return (
        loader("train", batch_size=max(1, config.batch_size // world), seed=config.seed),
        loader("val", batch_size=eval_batch) if has_split(dataset, "val") else None,
        loader("test", batch_size=eval_batch),
    )


def evaluate(
    model: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], *, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor, int]:
    """(loss sum, correct count) as device tensors, and the sample count; no host sync."""
    model.eval()
    loss_sum: Tensor | None = None
    correct: Tensor | None = None
    count = 0
    with torch.no_grad():
        for x, y in batches:
            logits = model(x)
            loss = F.cross_entropy(
                logits.float(), y, reduction="sum", label_smoothing=label_smoothing
            )
            hits = (logits.argmax(1) == y).sum()
            loss_sum = loss if loss_sum is None else loss_sum + loss
            correct = hits if correct is None else correct + hits
            count += y.shape[0]
    if loss_sum is None or correct is None:
        raise ValueError("evaluation set is empty")
    return loss_sum, correct.float(), count


def evaluate_accuracy(model: nn.Module, dataset: Dataset, *, device: str = "auto") -> float:
    """Top-1 test accuracy of ``model`` on ``dataset`` (one host sync)."""
    dev = resolve_device(device)
    model = model.to(dev)
    loader = make_loader(dataset, "test", batch_size=256, device=dev)
    _, correct, count = evaluate(model, loader.epoch(0))
    return float(correct.cpu()) / count


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    resume_from: Checkpoint | str | Path | None = None,
    dataset: Dataset | None = None,
    settings: DataSettings | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_start: Callable[[RunManifest], None] | None = None,
    init_weights: Checkpoint | str | Path | None = None,
    distill: Distillation | None = None,
) -> TrainResult:
    """Train ``config`` from scratch or from ``resume_from``; return the model and history.
    ``should_stop`` is asked before every step (a host-side call: no device
    synchronisation); when it answers True, TrainingStoppedError is raised. ``on_start``
    gets the run's reproducibility manifest once the data is loaded, before the first
    step; every checkpoint carries it too. ``init_weights``: a checkpoint whose model
    weights start a new run (its optimizer and schedule are not taken: a chained stage);
    ignored when resuming. ``distill``: a teacher whose soft targets are the loss
    (``recu_core.distill``)."""
    device = resolve_device(config.device)
    loaded_here = dataset is None  # a dataset handed in has no source files of config's
    if dataset is None:
        dataset = load_dataset(config.dataset, settings=settings)
    loader = dataset.loader
    log.info("data loader: %s", loader)
    run = collect_manifest(
        config, dataset, device, world_size=_world()[1], settings=settings, list_files=loaded_here
    )
    if on_start is not None:
        on_start(run)
    torch.manual_seed(config.seed)
    model = build_model(config, dataset).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if config.kernels == "compiled" and not config.compile:
        use_compiled_kernels(model)  # whole-model compile fuses these kernels itself
    optimizer = build_optimizer(config, model)
    start_epoch = 0
    best = BestSoFar()
    if resume_from is not None:
        ckpt = resume_from if isinstance(resume_from, Checkpoint) else load_checkpoint(resume_from)
        start_epoch = _restore(ckpt, config, model, optimizer)
        best = BestSoFar.from_metrics(ckpt.manifest.get("metrics", {}))
    elif init_weights is not None:
        start_from_weights(model, init_weights)
    if distill is not None:
        distill.prepare(device)
    telemetry = WeightTelemetry(model)
    regularized = adds_loss_terms(model)  # decided once: not a walk per step
    train_loader, val_loader, test_loader = _make_loaders(config, dataset, device)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    per_epoch_lr = config.optimizer.lr_schedule == "epoch"
    step_model: nn.Module = torch.compile(model) if config.compile else model  # type: ignore[assignment]
    distributed = _world()[1] > 1
    if distributed:  # gradients all-reduced across ranks; evaluation uses the plain model
        step_model = nn.parallel.DistributedDataParallel(step_model)
    label_smoothing = config.optimizer.label_smoothing
    dataset_shape = {
        "num_classes": dataset.num_classes,
        "in_channels": dataset.in_channels,
        "image_size": dataset.image_size,
    }
    result = TrainResult(model=model, loader=loader)

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        tau = tau_at(config.tau, epoch, config.epochs)
        set_tau(model, tau)
        set_epoch_progress(model, epoch, config.epochs)  # ReSTE's o, EDE's t and k
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        step = epoch * steps_per_epoch
        base_lr = config.optimizer.lr
        lr = (
            epoch_lr(epoch, config.epochs, int(config.warmup_epochs), base_lr)
            if per_epoch_lr
            else base_lr
        )
        for x, y in train_loader.epoch(epoch):  # x: (B, C, H, W), y: (B,)
            if should_stop is not None and should_stop():
                raise TrainingStoppedError(f"stopped on request at epoch {epoch + 1}, step {step}")
            if not per_epoch_lr:
                lr = lr_at(step, total_steps, warmup_steps, base_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with _autocast(config, device):
                logits = step_model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                if distill is not None:
                    loss = distill.loss(x, logits, loss)
                if regularized:  # BiPer's term
                    loss = loss + regularization_loss(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().float() * y.shape[0]  # device-side accumulation
            correct += (logits.detach().argmax(1) == y).sum()
            seen += y.shape[0]
            step += 1
        if distributed:  # every rank evaluates (and rank 0 saves) rank 0's BatchNorm statistics
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, 0)
        with _autocast(config, device):
            evaluated = [
                evaluate(model, loader.epoch(0), label_smoothing=label_smoothing)
                for loader in (test_loader, val_loader)
                if loader is not None
            ]
        sums = [loss_sum, correct] + [t for loss, hits, _ in evaluated for t in (loss, hits)]
        counts = [float(seen)] + [float(n) for _, _, n in evaluated]
        stats = torch.stack(sums + [torch.full((), c, device=device) for c in counts])
        if distributed:  # sums over every rank's shard (the weights are identical)
            torch.distributed.all_reduce(stats)
        n_stats = stats.shape[0]
        figures = torch.cat([stats, telemetry.collect(device)])
        host = figures.tolist()  # the one device-to-host transfer of the epoch
        sums_host, counts_host = host[: len(sums)], host[len(sums) : n_stats]
        seen, test_count = int(counts_host[0]), int(counts_host[1])
        elapsed = time.perf_counter() - started
        metrics = {
            "epoch": float(epoch + 1),
            "train_loss": sums_host[0] / seen,
            "train_acc": sums_host[1] / seen,
            "test_loss": sums_host[2] / test_count,
            "test_acc": sums_host[3] / test_count,
            "tau": tau,
            "lr": lr,
            "epoch_time_s": elapsed,
            "images_per_s": seen / elapsed,
        }
        if val_loader is not None:
            val_count = counts_host[2]
            metrics["val_loss"] = sums_host[4] / val_count
            metrics["val_acc"] = sums_host[5] / val_count
        best.update(epoch + 1, metrics)
        metrics |= best.figures()
        report = EpochReport(
            epoch=epoch + 1,
            total_epochs=config.epochs,
            metrics=metrics,
            telemetry=telemetry.unpack(host[6:]),
            model=model,
            optimizer=optimizer,
            config=config,
            dataset_shape=dataset_shape,
            loader=loader,
            run=run,
        )
        result.history.append(metrics)
        result.telemetry.append(report.telemetry)
        for callback in callbacks:
            callback(report)
    return result


# Fields that may change between a run and its resumption: where and how it executes,
# not what it computes.
EXECUTION_FIELDS = frozenset({"device", "precision", "channels_last", "compile", "kernels"})


def _restore(
    ckpt: Checkpoint, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    """Load model and optimizer state; return the number of completed epochs.

    Resuming under a different recipe would not continue the same run (schedules, data
    order and steps per epoch depend on it), so any difference outside EXECUTION_FIELDS
    is an error that names the fields.
    """
    saved = TrainConfig.model_validate(ckpt.manifest["config"])
    differ = sorted(
        name
        for name in TrainConfig.model_fields
        if name not in EXECUTION_FIELDS and getattr(saved, name) != getattr(config, name)
    )
    if differ:
        raise ValueError(
            f"cannot resume: the checkpoint was trained with different {', '.join(differ)}; "
            f"resume with the checkpoint's own config (only {sorted(EXECUTION_FIELDS)} "
            "may change)"
        )
    if ckpt.optimizer_state is None:
        raise ValueError("cannot resume: the checkpoint holds no optimizer state")
    model.load_state_dict(ckpt.model_state)
    optimizer.load_state_dict(ckpt.optimizer_state)
    epoch = int(ckpt.manifest["epoch"])
    if not 0 <= epoch <= config.epochs:
        raise ValueError(f"checkpoint epoch {epoch} is outside [0, {config.epochs}]")
    return epoch


def start_from_weights(model: nn.Module, source: Checkpoint | str | Path) -> None:
    """Load the model weights of ``source`` (weights only: no optimizer, no epoch) into
    ``model``; every tensor must match by name and shape (a ValueError names those that
    do not: another model or other layer options)."""
    ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(source)
    own = model.state_dict()
    missing = sorted(set(own) - set(ckpt.model_state))
    unexpected = sorted(set(ckpt.model_state) - set(own))
    misshapen = sorted(
        name
        for name, tensor in ckpt.model_state.items()
        if name in own and tuple(tensor.shape) != tuple(own[name].shape)
    )
    if missing or unexpected or misshapen:
        saved = ckpt.manifest.get("config", {}).get("model", "?")
        raise ValueError(
            f"cannot start from these weights (a {saved} checkpoint): "
            + "; ".join(
                f"{what}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                for what, names in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("other shape", misshapen),
                )
                if names
            )
        )
    model.load_state_dict(ckpt.model_state)


def load_trained_model(
    source: Checkpoint | str | Path, *, expected_sha256: str | None = None
) -> nn.Module:
    """Rebuild the model a checkpoint was trained with and load its weights (eval mode)."""
    ckpt = (
        source
        if isinstance(source, Checkpoint)
        else load_checkpoint(source, expected_sha256=expected_sha256)
    )
    config = TrainConfig.model_validate(ckpt.manifest["config"])
    shape = ckpt.manifest["dataset_shape"]
    model = create_model(
        config.model,
        num_classes=shape["num_classes"],
        in_channels=shape["in_channels"],
        image_size=shape["image_size"],
        binary=config.binary,
        options=config.binary_options,
    )
    model.load_state_dict(ckpt.model_state)
    return model.eval()
