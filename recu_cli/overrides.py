"""``--set PATH=VALUE``: one field of a spec, by its dotted path, checked against the spec's
pydantic type (``recu train``, ``recu submit``, ``recu sweep``).

VALUE is parsed as JSON when it parses (``0.05``, ``false``, ``null``, ``[0.08, 1.25]``,
``{"name": "adam"}``), else taken as a string (``cifar10``, ``cuda:0``); quote a string
that would parse, as JSON: ``'dataset.root="2024"'``. PATH descends into the nested
sections (``optimizer.lr``); below a mapping field the rest of PATH is one key
(``space.tau.tau_s``). A mapping VALUE is merged into what the section holds already.
"""

from __future__ import annotations

import json
import types
from collections.abc import Collection
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from recu_core.recipes import deep_merge

Keys = tuple[str, ...]
#: A section: the model of a nested field, ``dict`` (a mapping field), or None (a value).
Section = type[BaseModel] | type[dict[Any, Any]] | None


class SpecError(ValueError):
    """A spec the command line cannot build; the message names the field and what is
    allowed."""


def parse(text: str) -> tuple[str, Any]:
    """``PATH=VALUE`` -> (PATH, VALUE parsed as JSON, else the string)."""
    path, sep, raw = text.partition("=")
    if not sep or not path or "" in path.split("."):
        raise SpecError(
            f"--set {text!r}: expected PATH=VALUE with a dotted PATH, such as "
            "optimizer.lr=0.05 or dataset.name=cifar10"
        )
    return path, parse_value(raw)


def parse_value(raw: str) -> Any:
    """``raw`` parsed as JSON when it parses, else the string itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _section(annotation: Any) -> Section:
    """What a field of this type holds: a nested model, a mapping, or a plain value."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _section(inner[0]) if len(inner) == 1 else None
    if origin is dict or annotation is dict:
        return dict
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def resolve(model: type[BaseModel], path: str, extra: Collection[str] = ()) -> Keys:
    """The keys of ``path`` in a spec of type ``model`` (whose top level also takes the
    plain fields ``extra``); SpecError naming the fields there are when it names none."""
    parts = path.split(".")
    keys: list[str] = []
    section: Section = model
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the spec"
        if section is dict:  # a mapping's key may itself hold dots
            return (*keys, ".".join(parts[i:]))
        if section is None or not issubclass(section, BaseModel):
            raise SpecError(f"{path}: {where} is a value, not a section with fields")
        fields = list(section.model_fields) + (list(extra) if i == 0 else [])
        if part not in fields:
            unknown = ".".join(parts[: i + 1])
            raise SpecError(f"unknown field {unknown!r}; {where} has: {', '.join(fields)}")
        keys.append(part)
        info = section.model_fields.get(part)
        section = None if info is None else _section(info.annotation)
    return tuple(keys)


def assign(spec: dict[str, Any], keys: Keys, value: Any) -> None:
    """Set ``spec[k1][k2]... = value`` in place, creating sections on the way; a mapping
    ``value`` is merged into the mapping already there."""
    *sections, last = keys
    for key in sections:
        if not isinstance(spec.get(key), dict):
            spec[key] = {}
        spec = spec[key]
    current = spec.get(last)
    if isinstance(value, dict) and isinstance(current, dict):
        spec[last] = deep_merge(current, value)
    else:
        spec[last] = value
