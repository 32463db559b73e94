"""Distributed data parallel on CPU (gloo, 2 processes): ranks stay identical, every
test sample is counted once, and the training data is split between the ranks."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from recu_core.config import DatasetConfig, OptimizerConfig, TrainConfig
from recu_core.train import train

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
    assert h0 == [
        dict(h, epoch_time_s=h["epoch_time_s"], images_per_s=h["images_per_s"]) for h in h0
    ]
    for a, b in zip(h0, h1, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "tau", "lr"):
            assert a[key] == b[key], key  # all-reduced figures are the same on every rank
    for key, value in w0.items():
        assert torch.equal(value, w1[key]), key  # parameters and BatchNorm statistics
    for h in h0:  # accuracy over all 91 test images (shards of 46 and 45), each counted once
        assert abs(h["test_acc"] * 91 - round(h["test_acc"] * 91)) < 1e-6
