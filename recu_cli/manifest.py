"""``recu manifest JOB_ID``: what a job ran, as recorded when it started (GET
/jobs/{id}/manifest): code version and commit, packages, host and devices, the dataset's
fingerprint, the seed and the resolved recipe; enough to run it again."""

from __future__ import annotations

from typing import Any

from recu_cli.connection import ApiOption, JsonOption, Service, TokenOption, call, call_or_none
from recu_cli.errors import ExitCode, fail
from recu_cli.job_text import code_line, device_text
from recu_cli.output import print_json, print_line


def manifest(
    job_id: int,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """The job's reproducibility manifest: code, packages, host, devices, dataset, seed,
    recipe (--json: the GET /jobs/ID/manifest answer). Exit 4 while none is recorded
    (the job has not started)."""
    service = Service.of(api, token)
    job = call(service, "GET", f"/jobs/{job_id}")  # 404 here: no such job
    recorded = recorded_manifest(service, job_id)
    if recorded is None:
        raise fail(
            ExitCode.NOT_FOUND,
            f"job {job_id} has no manifest yet: it is recorded when the job starts "
            f"(it is {job['state']})",
            label="not recorded",
        )
    if as_json:
        print_json(recorded)
        return
    for line in manifest_lines(recorded):
        print_line(line)


def recorded_manifest(service: Service, job_id: int) -> dict[str, Any] | None:
    """The job's manifest, or None while none is recorded (the service answers 409, or
    404, before the job's training starts)."""
    found: dict[str, Any] | None = call_or_none(
        service, f"/jobs/{job_id}/manifest", absent=(404, 409)
    )
    return found


def manifest_lines(recorded: dict[str, Any]) -> list[str]:
    """The manifest for people: the code line first, then one line per section."""
    dataset = recorded.get("dataset") or {}
    device = recorded.get("device") or {}
    packages = recorded.get("packages") or {}
    recipe = recorded.get("recipe") or {}
    return [
        code_line(recorded),
        f"recorded {str(recorded.get('recorded_at', ''))[:19].replace('T', ' ')} for attempt "
        f"{recorded.get('attempt')} on {recorded.get('hostname')}",
        f"python {recorded.get('python')}; devices {device_text(device)}, CUDA "
        f"{device.get('cuda') or '-'}, cuDNN {device.get('cudnn') or '-'}; "
        f"world size {recorded.get('world_size')}; seed {recorded.get('seed')}",
        f"dataset {dataset.get('name')}: {dataset.get('train_examples')} train / "
        f"{dataset.get('val_examples', 0)} validation / {dataset.get('test_examples')} test "
        f"examples; {dataset.get('files') or 0} source files ({dataset.get('bytes') or 0} "
        f"bytes), listing sha256 {_short(dataset.get('listing_sha256'))}, content sha256 "
        f"{_short(dataset.get('content_sha256'))}",
        "packages: " + ", ".join(f"{name} {version}" for name, version in sorted(packages.items())),
        f"recipe: {recipe.get('model', '?')} on {(recipe.get('dataset') or {}).get('name', '?')}, "
        f"{recipe.get('epochs', '?')} epochs (--json shows every field)",
    ]


def _short(digest: str | None) -> str:
    return digest[:16] if digest else "-"
