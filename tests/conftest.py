"""Shared fixtures, and the test levels and Ray grouping applied at collection."""

from pathlib import Path
from typing import Any

import pytest

from tests.db_fixtures import (  # noqa: F401
    database_url,
    db,
    engine,
    postgres_skip_reason,
    sqlite_database,
)


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


# Every test is marked with its level, the folder it lives in (declared in pyproject.toml):
# `pytest -m unit`, `-m "not e2e"`, `-m "integration or e2e"`.
LEVELS = ("unit", "integration", "e2e")
TESTS_DIR = Path(__file__).parent


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Any:
    # before every other implementation: `-m` (which deselects) and xdist see the levels
    for item in items:
        if item.path.is_relative_to(TESTS_DIR):
            level = item.path.relative_to(TESTS_DIR).parts[0]
            if level in LEVELS:
                item.add_marker(level)
    # The tests that start Ray (a local instance, or worker processes that start their own)
    # are marked `xdist_group("ray")` in their modules: under `--dist loadgroup` (addopts)
    # they run on one process, in order, so two Ray instances never compete. They go first
    # (the longest unit of work), so the other processes take every other test beside them.
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)  # stable
    return (yield)
