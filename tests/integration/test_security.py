"""Security on a real database (SQLite and PostgreSQL), in-process via TestClient: bearer
tokens (stored hashed, revocable), ownership without existence leaks, the per-user queue
cap, the body size cap, dataset roots confined to the data directory, and the explicit
development mode without auth."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from recu_cli.main import app as cli
from recu_db import queue, results
from recu_db.models import ApiToken, User
from recu_db.tokens import create_token, revoke_token
from service.app import AUTH_DISABLED_WARNING, DOCS_ASSETS, create_app
from service.config import ServiceSettings
from tests.api_client import bearer, token_for

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}
SWEEP = {
    "base": JOB,
    "space": {
        "tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]},
        "tau.tau_e": {"kind": "grid", "values": [0.99]},
    },
}
HEALTH = {"/healthz", "/readyz"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def settings(database_url, tmp_path):
    # a short token cache: the cache is on as in production, and a revoked token stops
    # working within auth_cache_s (the tests that revoke wait that long, no more)
    return ServiceSettings(
        database_url=database_url,
        max_queued_per_user=3,
        data_dir=tmp_path / "data",
        auth_cache_s=0.5,
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


def _concrete(path: str) -> str:
    return path.replace("{job_id}", "1").replace("{sweep_id}", "1").replace("{checkpoint_id}", "1")


def test_every_endpoint_but_health_needs_a_live_token(client):
    operations = [
        (method.upper(), path)
        for path, item in client.app.openapi()["paths"].items()
        for method in item
    ]
    assert len(operations) > 15
    token = token_for(client, "alice")
    for method, template in operations:
        path = _concrete(template)
        plain = client.request(method, path)
        if template in HEALTH:
            assert plain.status_code == 200, path
            continue
        assert plain.status_code == 401, (method, path, plain.text)
        assert plain.headers["www-authenticate"] == "Bearer"
        for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "recu_x_y", "nope"):
            assert client.request(method, path, headers=bearer(wrong)).status_code == 401
        assert client.request(method, path, headers=bearer(token)).status_code != 401


#: What answers without a token, besides the health checks: the API's description (the
#: OpenAPI schema and its two viewers, which hold no data: the same for every caller, as
#: the code is public).
PUBLIC = {
    "/openapi.json": "application/json",
    "/docs": "text/html",
    "/docs/oauth2-redirect": "text/html",
    "/redoc": "text/html",
}


def test_the_api_description_is_public_and_holds_no_data(client):
    """/docs, /redoc and /openapi.json answer without a token (docs/reliability.md,
    Security): they describe the API, the same for every caller, and hold no data. They
    are the only routes of the app besides the described operations (walked by the test
    above), the dashboard's (include_in_schema=False; tests/e2e/test_dashboard.py), its
    static files and the viewers' assets (Swagger UI and ReDoc served offline)."""
    for path, content_type in PUBLIC.items():
        plain = client.get(path)
        assert plain.status_code == 200, path
        assert plain.headers["content-type"].startswith(content_type), path
    described = set(client.app.openapi()["paths"])
    top_level = {route.path for route in client.app.routes if hasattr(route, "path")}
    assert top_level - described == {*PUBLIC, "/ui/static", DOCS_ASSETS}
    assert client.get(f"{DOCS_ASSETS}/swagger-ui-bundle.js").status_code == 200
    token = token_for(client, "alice")
    assert client.post("/jobs", json=JOB, headers=bearer(token)).status_code == 201
    schema = client.get("/openapi.json").text
    assert token not in schema
    assert "alice" not in schema  # no data, whoever exists


def test_tokens_from_the_cli_work_are_stored_hashed_and_stop_working_when_revoked(
    client, database_url, settings
):
    runner = CliRunner()
    created = runner.invoke(cli, ["token", "create", "ci-bot", "--database-url", database_url])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[0]
    assert token.startswith("recu_")
    assert client.get("/jobs", headers=bearer(token)).status_code == 200

    with client.app.state.sessionmaker() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "ci-bot")).one()
        stored = [str(getattr(row, c.key)) for c in ApiToken.__table__.columns]
    assert not any(token in value or token.split("_")[-1] in value for value in stored)

    again = runner.invoke(cli, ["token", "create", "ci-bot", "--database-url", database_url])
    assert again.exit_code == 2
    assert "exists already" in again.output
    revoked = runner.invoke(cli, ["token", "revoke", "ci-bot", "--database-url", database_url])
    assert revoked.exit_code == 0, revoked.output
    time.sleep(settings.auth_cache_s)  # the documented bound of the token cache
    assert client.get("/jobs", headers=bearer(token)).status_code == 401
    listed = runner.invoke(cli, ["token", "list", "--database-url", database_url])
    assert "ci-bot" in listed.output
    assert "revoked" in listed.output
    gone = runner.invoke(cli, ["token", "revoke", "ci-bot", "--database-url", database_url])
    assert gone.exit_code == 1


def test_another_users_work_does_not_exist_for_them_and_an_admin_sees_all(client, db):
    alice, bob = bearer(token_for(client, "alice")), bearer(token_for(client, "bob"))
    admin = bearer(token_for(client, "root", admin=True))
    job = client.post("/jobs", json=JOB, headers=alice).json()["id"]
    sweep = client.post("/sweeps", json=SWEEP, headers=alice).json()["id"]
    lease = queue.claim(db, "w", lease_s=60)
    assert lease is not None
    assert lease.job_id == job
    queue.record_epoch(db, lease, 1, {"test_acc": 0.5})
    ckpt = results.store_checkpoint(db, lease, 1, {}, io.BytesIO(b"x" * 100), keep=1)
    assert ckpt is not None

    paths = [
        f"/jobs/{job}",
        f"/jobs/{job}/metrics",
        f"/jobs/{job}/telemetry",
        f"/jobs/{job}/logs",
        f"/jobs/{job}/events",
        f"/jobs/{job}/checkpoints",
        f"/checkpoints/{ckpt.id}",
        f"/checkpoints/{ckpt.id}/download",
        f"/checkpoints/{ckpt.id}/export",
        f"/sweeps/{sweep}",
    ]
    for path in paths:
        theirs = client.get(path, headers=bob)
        assert theirs.status_code == 404, path  # exactly what an id that never existed gets
        assert theirs.json()["detail"].startswith("no "), path
        if path.endswith("/export"):
            continue  # nothing exported yet: the owner's 200 is in test_export_service
        assert client.get(path, headers=alice).status_code == 200, path
        assert client.get(path, headers=admin).status_code == 200, path
    for path in (
        f"/jobs/{job}/cancel",
        f"/sweeps/{sweep}/cancel",
        f"/checkpoints/{ckpt.id}/export",
    ):
        assert client.post(path, headers=bob).status_code == 404
    assert client.get("/jobs", headers=bob).json()["total"] == 0
    assert client.get("/sweeps", headers=bob).json()["total"] == 0
    assert client.get("/jobs", params={"kind": "trial"}, headers=bob).json()["total"] == 0
    assert client.get("/jobs", params={"kind": "trial"}, headers=alice).json()["total"] == 2
    assert client.get("/jobs", headers=admin).json()["total"] == 1
    assert client.post(f"/jobs/{job}/cancel", headers=admin).json()["state"] == "cancelling"
    assert client.get(f"/jobs/{job}", headers=alice).json()["state"] == "cancelling"
    # An idempotency key is per user: bob's "k" is not alice's "k".
    a = client.post("/jobs", json=JOB, headers={**alice, "Idempotency-Key": "k"})
    b = client.post("/jobs", json=JOB, headers={**bob, "Idempotency-Key": "k"})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


def test_queued_jobs_and_sweeps_per_user_are_capped_with_429(client):
    alice, bob = bearer(token_for(client, "alice")), bearer(token_for(client, "bob"))
    first = client.post("/jobs", json=JOB, headers={**alice, "Idempotency-Key": "first"})
    assert client.post("/jobs", json=JOB, headers=alice).status_code == 201
    assert client.post("/sweeps", json=SWEEP, headers=alice).status_code == 201
    refused = client.post("/jobs", json=JOB, headers=alice)
    assert refused.status_code == 429
    assert "at most 3 queued jobs and sweeps per user" in refused.json()["detail"]
    assert client.post("/sweeps", json=SWEEP, headers=alice).status_code == 429
    # A retry of an accepted submit still answers with its job; other users are not capped.
    retry = client.post("/jobs", json=JOB, headers={**alice, "Idempotency-Key": "first"})
    assert (retry.status_code, retry.json()["id"]) == (200, first.json()["id"])
    assert client.post("/jobs", json=JOB, headers=bob).status_code == 201
    assert client.get("/jobs", headers=alice).json()["total"] == 2  # nothing half-created
    # A cancelled job no longer counts.
    client.post(f"/jobs/{first.json()['id']}/cancel", headers=alice)
    assert client.post("/jobs", json=JOB, headers=alice).status_code == 201


def test_bodies_over_the_limit_are_413_declared_or_streamed(database_url, tmp_path):
    settings = ServiceSettings(database_url=database_url, max_request_bytes=4096)
    with TestClient(create_app(settings)) as client:
        auth = bearer(token_for(client, "alice"))
        padded = {**JOB, "pad": "x" * 5000}
        declared = client.post("/jobs", json=padded, headers=auth)
        assert declared.status_code == 413
        assert "4096 bytes" in declared.json()["detail"]

        def chunks():
            yield b'{"epochs": 3, "pad": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        streamed = client.post(
            "/jobs", content=chunks(), headers={**auth, "Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert client.get("/jobs", headers=auth).json()["total"] == 0
        assert client.post("/jobs", json=JOB, headers=auth).status_code == 201


@pytest.mark.parametrize(
    "root",
    ["../secrets", "a/../../secrets", "/etc", "~/data", "/tmp/elsewhere", "x/\x00"],
)
def test_dataset_roots_outside_the_data_directory_are_refused(client, root):
    auth = bearer(token_for(client, "alice"))
    body = {**JOB, "dataset": {"name": "imagefolder", "root": root}}
    refused = client.post("/jobs", json=body, headers=auth)
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "dataset", "root"]
    assert "outside the data directory" in error["msg"] or "NUL" in error["msg"]
    sweep = {**SWEEP, "base": body}
    swept = client.post("/sweeps", json=sweep, headers=auth)
    assert swept.status_code == 422
    assert swept.json()["detail"][0]["loc"] == ["body", "base", "dataset", "root"]
    assert client.get("/jobs", headers=auth).json()["total"] == 0


def test_dataset_roots_inside_the_data_directory_are_accepted(client, settings):
    auth = bearer(token_for(client, "alice"))
    inside = str(settings.data_dir.resolve() / "imagenet" / "train")
    for root in ("cifar-10-batches-py", "a/../b", inside):
        body = {**JOB, "dataset": {"name": "imagefolder", "root": root}}
        assert client.post("/jobs", json=body, headers=auth).status_code == 201, root


def test_development_mode_without_auth_is_explicit_and_loud(database_url, caplog):
    with caplog.at_level(logging.WARNING, logger="recu.service"):
        settings = ServiceSettings(database_url=database_url, auth_disabled=True)
        with TestClient(create_app(settings)) as client:
            response = client.post("/jobs", json=JOB)
            assert response.status_code == 201
            assert response.headers["x-recu-auth"] == "disabled"
            assert client.get("/jobs").json()["total"] == 1
    assert AUTH_DISABLED_WARNING in caplog.text
    with TestClient(create_app(ServiceSettings(database_url=database_url))) as client:
        refused = client.get("/jobs")
        assert refused.status_code == 401
        assert "x-recu-auth" not in refused.headers


def test_the_dashboard_session_cookie_authenticates_and_needs_the_csrf_header_to_write(
    client, settings
):
    """POST /ui/session keeps a live token in an HttpOnly, SameSite=Strict cookie; reads
    work with it alone, a write also needs X-Recu-Dashboard (a cross-site form cannot
    send it), a dead token is never stored, and signing out drops the cookie."""
    makers = client.app.state.sessionmaker
    token = create_token(makers, "alice-dashboard", user="alice")
    job = client.post("/jobs", json=JOB, headers=bearer(token)).json()["id"]
    refused = client.post("/ui/session", json={"token": "recu_nope_nope"})
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers
    assert client.get("/ui/whoami").json()["user"] is None
    signed_in = client.post("/ui/session", json={"token": token})
    assert signed_in.status_code == 204
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert client.get("/ui/whoami").json() == {
        "user": "alice",
        "admin": False,
        "auth_disabled": False,
    }
    assert client.get(f"/jobs/{job}").json()["state"] == "queued"
    forged = client.post(f"/jobs/{job}/cancel")
    assert forged.status_code == 403
    assert "X-Recu-Dashboard" in forged.json()["detail"]
    assert client.get(f"/jobs/{job}").json()["state"] == "queued"
    done = client.post(f"/jobs/{job}/cancel", headers={"X-Recu-Dashboard": "1"})
    assert done.json()["state"] == "cancelled"
    client.post("/ui/logout")
    assert client.get(f"/jobs/{job}").status_code == 401
    # a revoked token in a still-held cookie is refused like a revoked bearer token
    client.cookies.set("recu_session", token)
    assert client.get(f"/jobs/{job}").status_code == 200
    assert revoke_token(makers, "alice-dashboard")
    time.sleep(settings.auth_cache_s)  # the documented bound of the token cache
    assert client.get(f"/jobs/{job}").status_code == 401


@pytest.mark.parametrize("cache_s", [0.0, 1.0])
def test_a_revoked_or_demoted_token_stops_working_within_the_cache_bound(
    database_url, tmp_path, cache_s
):
    """Revocation and demotion are honoured by every request that starts ``auth_cache_s``
    after them (0: at once), though the token was looked up (and cached) just before."""
    settings = ServiceSettings(
        database_url=database_url, data_dir=tmp_path / "data", auth_cache_s=cache_s
    )
    with TestClient(create_app(settings)) as client:
        makers = client.app.state.sessionmaker
        mine = create_token(makers, "carol-ci", user="carol")
        root = create_token(makers, "root-ci", user="root", admin=True)
        carols = client.post("/jobs", json=JOB, headers=bearer(mine)).json()["id"]
        assert client.get(f"/jobs/{carols}", headers=bearer(root)).status_code == 200
        assert client.get(f"/jobs/{carols}", headers=bearer(mine)).status_code == 200
        revoked_at = time.monotonic()
        assert revoke_token(makers, "carol-ci")
        with makers.begin() as session:  # root loses the admin role
            session.execute(update(User).where(User.name == "root").values(role="user"))
        time.sleep(max(0.0, revoked_at + cache_s - time.monotonic()))
        gone = client.get(f"/jobs/{carols}", headers=bearer(mine))
        assert gone.status_code == 401, gone.text
        assert client.get(f"/jobs/{carols}", headers=bearer(root)).status_code == 404


MALFORMED_TOKENS = [
    "recu_ab\x00cd_x",  # NUL: PostgreSQL refuses it in a text parameter
    "recu_ab\ud800cd_x",  # a lone surrogate: no UTF-8 encoding exists
    "recu_\x00",
    "recu_0123456789ab_" + "A" * 42,  # one short
    "recu_0123456789ab_" + "A" * 44,  # one long
    "recu_0123456789AB_" + "A" * 43,  # key id not lowercase hex
    "recu_0123456789ab_" + "A" * 42 + "=",  # off the base64url alphabet
    "recu_0123456789ab_" + "A" * 42 + "\u00e9",
    "x" * 10_000,
    "",
]


def test_a_malformed_token_is_401_before_any_query_on_every_path(client):
    """A token is ``recu_<12 hex>_<43 base64url>``: anything else (NUL, a surrogate,
    another alphabet or length) is refused like an unknown token, never a 500, by the
    bearer header, the session cookie, POST /ui/session and /ui/whoami alike."""
    token = token_for(client, "alice")
    for wrong in MALFORMED_TOKENS:
        signed_in = client.post("/ui/session", content=json.dumps({"token": wrong}), headers=JSON)
        assert signed_in.status_code == 401, (wrong, signed_in.text)
        assert "set-cookie" not in signed_in.headers
    for wrong in MALFORMED_TOKENS:
        if not wrong.isascii() or "\x00" in wrong:
            continue  # not sendable in a header (h11 refuses it before the service)
        assert client.get("/jobs", headers=bearer(wrong)).status_code == 401, wrong
    # A cookie value may carry NUL as the octal escape \000 of a quoted cookie string.
    for raw in ('"recu_ab\\000cd_x"', '"recu_0123456789ab_\\000"', "recu_\\000"):
        client.cookies.clear()
        cookie = {"Cookie": f"recu_session={raw}"}
        assert client.get("/jobs", headers=cookie).status_code == 401, raw
        assert client.get("/ui/whoami", headers=cookie).json()["user"] is None, raw
    assert client.get("/jobs", headers=bearer(token)).status_code == 200


def _string_fields(schema: dict, components: dict, path: tuple = ()) -> list[tuple]:
    """The dotted paths of every string field of a request body's schema."""
    if "$ref" in schema:
        return _string_fields(components[schema["$ref"].rsplit("/", 1)[-1]], components, path)
    options = schema.get("anyOf", [schema])
    found = []
    for option in options:
        if "$ref" in option:
            option = components[option["$ref"].rsplit("/", 1)[-1]]
        if option.get("type") == "string" and path not in found:
            found.append(path)
        for name, sub in option.get("properties", {}).items():
            if name != "space":  # its keys and values: below
                found += _string_fields(sub, components, (*path, name))
    return found


def _set(body: dict, path: tuple, value: object) -> dict:
    out = json.loads(json.dumps(body))
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


@pytest.mark.parametrize("bad", ["\ud800", "root\udfff", "a\x00b", "\x00", "tab\there", "\x1f"])
def test_a_surrogate_or_control_character_in_any_string_is_422_and_listings_keep_working(
    client, bad
):
    """Every string of a POST /jobs or POST /sweeps body (every string field the schema
    has, a sweep's searched field names and its values): 422 naming the field, nothing
    stored; the owner's and the admin's GET /jobs and GET /sweeps answer 200 after."""
    alice = bearer(token_for(client, "alice"))
    admin = bearer(token_for(client, "root", admin=True))
    kept = client.post("/jobs", json=JOB, headers=alice)
    assert kept.status_code == 201
    components = client.app.openapi()["components"]["schemas"]
    job_fields = _string_fields(components["JobCreate"], components)
    sweep_fields = _string_fields(components["SweepCreate"], components)
    assert ("dataset", "root") in job_fields
    assert ("base", "dataset", "root") in sweep_fields
    assert len(job_fields) >= 12, job_fields
    cases = [("/jobs", _set(JOB, path, bad), path) for path in job_fields]
    cases += [("/sweeps", _set(SWEEP, path, bad), path) for path in sweep_fields]
    grid = {"kind": "grid", "values": ["exponential", bad]}
    cases += [
        ("/sweeps", {**SWEEP, "space": {"tau.kind": grid}}, ("space", "tau.kind")),
        ("/sweeps", {**SWEEP, "space": {bad: {"kind": "grid", "values": [1]}}}, ("space",)),
        ("/jobs", {**JOB, bad: 1}, ()),  # an unknown field's name
    ]
    for path_, body, field in cases:
        raw = json.dumps(body)  # ensure_ascii: a surrogate travels as its \ud800 escape
        refused = client.post(path_, content=raw, headers={**alice, **JSON})
        assert refused.status_code == 422, (path_, field, refused.text)
        locs = [tuple(e["loc"][1:]) for e in refused.json()["detail"]]
        assert any(loc[: len(field)] == field for loc in locs), (field, locs)
    for who in (alice, admin):
        jobs, sweeps = client.get("/jobs", headers=who), client.get("/sweeps", headers=who)
        assert (jobs.status_code, sweeps.status_code) == (200, 200)
        assert jobs.json()["total"] == 1
        assert sweeps.json()["total"] == 0
    assert [j["id"] for j in client.get("/jobs", headers=admin).json()["items"]] == [
        kept.json()["id"]
    ]
