"""schemathesis against the service's own OpenAPI spec, over loopback HTTP to a real
uvicorn server on a real database (SQLite and PostgreSQL): positive and negative cases
(coverage, fuzzing and stateful phases), every check, a bounded number of examples and
two fixed seeds.

Checks: no 5xx, every status code, header and body as the spec documents them, invalid
input refused, valid input accepted (``positive_data_acceptance``), auth not ignored (the
same request without the token must be 401), 405 with a complete Allow header, and the
stateful links (what POST creates GET finds).

The schema states what the API accepts wherever JSON Schema can: bounds, patterns (no
control characters in any free string), ``if``/``then`` for the rules between fields of
one object (gpus_per_worker needs use_gpu, device follows use_gpu, imagefolder needs a
root and a streaming one an image_size, a whole-epoch warm-up with the per-epoch
schedule, search 'grid' takes grid and choice dimensions), and per searched field the
type and bounds of a sweep's values. This module is also the run's hooks module
(``SCHEMATHESIS_HOOKS``), for two things JSON Schema cannot say:

- A valid request carries a fresh Idempotency-Key: a key names one request, and the API
  answers 422 to a key reused with another body (the IETF draft); schemathesis draws
  headers and bodies independently and would reuse one key for many bodies.
- ``positive_data_acceptance`` runs as ``positive_data_acceptance_but_cross_field``: the
  built-in check, that also lets a schema-valid body be refused with a 422 whose every
  error is one of CROSS_FIELD_RULES, the comparisons between fields JSON Schema cannot
  state (tau_s <= tau_e, warm-up shorter than the run, ordered ranges, a dataset root
  inside the data directory, the trial cap). Any other refusal of valid data fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from recu_cli.local_service import local_service
from recu_db.scratch import scratch_schema
from tests.db_fixtures import POSTGRES_URL

MAX_EXAMPLES = 15  # per operation, phase and seed
#: The seeds, and the phases each runs: the coverage phase (deterministic, ~25 s) once per
#: database, fuzzing and stateful with both: about 45 s per database.
SEEDS = {1: "examples,coverage,fuzzing,stateful", 2: "fuzzing,stateful"}
REPO = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
TALLY_ENV = "RECU_TEST_SCHEMATHESIS_TALLY"

#: The 422 messages a schema-valid body may get, each a rule between fields that JSON
#: Schema cannot state (it compares two numbers, or needs the deployment's state).
CROSS_FIELD_RULES = tuple(
    re.compile(rule)
    for rule in (
        r"must not exceed tau_e",  # TauSchedule: tau_s <= tau_e for an increasing schedule
        r"tau_s can reach .* while tau_e can be as low as",  # the same across a sweep
        r"must be smaller than epochs",  # warmup_epochs < epochs (also from a recipe)
        r"crop_scale must satisfy 0 < low <= high",  # an ordered pair
        r"empty range: low .* must be below high",  # uniform / loguniform low < high
        r"outside the data directory",  # dataset.root: the deployment's RECU_DATA_DIR,
        r"does not exist in the data directory",  # and the folders in it
        r"the sweep would run \d+ trials; at most \d+",  # the deployment's trial cap
    )
)

try:  # the hooks, registered when schemathesis imports this module (SCHEMATHESIS_HOOKS)
    import schemathesis
    from schemathesis.openapi.checks import RejectedPositiveData
    from schemathesis.specs.openapi.checks import positive_data_acceptance
except ImportError:  # the test below is skipped
    schemathesis = None
else:

    @schemathesis.hook
    def before_call(ctx, case, **kwargs):
        headers = case.headers or {}
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        for name in list(headers):
            if positive and name.lower() == "idempotency-key":
                headers[name] = uuid.uuid4().hex

    @schemathesis.check
    def positive_data_acceptance_but_cross_field(ctx, response, case):
        try:
            result = positive_data_acceptance(ctx, response, case)
        except RejectedPositiveData:
            if response.status_code == 422 and _only_cross_field(response.text):
                _tally("cross-field")
                return None
            raise
        _tally("checked")
        return result


def _tally(outcome: str) -> None:
    """One line per response the check judged, in the file TALLY_ENV names (the test
    reads it back: the check ran, and how many valid bodies a cross-field rule refused)."""
    path = os.environ.get(TALLY_ENV)
    if path:
        with open(path, "a") as tally:
            tally.write(outcome + "\n")


def _only_cross_field(body: str) -> bool:
    """Whether every error of a 422 body is one of CROSS_FIELD_RULES."""
    try:
        errors = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(errors) and all(
        isinstance(e, dict) and any(r.search(str(e.get("msg"))) for r in CROSS_FIELD_RULES)
        for e in errors
    )


@pytest.mark.skipif(
    schemathesis is None or not SCHEMATHESIS.exists(),
    reason="schemathesis is installed by `make install` (dev extra)",
)
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_api_conforms_to_its_openapi_spec_and_never_answers_5xx(
    tmp_path, database, postgres_skip_reason
):
    if database == "postgresql" and postgres_skip_reason:
        pytest.skip(postgres_skip_reason)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.e2e.test_schemathesis",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    for seed, phases in SEEDS.items():
        workdir = tmp_path / f"seed-{seed}"
        tally = workdir / "tally.txt"
        env[TALLY_ENV] = str(tally)
        if database == "sqlite":
            report = _run(workdir, None, seed, phases, env)
        else:
            with scratch_schema(POSTGRES_URL) as url:
                report = _run(workdir, url, seed, phases, env)
        assert "Tested: 23" in report, report  # every operation but the two streams
        assert "Server error" not in report, report
        outcomes = tally.read_text().split()
        # the check judged the responses, most of them without a cross-field excuse
        assert outcomes.count("checked") > 5 * outcomes.count("cross-field"), outcomes


def _run(
    workdir: Path, database_url: str | None, seed: int, phases: str, env: dict[str, str]
) -> str:
    with local_service(workdir / "service", database_url=database_url, workers=0) as service:
        run = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{service.api}/openapi.json",
                "--header",
                f"Authorization: Bearer {service.token}",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",  # run as positive_data_acceptance_but_cross_field
                # a live job's stream never ends, so a fuzzer cannot read its response: the
                # stream and its refusals are tested by tests/e2e/test_streams.py
                "--exclude-path-regex",
                "/stream$",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(seed),
                "--phases",
                phases,
                "--generation-database",
                "none",
                "--workers",
                "1",
                "--no-color",
                "--warnings",
                "off",
            ],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    return report
