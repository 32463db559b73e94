"""The one way the command line builds a spec (a run, a job, a sweep) from what it was
given: a ``--config`` file, then the shortcut options given, then every ``--set``, each
laid over the one before and checked against the spec's pydantic type."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from recu_cli.overrides import SpecError, assign, parse, resolve

M = TypeVar("M", bound=BaseModel)
YAML_SUFFIXES = (".yaml", ".yml")
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="PATH=VALUE",
        help="Set one field by its dotted path, e.g. optimizer.lr=0.05 or "
        "binary_options.clamp=false (VALUE as JSON, else a string); repeat for several; "
        "applied last.",
    ),
]


def load_config(path: Path, option: str = "spec file") -> dict[str, Any]:
    """The mapping a JSON file (or a YAML one: .yaml, .yml) holds; ``option`` names it in
    errors, which are one line: the file, and for a syntax error its line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"{option} {path}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError:
        raise SpecError(f"{option} {path}: not a text file (not UTF-8)") from None
    if path.suffix.lower() in YAML_SUFFIXES:
        import yaml  # PyYAML (a dependency), imported only for YAML files

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise SpecError(f"{option} {path}: not valid YAML{_yaml_where(err)}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(
                f"{option} {path}: not valid JSON at line {err.lineno}, column {err.colno}: "
                f"{err.msg} (YAML files end in .yaml or .yml)"
            ) from None
    if not isinstance(data, dict):
        raise SpecError(f"{option} {path}: expected a mapping of fields, got {type(data).__name__}")
    return data


def _yaml_where(err: Exception) -> str:
    """' at line L, column C: problem' of a PyYAML error, on one line."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {problem}"


def build_spec(
    model: type[BaseModel],
    *,
    config: Path | None = None,
    shortcuts: Mapping[str, Any] | None = None,
    sets: Sequence[str] = (),
    extra: Collection[str] = (),
) -> dict[str, Any]:
    """The spec of type ``model`` the command line describes: the ``config`` file, the
    ``shortcuts`` given (dotted path -> value; None: not given), then each ``--set``
    in order. Only what is given is in it (the rest comes from the recipe, else the
    defaults). ``extra`` are top-level fields the model lacks (the queue's own)."""
    spec = load_config(config) if config is not None else {}
    for path, value in (shortcuts or {}).items():
        if value is not None:
            assign(spec, resolve(model, path, extra), value)
    for text in sets:
        path, value = parse(text)
        assign(spec, resolve(model, path, extra), value)
    return spec


def validate(model: type[M], spec: Mapping[str, Any], extra: Collection[str] = ()) -> M:
    """``spec`` (without its ``extra`` fields) as a ``model``; SpecError naming each field
    that is wrong and, for an unknown one, the fields there are."""
    try:
        return model.model_validate({k: v for k, v in spec.items() if k not in extra})
    except ValidationError as err:
        raise SpecError(describe(err, model, extra)) from None


def describe(err: ValidationError, model: type[BaseModel], extra: Collection[str] = ()) -> str:
    """``path: problem; ...`` for each error of ``err``."""
    problems = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            try:
                resolve(model, path, extra)
            except SpecError as unknown:
                problems.append(str(unknown))
                continue
        given = e.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        problems.append(f"{path or 'spec'}: {e['msg']}{shown}")
    return "; ".join(problems)
