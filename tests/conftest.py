"""Shared fixtures."""

from pathlib import Path

import pytest

from tests.db_fixtures import database_url, db, engine, postgres_skip_reason  # noqa: F401


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ReCU ResNet-20 trained 2 epochs on 512 digits images, saved as a checkpoint."""
    from recu_core.checkpoint import save_checkpoint
    from recu_core.config import DatasetConfig, TrainConfig
    from recu_core.train import train

    config = TrainConfig(
        model="resnet20",
        dataset=DatasetConfig(name="digits", num_train=512),
        epochs=2,
        batch_size=64,
        kernels="eager",
    )
    reports: list = []
    train(config, callbacks=[reports.append])
    path = tmp_path_factory.mktemp("trained") / "model.safetensors"
    save_checkpoint(path, reports[-1].model, reports[-1].optimizer, reports[-1].manifest())
    return path
