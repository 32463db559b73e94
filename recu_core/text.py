"""Text the contract accepts: every free string of a job or sweep spec is a ``SafeStr``.

A string reaches the queue's JSON column, PostgreSQL's JSON functions, the listings and
every client, so it is checked once, here, for every field: no C0 control character
(U+0000 to U+001F: PostgreSQL cannot store NUL in text, and none belongs in a path, a
device or a searched value) and no lone UTF-16 surrogate (U+D800 to U+DFFF: JSON's
``\\ud800`` escape decodes to one, and it is not Unicode text: it cannot be encoded as
UTF-8, so it breaks every response and query that carries it). The error names the
character and its position; the field is named by the validation error's ``loc``.
The JSON schema states the same rule as a ``pattern`` (generators of valid data,
schemathesis' included, then never send what is refused). Importing this module does not
import torch.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Discriminator,
    GetJsonSchemaHandler,
    StringConstraints,
    Tag,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

#: What the JSON schema says of every SafeStr: no C0 control characters (surrogates are no
#: JSON text either: a valid document's strings never hold a lone one).
PATTERN = r"^[^\x00-\x1F]*$"
_UNSAFE = re.compile("[\x00-\x1f\ud800-\udfff]")


def unsafe_character(value: str) -> str | None:
    """Why ``value`` is refused (its first control character or lone surrogate), or None."""
    found = _UNSAFE.search(value)
    if found is None:
        return None
    char, index = found.group(), found.start()
    code = f"U+{ord(char):04X}"
    if char == "\x00":
        return f"contains NUL ({code}) at index {index}; NUL is not allowed in text"
    if char < " ":
        return f"contains the control character {code} at index {index}; none is allowed"
    return (
        f"contains a lone UTF-16 surrogate ({code}) at index {index}: not valid Unicode "
        "text (a surrogate pair must encode one character)"
    )


def check_text(value: Any) -> Any:
    """``value`` unchanged, or ValueError saying which character is not allowed where.
    Runs before the string's own validation (whose error for a surrogate says nothing
    useful), so anything but a string passes on to it."""
    problem = unsafe_character(value) if isinstance(value, str) else None
    if problem is not None:
        raise ValueError(f"the text {problem}")
    return value


class _TextJsonSchema:
    """Adds the SafeStr ``pattern`` to the JSON schema of the string it annotates."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core_schema)
        schema.setdefault("pattern", PATTERN)
        return schema


#: A string without control characters or lone surrogates.
SafeStr = Annotated[str, BeforeValidator(check_text), _TextJsonSchema()]
#: A SafeStr naming a file or folder: at most 1024 characters.
PathStr = Annotated[
    str, StringConstraints(max_length=1024), BeforeValidator(check_text), _TextJsonSchema()
]
#: A SafeStr a sweep searches over (one of a dimension's listed values): at most 200.
ValueStr = Annotated[
    str, StringConstraints(max_length=200), BeforeValidator(check_text), _TextJsonSchema()
]


def _scalar_kind(value: Any) -> str | None:
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return "bool"
    for kind, cls in (("int", int), ("float", float), ("str", str)):
        if isinstance(value, cls):
            return kind
    return None


#: One value of a searched field: a boolean, a number or a ValueStr (never null, a list
#: or an object). Tagged by its Python type, so an error names one alternative; the JSON
#: schema is an anyOf (a oneOf would refuse an integer, which is also a number).
Scalar = Annotated[
    Annotated[bool, Tag("bool")]
    | Annotated[int, Tag("int")]
    | Annotated[float, Tag("float")]
    | Annotated[ValueStr, Tag("str")],
    Discriminator(
        _scalar_kind,
        custom_error_type="scalar_type",
        custom_error_message="a searched value is a boolean, a number or a string",
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "number"},
                {"type": "string", "maxLength": 200, "pattern": PATTERN},
            ]
        }
    ),
]


def percent(fraction: float | None) -> str:
    """An accuracy (a fraction everywhere it is stored and served) as people are shown it,
    in the CLI, the worker's log lines and the dashboard: ``0.9134`` -> ``91.3%``."""
    return "" if fraction is None else f"{100 * fraction:.1f}%"
