"""schemathesis against the service's own OpenAPI spec, over loopback HTTP to a real
uvicorn server on a real database: positive and negative cases (coverage, fuzzing and
stateful phases), every check but one, a bounded number of examples and a fixed seed.

Checks: no 5xx, every status code, header and body as the spec documents them, invalid
input refused, auth not ignored (the same request without the token must be 401), 405
with a complete Allow header, and the stateful links (what POST creates GET finds).
Left out: ``positive_data_acceptance``, because some schema-valid bodies are refused on
purpose by rules JSON Schema cannot state (tau_s <= tau_e for an increasing schedule,
warm-up shorter than the run, gpus_per_worker needs use_gpu, dataset roots inside the
data directory); those answer 422 naming the field, which the other checks verify.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recu_cli.local_service import local_service

MAX_EXAMPLES = 12
SEED = 1


@pytest.mark.skipif(
    shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None,
    reason="schemathesis is installed by `make install` (dev extra)",
)
def test_the_api_conforms_to_its_openapi_spec_and_never_answers_5xx(tmp_path):
    with local_service(tmp_path / "service", workers=0) as service:
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{service.api}/openapi.json",
                "--header",
                f"Authorization: Bearer {service.token}",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--generation-database",
                "none",
                "--workers",
                "1",
                "--no-color",
                "--warnings",
                "off",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "Tested: 18" in report, report  # every operation was exercised
    assert "Server error" not in report
