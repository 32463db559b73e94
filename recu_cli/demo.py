"""``make demo``: the whole service on one machine with nothing configured.

Starts the API and one queue worker (a local Ray instance) against a SQLite file, submits
a ReCU ResNet-20 job on ``digits`` through the REST API, follows it, downloads the final
checkpoint, evaluates it locally and compares with the accuracy the service reported;
then stops what it started.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from rich.console import Console

from recu_cli.local_service import LocalService, local_service
from recu_cli.output import percent

console = Console()
JOB = {
    "model": "resnet20",
    "dataset": {"name": "digits"},
    "epochs": 30,
    "batch_size": 32,
    "optimizer": {"lr": 0.1},
    "resources": {"num_workers": 1, "cpus_per_worker": 1},
    "checkpoint": {"every_epochs": 5, "keep": 1},
}


def main(workdir: Path = Path("var/demo")) -> int:
    with local_service(workdir) as service:
        token_file = workdir / "token"
        token_file.write_text(service.token + "\n")
        token_file.chmod(0o600)
        console.print(
            f"API at {service.api}, worker started (logs in {workdir}); a token for the user "
            f"'local' is in {token_file}: export RECU_API_TOKEN=$(cat {token_file})"
        )
        return _run(service)


def _run(service: LocalService) -> int:
    """Submit, follow, download, evaluate; 0 when the accuracies match."""
    with service.client() as client:
        job = client.post("/jobs", json=JOB).raise_for_status().json()
        console.print(f"submitted job {job['id']}: ReCU ResNet-20 on digits, 30 epochs")
        last_epoch = 0
        while not job["terminal"]:
            time.sleep(1)
            job = client.get(f"/jobs/{job['id']}").raise_for_status().json()
            if job["current_epoch"] != last_epoch and job["latest_metrics"]:
                last_epoch = job["current_epoch"]
                acc = job["latest_metrics"]["test_acc"]
                console.print(
                    f"  epoch {last_epoch:>2}/30  test acc {percent(acc)}  ({job['state']})"
                )
        if job["state"] != "succeeded":
            console.print(f"[red]job ended {job['state']}: {job['error']}[/red]")
            return 1
        reported = job["latest_metrics"]["test_acc"]
        ckpt = client.get(f"/jobs/{job['id']}/checkpoints").raise_for_status().json()[-1]
        data = client.get(f"/checkpoints/{ckpt['id']}/download").raise_for_status().content
    if hashlib.sha256(data).hexdigest() != ckpt["sha256"]:
        console.print("[red]downloaded checkpoint does not match its sha256[/red]")
        return 1
    from recu_core.config import DatasetConfig
    from recu_core.data import load_dataset
    from recu_core.train import evaluate_accuracy, load_trained_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "final.safetensors"
        path.write_bytes(data)
        model = load_trained_model(path, expected_sha256=ckpt["sha256"])
    local = evaluate_accuracy(model, load_dataset(DatasetConfig(name="digits")), device="cpu")
    console.print(
        f"service reported {reported:.4%}; the downloaded checkpoint evaluates locally to "
        f"{local:.4%}: {'match' if abs(local - reported) < 1e-9 else 'MISMATCH'}"
    )
    return 0 if abs(local - reported) < 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
