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


# The tests that start Ray (a local instance, or worker processes that start their own).
# Under pytest-xdist (`make test`) they form one unit of work, run first and in order on
# one process, so two Ray instances never compete; every other test is its own unit and
# goes to whichever process is free.
RAY_TESTS = (
    "tests/e2e/test_faults.py",
    "tests/e2e/test_sweep_ray.py",
    "tests/e2e/test_worker_ray.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(RAY_TESTS))  # stable


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class RayTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "ray" if nodeid.startswith(RAY_TESTS) else nodeid

    return RayTogether(config, log)  # type: ignore[arg-type]
