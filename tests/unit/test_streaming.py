"""The streaming image-folder loader: exact per-(seed, epoch) order whatever the worker
count, DDP shards, the ImageNet views, the automatic choice, clear errors, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from recu_core.config import DatasetConfig, TrainConfig
from recu_core.data import DatasetError, ImageDataset, StreamingDataset, load_dataset, make_loader
from recu_core.data.base import validation_split
from recu_core.data.streaming import PathTable, eval_view, random_resized_box
from recu_core.settings import DataSettings
from recu_core.train import train

CLASSES = ("ant", "bee", "cat")


def make_jpeg_folder(root: Path, per_class: int = 8, test_per_class: int = 3) -> None:
    """Small JPEGs of varied sizes (not square), one folder per class, train and val."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", test_per_class)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = 20 + (i % 3) * 6, 24 + (i % 2) * 10
                base = np.full((h, w, 3), 60 + 70 * c, dtype=np.int16)
                noise = rng.integers(-40, 40, (h, w, 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=90)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_jpeg_folder(tmp_path / "data" / "tiny")
    return tmp_path / "data" / "tiny"


@pytest.fixture
def env(tmp_path: Path) -> DataSettings:
    return DataSettings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


def streaming(env: DataSettings, **fields) -> StreamingDataset:
    cfg = DatasetConfig(
        name="imagefolder", root="tiny", image_size=16, loader="streaming", **fields
    )
    data = load_dataset(cfg, settings=env)
    assert isinstance(data, StreamingDataset)
    return data


def batches(data: StreamingDataset, split: str, epoch: int, **kwargs) -> list[tuple]:
    loader = make_loader(data, split, **kwargs)  # type: ignore[arg-type]
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch)]


def assert_same_batches(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(ya, yb)
        assert torch.equal(xa, xb)


def test_an_epoch_is_the_same_whatever_the_worker_count(env, folder):
    inline, workers = streaming(env, workers=0), streaming(env, workers=2)
    first = batches(inline, "train", 3, batch_size=5, seed=7)
    assert_same_batches(first, batches(workers, "train", 3, batch_size=5, seed=7))
    assert len(first) == 24 // 5  # the last incomplete batch is dropped
    assert first[0][0].shape == (5, 3, 16, 16)
    assert first[0][0].dtype == torch.float32


def test_epochs_differ_and_a_new_loader_replays_an_epoch_exactly(env, folder):
    data = streaming(env, workers=0)
    epoch2 = batches(data, "train", 2, batch_size=6, seed=1)
    assert_same_batches(epoch2, batches(data, "train", 2, batch_size=6, seed=1))  # a resume
    other = batches(data, "train", 3, batch_size=6, seed=1)
    assert not torch.equal(epoch2[0][0], other[0][0])


def test_ddp_ranks_take_disjoint_shards_of_one_permutation(env, folder):
    data = streaming(env, workers=0, crop_scale=(1.0, 1.0), flip=False)
    whole = batches(data, "train", 0, batch_size=24, seed=3)[0][1]  # (24,) labels in order
    shards = [
        torch.cat(
            [y for _, y in batches(data, "train", 0, batch_size=4, seed=3, rank=r, world_size=2)]
        )
        for r in (0, 1)
    ]
    assert torch.equal(shards[0], whole[0::2][: len(shards[0])])
    assert torch.equal(shards[1], whole[1::2][: len(shards[1])])


def test_evaluation_covers_every_image_once_in_order(env, folder):
    data = streaming(env, workers=0)
    labels = torch.cat([y for _, y in batches(data, "test", 0, batch_size=4)])
    assert labels.tolist() == [c for c in range(3) for _ in range(3)]
    again = batches(data, "test", 5, batch_size=4)  # no augmentation: the epoch is irrelevant
    assert_same_batches(batches(data, "test", 0, batch_size=4), again)


def test_normalisation_uses_the_sampled_statistics(env, folder):
    data = streaming(env, workers=0)
    x = torch.cat([x for x, _ in batches(data, "test", 0, batch_size=9)])
    raw = x * torch.tensor(data.std).view(1, 3, 1, 1) + torch.tensor(data.mean).view(1, 3, 1, 1)
    assert float(raw.min()) >= 0.0
    assert float(raw.max()) <= 1.0 + 1e-6


def test_eval_view_resizes_the_shorter_side_then_centre_crops():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[:, 100:] = 255  # the right half white
    view = eval_view(image, 56)
    assert view.shape == (56, 56, 3)
    assert view[:, :20].max() == 0 and view[:, -20:].min() == 255  # noqa: PT018


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 400),
    width=st.integers(1, 400),
    low=st.floats(0.05, 1.0),
    span=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_resized_box_stays_inside_the_image(height, width, low, span, seed):
    left, top, w, h = random_resized_box(
        height, width, (low, low + span), np.random.default_rng(seed)
    )
    assert left >= 0 and top >= 0 and w > 0 and h > 0  # noqa: PT018
    assert left + w <= width and top + h <= height  # noqa: PT018


def test_path_table_round_trips_any_name():
    names = ["a/b.jpg", "ü/ñ.jpeg", "", "x" * 300, "snow\udcffman.png"]
    table = PathTable(names)
    assert [table[i] for i in range(len(table))] == names


def test_auto_streams_only_above_the_memory_limit(env, folder):
    cfg = DatasetConfig(name="imagefolder", root="tiny", image_size=16)
    small = load_dataset(cfg, settings=env.model_copy(update={"memory_loader_max_bytes": 1000}))
    assert isinstance(small, StreamingDataset)
    assert small.loader.startswith("streaming (auto: decoded size")
    big = load_dataset(cfg, settings=env)
    assert isinstance(big, ImageDataset)
    assert big.loader.startswith("memory (auto: decoded size")


def test_streaming_needs_an_image_size_and_an_image_folder(env, folder):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="image_size is required with loader 'streaming'"):
        DatasetConfig(name="imagefolder", root="tiny", loader="streaming")  # at submit
    unchecked = DatasetConfig.model_construct(name="imagefolder", root="tiny", loader="streaming")
    with pytest.raises(DatasetError, match="image_size is required by the streaming loader"):
        load_dataset(unchecked, settings=env)  # and again by the loader
    with pytest.raises(DatasetError, match="reads image folders only"):
        load_dataset(DatasetConfig(name="digits", loader="streaming"), settings=env)


@pytest.mark.timeout(120)
def test_a_truncated_jpeg_fails_the_epoch_naming_the_file(env, folder):
    victim = folder / "train" / "bee" / "004.jpg"
    data = streaming(env, workers=2)
    victim.write_bytes(victim.read_bytes()[:200])  # damaged after the folder was opened
    with pytest.raises(DatasetError, match=r"cannot read image .*bee/004\.jpg"):
        batches(data, "train", 0, batch_size=4)  # raised in a worker, re-raised here
    with pytest.raises(DatasetError, match=r"cannot read image .*bee/004\.jpg"):
        streaming(env)  # or when opening it (the statistics sample decodes it)


def test_an_empty_class_and_a_malformed_folder_are_named(env, folder):
    (folder / "train" / "dog").mkdir()
    (folder / "val" / "dog").mkdir()
    with pytest.raises(DatasetError, match=r"dog holds no \.jpg"):
        streaming(env)
    with pytest.raises(DatasetError, match="has no train/ folder"):
        load_dataset(
            DatasetConfig(name="imagefolder", root="tiny/train", image_size=16, loader="streaming"),
            settings=env,
        )


def test_validation_split_is_seeded_disjoint_and_complete():
    train_a, val_a = validation_split(100, 0.1, 0)
    train_b, val_b = validation_split(100, 0.1, 0)
    assert torch.equal(val_a, val_b) and torch.equal(train_a, train_b)  # noqa: PT018
    assert len(val_a) == 10
    assert sorted(torch.cat([train_a, val_a]).tolist()) == list(range(100))
    assert not torch.equal(validation_split(100, 0.1, 1)[1], val_a)


def test_streaming_validation_split_is_carved_from_train(env, folder):
    data = streaming(env, val_fraction=0.25, workers=0)
    assert data.val is not None
    assert (len(data.train), len(data.val), len(data.test)) == (18, 6, 9)
    train_files = {data.train.files[i] for i in range(len(data.train))}
    assert not train_files & {data.val.files[i] for i in range(len(data.val))}


def test_training_on_the_streaming_loader_reports_it_and_resumes_exactly(env, folder, tmp_path):
    config = TrainConfig(
        model="resnet20",
        dataset={
            "name": "imagefolder",
            "root": "tiny",
            "image_size": 16,
            "loader": "streaming",
            "workers": 0,
            "val_fraction": 0.25,
        },
        epochs=2,
        batch_size=6,
        kernels="eager",
        device="cpu",
    )
    saved: list[int] = []

    def keep_first(report) -> None:
        if report.epoch == 1:
            report.save_checkpoint(tmp_path / "one.safetensors")
            saved.append(report.epoch)

    straight = train(config, settings=env, callbacks=[keep_first])
    assert straight.loader == "streaming (dataset.loader)"
    final = straight.final
    assert {"val_acc", "best_val_acc", "test_acc_at_best_val", "best_test_acc"} <= set(final)
    resumed = train(config, settings=env, resume_from=tmp_path / "one.safetensors")
    assert saved == [1]
    assert len(resumed.history) == 1
    for key in ("train_loss", "test_acc", "val_acc", "best_test_acc", "best_epoch"):
        assert resumed.final[key] == pytest.approx(final[key], rel=1e-5), key
    pairs = zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    )
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
