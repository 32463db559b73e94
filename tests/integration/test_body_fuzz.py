"""A property of POST /jobs and POST /sweeps on a real database (SQLite and PostgreSQL):
a body that is not a valid request, whatever its shape, gets a 4xx (never a 5xx), the
answer is JSON, and nothing is stored.

The bodies are raw JSON text, so they carry what ``json.dumps`` would refuse or never
write: NaN, Infinity, -Infinity and 1e309 (read as infinity), lone UTF-16 surrogates as
``\\ud800`` escapes, NUL and other control characters, 1,000-level nesting, strings about
the size of the body limit, unknown fields, and random JSON in place of any part of a
valid request. Every example is invalid by construction: each carries at least one
value no field accepts (a non-finite number, a surrogate or control character, a
nesting, an unknown field name, a huge string) or is no JSON object at all.
"""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from recu_db.models import Job, JobEvent
from service.app import create_app
from service.config import ServiceSettings
from tests.api_client import bearer, token_for

LIMIT = 64 * 1024  # RECU_MAX_REQUEST_BYTES of the app under test
EXAMPLES = 150  # per endpoint and database: about 20 s in all
JOB = {
    "model": "resnet20",
    "dataset": {"name": "digits", "num_train": 100, "crop_scale": [0.08, 1.0]},
    "epochs": 3,
    "tau": {"kind": "exponential", "tau_s": 0.85, "tau_e": 0.99},
    "optimizer": {"lr": 0.1, "momentum": 0.9, "warmup_epochs": 1.0},
    "resources": {"num_workers": 1, "cpus_per_worker": 1.0},
    "checkpoint": {"every_epochs": 1, "keep": 2},
    "device": "auto",
    "priority": 0,
}
SWEEP = {
    "base": {k: v for k, v in JOB.items() if k != "priority"},
    "space": {
        "tau.tau_s": {"kind": "uniform", "low": 0.85, "high": 0.9},
        "tau.kind": {"kind": "grid", "values": ["exponential", "linear"]},
        "optimizer.lr": {"kind": "choice", "values": [0.1, 0.01]},
    },
    "scheduler": {"kind": "asha", "reduction_factor": 3.0},
    "num_samples": 2,
}
HEADERS = {"Content-Type": "application/json"}


class Raw:
    """JSON text put into the body as is (what ``json.dumps`` cannot write)."""

    def __init__(self, text: str) -> None:
        self.text = text


def encode(value: object) -> str:
    """``value`` as JSON text: floats may be non-finite (NaN, Infinity), strings may hold
    surrogates (written as their \\uXXXX escapes), and Raw parts go in verbatim."""
    raws: list[str] = []

    def walk(v: object) -> object:
        if isinstance(v, Raw):
            raws.append(v.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    text = json.dumps(walk(value), allow_nan=True)  # ensure_ascii: escapes surrogates
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{index}\x00"), raw)
    return text


# Every character, lone surrogates (category Cs) included.
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
random_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

surrogate = st.sampled_from(["\ud800", "\udfff", "a\udbff", "\ud83d"]).map(
    lambda s: s + "x"
) | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=4)
control = st.builds(
    lambda head, char, tail: head + char + tail,
    st.text(max_size=5),
    st.characters(max_codepoint=0x1F),
    st.text(max_size=5),
)
non_finite = st.sampled_from(
    [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e309"), Raw("-1e400")]
) | st.sampled_from([math.nan, math.inf, -math.inf])
deep = st.integers(200, 1000).map(lambda n: Raw("[" * n + "]" * n)) | st.integers(200, 1000).map(
    lambda n: Raw('{"a":' * n + "1" + "}" * n)
)
huge = st.integers(LIMIT - 2000, LIMIT + 2000).map(lambda n: "x" * n)
#: A value no field of either body accepts, wherever it is put.
poison = (
    non_finite
    | surrogate
    | control
    | deep
    | huge
    | st.tuples(non_finite | surrogate | control, random_json).map(lambda t: [t[0], t[1]])
)


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every path to a part of ``value`` (the whole of it included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, sub in value.items():
            found += _paths(sub, (*prefix, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            found += _paths(sub, (*prefix, index))
    return found


def _put(value: object, path: tuple, part: object) -> object:
    if not path:
        return part
    copy = json.loads(json.dumps(value))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = part
    return copy


def poisoned(valid: dict) -> st.SearchStrategy[bytes]:
    """``valid`` with one part replaced by poison, or one part's key or value replaced by
    random JSON next to a poisoned unknown field; or random JSON that is no object; or
    raw text that is no JSON."""
    paths = _paths(valid)
    replaced = st.builds(lambda p, x: _put(valid, p, x), st.sampled_from(paths), poison)
    objects = [p for p in paths if isinstance(_at(valid, p), dict)]
    extra = st.builds(
        lambda p, key, x: _put(valid, p, {**_at(valid, p), key: x}),
        st.sampled_from(objects),
        (surrogate | control | any_text).map(lambda k: "~" + k),  # never a field's name
        random_json | poison,
    )
    not_object = random_json.filter(lambda v: not isinstance(v, dict))
    not_json = st.sampled_from(
        [
            encode(valid)[:-1].encode(),  # cut short
            b"{",
            b"",
            b"\xff\xfe{}",  # not UTF-8
            b'{"epochs": 1,}',
            b"[" * 60_000,  # deeper than the parser's recursion limit
            b"{'a': 1}",
        ]
    )
    as_bytes = st.one_of(replaced, extra, not_object).map(lambda v: encode(v).encode())
    return as_bytes | not_json


def _at(value: object, path: tuple) -> object:
    for key in path:
        value = value[key]  # type: ignore[index]
    return value


def _stored(client: TestClient) -> tuple[int, int]:
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        return (
            session.scalar(select(func.count()).select_from(Job)) or 0,
            session.scalar(select(func.count()).select_from(JobEvent)) or 0,
        )


@pytest.mark.parametrize(("path", "valid"), [("/jobs", JOB), ("/sweeps", SWEEP)])
def test_any_invalid_body_is_4xx_json_and_stores_nothing(database_url, tmp_path, path, valid):
    settings_ = ServiceSettings(
        database_url=database_url, max_request_bytes=LIMIT, data_dir=tmp_path / "data"
    )
    with TestClient(create_app(settings_)) as client:
        auth = bearer(token_for(client, "alice"))
        admin = bearer(token_for(client, "root", admin=True))
        accepted = client.post(path, json=valid, headers=auth)
        assert accepted.status_code == 201, accepted.text  # the unpoisoned body is valid
        before = _stored(client)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(body=poisoned(valid))
        def refused_and_nothing_stored(body: bytes) -> None:
            response = client.post(path, content=body, headers={**auth, **HEADERS})
            assert 400 <= response.status_code < 500, (body[:300], response.text[:500])
            assert isinstance(response.json()["detail"], str | list)
            assert _stored(client) == before

        refused_and_nothing_stored()
        for who in (auth, admin):  # the listings still answer, for the owner and an admin
            assert client.get("/jobs", headers=who).status_code == 200
            assert client.get("/sweeps", headers=who).status_code == 200
