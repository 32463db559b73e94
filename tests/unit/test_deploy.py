"""The deployment files, checked without a container engine or a cluster: the compose file
against the compose specification, the Kubernetes manifests against Kubernetes' own
schemas (the RayCluster's pod templates too), and every environment variable the code
reads documented in .env.example."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.37"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _manifests() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def test_compose_file_validates_against_the_compose_specification():
    tool = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert tool, "check-jsonschema is a dev dependency"
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_every_part_wired_as_documented():
    services = _compose()["services"]
    assert set(services) == {"postgres", "ray-head", "ray-worker", "api", "queue-worker"}
    postgres = services["postgres"]
    assert "healthcheck" in postgres
    assert any(v.startswith("postgres-data:") for v in postgres["volumes"])
    worker = services["ray-worker"]  # scalable: no fixed name, no published port, GPUs
    assert "container_name" not in worker
    assert "ports" not in worker
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["capabilities"]) == ("nvidia", ["gpu"])
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "readyz" in " ".join(services["api"]["healthcheck"]["test"])
    queue_worker = services["queue-worker"]
    assert queue_worker["depends_on"]["api"]["condition"] == "service_healthy"
    assert queue_worker["environment"]["RAY_HEAD_ADDRESS"] == "ray-head:6379"
    # secrets are required from the environment, never defaulted in the file
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text
    assert "${RAY_AUTH_TOKEN:?" in text


@pytest.mark.parametrize(
    ("name", "doc"),
    [m for m in _manifests() if m[1]["kind"] != "RayCluster"],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_kubernetes_manifests_validate_against_kubernetes_schemas(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_raycluster_groups_and_pod_templates_are_valid():
    """Kubernetes' schemas do not know KubeRay's CRD: the RayCluster's own fields are
    checked here as KubeRay documents them, its pod templates by Kubernetes' schema."""
    (cluster,) = [doc for _, doc in _manifests() if doc["kind"] == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["rayVersion"] == "2.60.0"
    templates = [spec["headGroupSpec"]["template"]]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= {
            "groupName",
            "replicas",
            "minReplicas",
            "maxReplicas",
            "rayStartParams",
            "template",
        }
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "1"
        templates.append(group["template"])
    for template in templates:
        kubernetes_validate.validate(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "t"},
                "template": template,
            },
            K8S_VERSION,
            strict=True,
        )


def test_kustomization_applies_every_manifest_but_the_secret_template():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == files


def _variables_read_by_the_code() -> set[str]:
    patterns = [
        r"os\.environ(?:\.get|\.setdefault)?[\(\[]\s*\"([A-Z][A-Z0-9_]+)\"",
        r"envvar=\"([A-Z][A-Z0-9_]+)\"",
        r"_env\(\"([A-Z][A-Z0-9_]+)\"",
    ]
    names: set[str] = set()
    for package in ("recu_core", "recu_db", "recu_cli", "service", "workers", "bench", "tests"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            for pattern in patterns:
                names |= set(re.findall(pattern, text))
    for script in (ROOT / "deploy").glob("*.sh"):
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", script.read_text()))
    # the settings classes: each field's own variable
    from recu_core.settings import ALL_SETTINGS, env_name

    for settings in ALL_SETTINGS:
        names |= {env_name(settings, field) for field in settings.model_fields}
    return names


def _documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


# Not the service's settings: the interpreter's own variable, which a test passes on to the
# processes it starts, and a test's own knob (tests/e2e/test_outages.py).
NOT_SETTINGS = frozenset({"PYTHONPATH", "RECU_TEST_OUTAGES"})


def test_every_environment_variable_the_code_reads_is_in_env_example():
    read = _variables_read_by_the_code()
    assert {"RECU_DATABASE_URL", "RAY_ADDRESS", "RECU_RUNS_DIR", "RECU_DATA_DIR"} <= read
    assert read - _documented() - NOT_SETTINGS == set()


def test_every_variable_compose_substitutes_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", text))
    assert used - _documented() == set()


def test_image_runs_as_a_non_root_user_and_holds_every_package():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert users == ["recu"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
