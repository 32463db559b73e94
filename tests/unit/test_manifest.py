"""The reproducibility manifest (recu_core.provenance, recu_core.data.identity): what a
run records of its code, device, data and recipe, and where it goes (the ``on_start``
callback, every checkpoint, the ``.bnn`` file)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from recu_core.checkpoint import load_checkpoint
from recu_core.config import DatasetConfig, TrainConfig
from recu_core.data import load_dataset
from recu_core.data.identity import dataset_identity
from recu_core.export.bnn_file import export_checkpoint, read_bnn
from recu_core.manifest import RunManifest
from recu_core.provenance import code_version, collect_manifest
from recu_core.settings import DataSettings
from recu_core.train import EpochReport, train
from tests.unit.test_data_formats import make_folder, write_cifar10

ROOT = Path(__file__).resolve().parents[2]
TINY = {"model": "resnet20", "dataset": {"name": "digits", "num_train": 64, "num_test": 32}}


def _settings(tmp_path: Path) -> DataSettings:
    return DataSettings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


def _identity(settings: DataSettings, **fields: object):
    cfg = DatasetConfig.model_validate(fields)
    return dataset_identity(cfg, load_dataset(cfg, settings=settings), settings)


def test_train_hands_the_manifest_to_on_start_before_the_first_epoch_and_into_checkpoints(
    tmp_path,
):
    config = TrainConfig.model_validate({**TINY, "epochs": 1, "batch_size": 32, "seed": 7})
    order: list[object] = []
    saved: list[Path] = []

    def on_epoch(report: EpochReport) -> None:
        order.append("epoch")
        path = tmp_path / f"e{report.epoch}.safetensors"
        report.save_checkpoint(path)
        saved.append(path)

    train(config, on_start=order.append, callbacks=[on_epoch])
    run = order[0]
    assert isinstance(run, RunManifest)
    assert order[1:] == ["epoch"]
    assert run.seed == 7
    assert run.recipe == config.model_dump(mode="json")
    assert run.packages["torch"] == torch.__version__
    assert run.device.type == "cpu"
    assert run.world_size == 1
    assert run.dataset.name == "digits"
    assert (run.dataset.train_examples, run.dataset.test_examples) == (64, 32)
    assert run.dataset.listing_sha256 is None  # digits come with scikit-learn: no files
    stored = load_checkpoint(saved[0]).manifest["run"]
    assert RunManifest.model_validate(stored) == run
    packed = read_bnn(export_checkpoint(saved[0]))[1]
    assert RunManifest.model_validate(packed["run"]) == run


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_code_version_is_this_checkouts_commit():
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        pytest.skip("the tests do not run from a git checkout")
    commit, dirty = code_version()
    assert commit == head.stdout.strip()
    assert isinstance(dirty, bool)


def test_the_content_hash_follows_the_tensors_the_run_used(tmp_path):
    settings = _settings(tmp_path)
    first = _identity(settings, name="digits", num_train=64, num_test=32)
    again = _identity(settings, name="digits", num_train=64, num_test=32)
    fewer = _identity(settings, name="digits", num_train=63, num_test=32)
    carved = _identity(settings, name="digits", num_train=64, num_test=32, val_fraction=0.25)
    assert first.content_sha256 == again.content_sha256
    assert len({first.content_sha256, fewer.content_sha256, carved.content_sha256}) == 3
    assert (carved.train_examples, carved.val_examples) == (48, 16)


def test_the_cifar_listing_names_its_files_by_path_and_size_not_time(tmp_path):
    settings = _settings(tmp_path)
    write_cifar10(settings.data_dir / "cifar-10-batches-py")
    identity = _identity(settings, name="cifar10")
    files = sorted((settings.data_dir / "cifar-10-batches-py").iterdir())
    assert identity.files == len(files) == 7
    assert identity.bytes == sum(f.stat().st_size for f in files)
    expected = hashlib.sha256(
        "".join(f"{p}\n" for p in sorted(f"{f.name}\t{f.stat().st_size}" for f in files)).encode()
    ).hexdigest()
    assert identity.listing_sha256 == expected
    # the same files elsewhere, touched: the same listing; one file longer: another
    copy = settings.data_dir / "copy"
    shutil.copytree(settings.data_dir / "cifar-10-batches-py", copy)
    os.utime(copy / "test_batch", (1, 1))
    assert _identity(settings, name="cifar10", root="copy").listing_sha256 == expected
    with open(copy / "batches.meta", "ab") as f:
        f.write(b"\0")
    assert _identity(settings, name="cifar10", root="copy").listing_sha256 != expected


def test_an_image_folder_is_listed_whole_in_memory_and_by_the_files_read_when_streamed(
    tmp_path,
):
    settings = _settings(tmp_path)
    make_folder(settings.data_dir / "pets", per_class=3)  # 6 train and 4 test images
    memory = _identity(settings, name="imagefolder", root="pets", loader="memory")
    assert memory.files == 10
    assert memory.bytes == sum(
        p.stat().st_size for p in (settings.data_dir / "pets").rglob("*") if p.is_file()
    )
    assert memory.content_sha256 is not None
    streamed = _identity(
        settings, name="imagefolder", root="pets", loader="streaming", image_size=8, num_train=4
    )
    assert streamed.files == 4 + 4  # the train subset and the test split: what is read
    assert streamed.bytes is None
    assert streamed.content_sha256 is None
    assert streamed.listing_sha256 != memory.listing_sha256
    assert (streamed.train_examples, streamed.test_examples) == (4, 4)


def test_a_dataset_handed_to_train_is_not_listed_as_configs_files(tmp_path):
    settings = _settings(tmp_path)
    config = TrainConfig.model_validate({**TINY, "dataset": {"name": "cifar10"}})
    digits = load_dataset(DatasetConfig(name="digits", num_train=64, num_test=32))
    run = collect_manifest(
        config, digits, torch.device("cpu"), world_size=1, settings=settings, list_files=False
    )  # no CIFAR folder exists: listing it would fail
    assert run.dataset.listing_sha256 is None
    assert run.dataset.train_examples == 64
