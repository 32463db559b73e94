"""Seed groups on a real database (SQLite and PostgreSQL), through the API in-process:
the plan crosses the space with the seeds, refused combinations are 422s naming the
field, each group's mean +- std over its seeds matches a hand computation from recorded
metrics, and rank_by 'group_mean' picks the point with the best mean, not the best trial."""

from __future__ import annotations

import math

import pytest

from recu_db import queue
from recu_db.trials import start_trial
from service.config import ServiceSettings
from tests.api_client import api_client
from tests.integration.test_api import _errors

BASE = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}
TAU_S = {"tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]}}


@pytest.fixture
def client(database_url):
    settings = ServiceSettings(database_url=database_url, max_trials_per_sweep=20)
    with api_client(settings) as client:
        yield client


def _record(db, sweep_id: int, results: dict[int, list[dict[str, float]]]) -> None:
    """Claim the sweep and record, per trial index, its epochs' metrics in order."""
    lease = queue.claim(db, "w", lease_s=60)
    assert lease.job_id == sweep_id
    for index, epochs in results.items():
        trial = start_trial(db, lease, str(index))
        for epoch, metrics in enumerate(epochs, 1):
            assert queue.record_epoch(db, trial, epoch, metrics)


def test_seeds_cross_every_point_of_the_space(client):
    body = {"base": BASE, "space": TAU_S, "seeds": [0, 1, 2], "search": "grid"}
    sweep = client.post("/sweeps", json=body)
    assert sweep.status_code == 201, sweep.text
    sweep = sweep.json()
    assert [(t["params"]["tau.tau_s"], t["params"]["seed"]) for t in sweep["trials"]] == [
        (0.85, 0),
        (0.85, 1),
        (0.85, 2),
        (0.9, 0),
        (0.9, 1),
        (0.9, 2),
    ]
    for trial in sweep["trials"]:
        spec = client.get(f"/jobs/{trial['id']}").json()["spec"]
        assert (spec["seed"], spec["tau"]["tau_s"]) == (
            trial["params"]["seed"],
            trial["params"]["tau.tau_s"],
        )
    assert sweep["spec"]["scheduler"]["kind"] == "none"  # no ASHA over seeds unless asked
    ids = [t["id"] for t in sweep["trials"]]
    assert [(g["index"], g["params"], g["trial_ids"], g["seeds"]) for g in sweep["groups"]] == [
        (0, {"tau.tau_s": 0.85}, ids[:3], [0, 1, 2]),
        (1, {"tau.tau_s": 0.9}, ids[3:], [0, 1, 2]),
    ]
    empty = {"n": 0, "mean": None, "std": None}
    assert all(g["reported"] == 0 and g["last_test_acc"] == empty for g in sweep["groups"])
    assert sweep["best"] is None
    assert sweep["best_group"] is None


def test_sampled_points_are_drawn_once_and_run_per_seed(client):
    space = {"tau.tau_s": {"kind": "uniform", "low": 0.85, "high": 0.94}}
    body = {"base": BASE, "space": space, "seeds": [5, 9], "num_samples": 3}
    trials = client.post("/sweeps", json=body).json()["trials"]
    assert len(trials) == 6
    assert [t["params"]["seed"] for t in trials] == [5, 9] * 3
    taus = [t["params"]["tau.tau_s"] for t in trials]
    assert taus[0::2] == taus[1::2]  # both seeds of a point share its draw
    assert len(set(taus)) == 3


def test_seeds_alone_are_a_job_run_once_per_seed(client):
    sweep = client.post("/sweeps", json={"base": BASE, "seeds": [0, 1, 2]})
    assert sweep.status_code == 201, sweep.text
    sweep = sweep.json()
    assert [t["params"] for t in sweep["trials"]] == [{"seed": 0}, {"seed": 1}, {"seed": 2}]
    assert sweep["spec"]["space"] == {}
    (group,) = sweep["groups"]
    assert (group["params"], group["seeds"]) == ({}, [0, 1, 2])
    # without seeds there are no groups
    plain = client.post("/sweeps", json={"base": BASE, "space": TAU_S}).json()
    assert plain["groups"] == []
    assert "seed" not in plain["trials"][0]["params"]


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        ({"space": {"seed": {"kind": "grid", "values": [1, 2]}}}, "seeds", "remove 'seed'"),
        ({"seeds": [0, 1, 0]}, "seeds", "seeds must be unique; repeated: [0]"),
        ({"seeds": []}, "seeds", "at least 1 item"),
        ({"seeds": list(range(21))}, "seeds", "at most 20 items"),
        ({"seeds": [-1]}, "seeds.0", "greater than or equal to 0"),
        ({"space": {}, "seeds": None}, "seeds", "the space is empty and no seeds are given"),
        ({"space": TAU_S, "seeds": None, "rank_by": "group_mean"}, "rank_by", "give seeds"),
        ({"rank_by": "best"}, "rank_by", "'trial' or 'group_mean'"),
        (
            {"rank_by": "group_mean", "scheduler": {"kind": "asha"}},
            "rank_by",
            "set scheduler.kind to 'none'",
        ),
        (
            {"space": TAU_S, "search": "grid", "seeds": list(range(11))},
            "num_samples",
            "the sweep would run 22 trials; at most 20 are allowed (11 seeds per point)",
        ),
    ],
)
def test_refused_seed_groups_are_422_naming_the_field(client, extra, field, fragment):
    body = {"base": BASE, "seeds": [0, 1], **extra}  # seeds None: no seeds
    errors = _errors(client.post("/sweeps", json={k: v for k, v in body.items() if v is not None}))
    assert field in errors, errors
    assert fragment in errors[field]
    assert client.get("/sweeps").json()["total"] == 0


def _acc(best: float, last: float, loss: float = 1.0) -> dict[str, float]:
    return {"best_test_acc": best, "test_acc": last, "test_loss": loss, "best_epoch": 1}


def test_group_mean_and_std_match_a_hand_computation(client, db):
    body = {"base": BASE, "space": TAU_S, "seeds": [0, 1, 2], "search": "grid"}
    sweep = client.post("/sweeps", json=body).json()
    _record(
        db,
        sweep["id"],
        {
            # point 0: every seed reported; the latest epoch's test_acc is "last"
            0: [_acc(0.85, 0.85), _acc(0.90, 0.89)],
            1: [_acc(0.92, 0.92)],
            2: [_acc(0.80, 0.80), _acc(0.94, 0.94), _acc(0.94, 0.92)],
            # point 1: seed 2 has not reported yet
            3: [_acc(0.80, 0.80)],
            4: [_acc(0.84, 0.80)],
        },
    )
    view = client.get(f"/sweeps/{sweep['id']}").json()
    first, second = view["groups"]
    assert (first["reported"], second["reported"]) == (3, 2)
    # best 0.90, 0.92, 0.94: mean 0.92, sample std sqrt((0.02^2 + 0 + 0.02^2) / 2) = 0.02
    assert first["best_test_acc"] == {
        "n": 3,
        "mean": pytest.approx(0.92),
        "std": pytest.approx(0.02),
    }
    # last 0.89, 0.92, 0.92: mean 0.91, std sqrt((0.02^2 + 0.01^2 + 0.01^2) / 2)
    assert first["last_test_acc"] == {
        "n": 3,
        "mean": pytest.approx(0.91),
        "std": pytest.approx(math.sqrt(0.0003)),
    }
    # best 0.80, 0.84: mean 0.82, std sqrt((0.02^2 + 0.02^2) / 1); last 0.80 twice: std 0
    assert second["best_test_acc"] == {
        "n": 2,
        "mean": pytest.approx(0.82),
        "std": pytest.approx(math.sqrt(0.0008)),
    }
    assert second["last_test_acc"] == {"n": 2, "mean": pytest.approx(0.80), "std": 0.0}
    assert second["metric"] == second["last_test_acc"]  # the sweep's metric is test_acc
    assert [first["best"], second["best"]] == [False, False]  # rank_by trial: none marked


def test_a_single_result_has_a_mean_and_no_std(client, db):
    sweep = client.post("/sweeps", json={"base": BASE, "seeds": [0, 1]}).json()
    _record(db, sweep["id"], {0: [_acc(0.5, 0.4)]})
    (group,) = client.get(f"/sweeps/{sweep['id']}").json()["groups"]
    assert group["best_test_acc"] == {"n": 1, "mean": 0.5, "std": None}
    assert group["reported"] == 1


@pytest.mark.parametrize(
    ("metric", "mode", "a", "b"),
    [
        # point 0 has the best single trial (0.95) but the worse mean (0.725 < 0.80)
        ("test_acc", "max", (0.95, 0.50), (0.80, 0.80)),
        # the same for a loss: point 0's 0.10 is lowest, its mean 0.60 is not
        ("test_loss", "min", (0.10, 1.10), (0.40, 0.40)),
    ],
)
def test_rank_by_group_mean_picks_the_best_mean_not_the_best_trial(client, db, metric, mode, a, b):
    def results(values: tuple[float, float], first: int) -> dict[int, list[dict[str, float]]]:
        return {first + i: [{metric: v, "best_epoch": 1}] for i, v in enumerate(values)}

    picked = {}
    for rank_by in ("trial", "group_mean"):
        body = {
            "base": BASE,
            "space": TAU_S,
            "search": "grid",
            "seeds": [0, 1],
            "metric": metric,
            "mode": mode,
            "rank_by": rank_by,
        }
        sweep = client.post("/sweeps", json=body)
        assert sweep.status_code == 201, sweep.text
        sweep = sweep.json()
        _record(db, sweep["id"], {**results(a, 0), **results(b, 2)})
        picked[rank_by] = client.get(f"/sweeps/{sweep['id']}").json()
    by_trial, by_mean = picked["trial"], picked["group_mean"]
    assert (by_trial["best"]["index"], by_trial["best"]["value"]) == (0, a[0])
    assert by_trial["best_group"] is None
    assert by_mean["best_group"] == 1
    assert [g["best"] for g in by_mean["groups"]] == [False, True]
    assert by_mean["best"]["index"] in (2, 3)  # the best group's best trial
    assert by_mean["best"]["params"] == {"tau.tau_s": 0.9, "seed": by_mean["best"]["index"] - 2}
    means = [g["metric"]["mean"] for g in by_mean["groups"]]
    assert means == [pytest.approx(sum(a) / 2), pytest.approx(sum(b) / 2)]
    # the list says the same
    listed = {s["id"]: s for s in client.get("/sweeps").json()["items"]}
    assert listed[by_mean["id"]]["best_group"] == 1
