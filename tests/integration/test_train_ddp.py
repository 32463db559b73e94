"""Distributed data parallel on CPU (gloo, 2 processes): ranks stay identical, every
test sample is counted once, and the training data is split between the ranks."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from recu_core.config import DatasetConfig, OptimizerConfig, TrainConfig
from recu_core.data import load_dataset
from recu_core.train import build_model, evaluate_accuracy, train

CONFIG = TrainConfig(
    dataset=DatasetConfig(name="digits", num_train=256, num_test=91),
    epochs=2,
    batch_size=64,
    optimizer=OptimizerConfig(lr=0.05),
    kernels="eager",
)


def _rank_main(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = train(CONFIG)
        out[rank] = (result.history, {k: v.clone() for k, v in result.model.state_dict().items()})
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_train_in_lockstep():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank_main, args=(2, port, out), nprocs=2, join=True)
        (h0, w0), (h1, w1) = out[0], out[1]
    timing = ("epoch_time_s", "images_per_s")  # each rank's own clock
    for a, b in zip(h0, h1, strict=True):
        # every other figure (losses, accuracies, tau, lr, best_*) is all-reduced or
        # derived from all-reduced figures: the same on every rank
        assert {k: v for k, v in a.items() if k not in timing} == {
            k: v for k, v in b.items() if k not in timing
        }
    for h in h0 + h1:  # the ranks split the 256 training images: 128 each, counted once
        assert h["images_per_s"] * h["epoch_time_s"] == pytest.approx(256, rel=1e-9)
        assert abs(h["train_acc"] * 256 - round(h["train_acc"] * 256)) < 1e-6
        # accuracy over all 91 test images (shards of 46 and 45), each counted once
        assert abs(h["test_acc"] * 91 - round(h["test_acc"] * 91)) < 1e-6
    for key, value in w0.items():
        assert torch.equal(value, w1[key]), key  # parameters and BatchNorm statistics

    dataset = load_dataset(CONFIG.dataset)
    torch.manual_seed(CONFIG.seed)  # the initial weights both ranks started from
    model = build_model(CONFIG, dataset)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trained = [
        name for name, _ in model.named_parameters() if not torch.equal(initial[name], w0[name])
    ]
    assert trained == [name for name, _ in model.named_parameters()]  # every parameter learnt
    # the reported test accuracy is the final model's on the whole test set, evaluated here
    # in one process
    model.load_state_dict(w0)
    assert evaluate_accuracy(model, dataset, device="cpu") == pytest.approx(
        h0[-1]["test_acc"], abs=1e-9
    )
