"""One local Ray instance (2 CPUs) for every end-to-end test that needs one: starting Ray
costs seconds, and each test checks for itself that its jobs gave their CPUs back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import private_postgres  # noqa: F401  (a server the test stops and starts)


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
