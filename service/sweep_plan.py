"""Turn a sweep request into its trials, or into 422 errors that name the field.

Trials are planned when the sweep is submitted, with the standard library's seeded
``random``: grid dimensions are crossed, choice and range dimensions sampled once per
trial, ``num_samples`` times over (the semantics of Ray Tune's variant generator), and
with ``seeds`` every point so drawn runs once per seed, one after the other: trial ``i``
belongs to the point (seed group) ``i // len(seeds)``. Every trial is then a
``JobSpec``, validated like a POST /jobs body; a re-claimed sweep runs exactly the trials
it planned.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from recu_core.jobspec import JobSpec
from recu_core.sweepspec import SEARCHABLE, Choice, Dimension, Grid, LogUniform, SweepSpec

Error = dict[str, Any]


@dataclass(frozen=True)
class PlannedTrial:
    """One trial: the searched values by dotted path (``seed`` too in a seed group), and
    its whole job spec."""

    params: dict[str, Any]
    spec: JobSpec


def with_value(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``spec`` with the dotted ``path`` set to ``value``."""
    out = copy.deepcopy(spec)
    node = out
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return out


def value_at(spec: JobSpec, path: str) -> Any:
    """The field of ``spec`` at the dotted ``path`` (e.g. ``tau.tau_s``)."""
    return functools.reduce(getattr, path.split("."), spec)


def _candidates(dim: Dimension) -> list[Any]:
    """The values a dimension can take at its edges: every listed value, or both bounds."""
    return list(dim.values) if isinstance(dim, Grid | Choice) else [dim.low, dim.high]


def _error(loc: tuple[Any, ...], msg: str, value: Any) -> Error:
    return {"type": "value_error", "loc": ("body", *loc), "msg": msg, "input": value}


def _check_dimension(base: dict[str, Any], path: str, dim: Dimension) -> list[Error]:
    errors = []
    for value in _candidates(dim):
        try:
            JobSpec.model_validate(with_value(base, path, value))
        except ValidationError as err:
            first = err.errors()[0]
            errors.append(_error(("space", path), f"value {value!r}: {first['msg']}", value))
    return errors


def _check_tau_order(base: dict[str, Any], space: dict[str, Dimension]) -> list[Error]:
    """An increasing schedule needs tau_s <= tau_e in every trial, not only on average."""
    if "tau.kind" in space or base["tau"]["kind"] == "constant":
        return []
    if "tau.tau_s" not in space and "tau.tau_e" not in space:
        return []
    s = space.get("tau.tau_s")
    e = space.get("tau.tau_e")
    highest_s = max(_candidates(s)) if s else base["tau"]["tau_s"]
    lowest_e = min(_candidates(e)) if e else base["tau"]["tau_e"]
    if highest_s <= lowest_e:
        return []
    field = "tau.tau_s" if s else "tau.tau_e"
    return [
        _error(
            ("space", field),
            f"tau_s can reach {highest_s} while tau_e can be as low as {lowest_e}; an "
            f"increasing '{base['tau']['kind']}' schedule needs tau_s <= tau_e in every trial: "
            "keep the tau_s range below the tau_e range",
            highest_s,
        )
    ]


def _sample(dim: Dimension, rng: random.Random) -> Any:
    if isinstance(dim, Choice):
        return rng.choice(dim.values)
    if isinstance(dim, LogUniform):
        return math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))
    return rng.uniform(dim.low, dim.high)  # type: ignore[union-attr]


def plan(body: SweepSpec, max_trials: int) -> tuple[list[PlannedTrial], list[Error]]:
    """(trials, errors): the planned trials, or the 422 errors that name the field."""
    base = body.base.stored()
    errors: list[Error] = []
    for path, dim in body.space.items():
        if path not in SEARCHABLE:
            errors.append(
                _error(
                    ("space", path),
                    f"cannot search {path!r}; searchable fields: {', '.join(SEARCHABLE)}",
                    path,
                )
            )
        elif body.search == "grid" and not isinstance(dim, Grid | Choice):
            errors.append(
                _error(
                    ("space", path, "kind"),
                    f"search='grid' enumerates values: {path!r} must be 'grid' or 'choice', "
                    f"not {dim.kind!r} (or use search='random')",
                    dim.kind,
                )
            )
        else:
            errors += _check_dimension(base, path, dim)
    if errors:
        return [], errors
    errors = _check_tau_order(base, body.space)
    enumerated = (Grid, Choice) if body.search == "grid" else (Grid,)
    grid = {p: d.values for p, d in body.space.items() if isinstance(d, enumerated)}
    sampled = {p: d for p, d in body.space.items() if p not in grid}
    count = math.prod(len(v) for v in grid.values()) * body.num_samples * body.group_size
    if count > max_trials:
        per_point = f" ({body.group_size} seeds per point)" if body.seeds else ""
        errors.append(
            _error(
                ("num_samples",),
                f"the sweep would run {count} trials; at most {max_trials} are allowed" + per_point,
                body.num_samples,
            )
        )
    if errors:
        return [], errors
    rng = random.Random(body.seed)
    trials: list[PlannedTrial] = []
    for _ in range(body.num_samples):
        for point in itertools.product(*grid.values()):
            drawn = dict(zip(grid, point, strict=True))
            drawn |= {path: _sample(dim, rng) for path, dim in sampled.items()}
            seeds: list[int | None] = [*body.seeds] if body.seeds else [None]
            for seed in seeds:
                params = drawn if seed is None else {**drawn, "seed": seed}
                spec = base
                for path, value in params.items():
                    spec = with_value(spec, path, value)
                try:
                    trial = JobSpec.model_validate(spec)
                except ValidationError as err:
                    msg = f"trial {len(trials)} {params}: {err.errors()[0]['msg']}"
                    return [], [_error(("space",), msg, params)]
                trials.append(PlannedTrial({p: value_at(trial, p) for p in params}, trial))
    return trials, []
