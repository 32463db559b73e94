"""Users and their API tokens.

A token reads ``recu_<key_id>_<secret>``: ``key_id`` (12 hex digits) finds the row, the
secret (256 random bits, 43 characters of the URL-safe base64 alphabet) is stored only
as its sha256 and compared in constant time. A string of any other shape (NUL, a lone
surrogate, anything off that alphabet or those lengths) is refused before any query,
like an unknown token. A
fast hash is enough for a random 256-bit secret (there is no dictionary to guess from);
the token itself is shown once, at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from recu_db.models import ApiToken, User
from recu_db.queue import Db, utcnow

PREFIX = "recu_"
ROLES = ("user", "admin")
_DUMMY_SHA = hashlib.sha256(b"").hexdigest()
KEY_ID_HEX = 12  # secrets.token_hex(6)
SECRET_CHARS = 43  # secrets.token_urlsafe(32): 32 bytes, base64url without padding
TOKEN_SHAPE = re.compile(
    rf"{PREFIX}(?P<key_id>[0-9a-f]{{{KEY_ID_HEX}}})_(?P<secret>[A-Za-z0-9_-]{{{SECRET_CHARS}}})",
    re.ASCII,
)


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    user_id: int
    name: str
    admin: bool


@dataclass(frozen=True)
class TokenInfo:
    name: str
    user: str
    role: str
    key_id: str
    created_at: datetime
    revoked_at: datetime | None


class TokenError(ValueError):
    """A token command that cannot be done (the message says why)."""


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ensure_user(db: Db, name: str, role: str = "user") -> Principal:
    """The user ``name``, created with ``role`` when missing (an existing user keeps its
    role unless ``role`` is "admin", which promotes it)."""
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    for _ in range(2):  # a concurrent creator may win the unique name; then read theirs
        try:
            with db.begin() as session:
                user = session.scalars(select(User).where(User.name == name)).one_or_none()
                if user is None:
                    user = User(name=name, role=role, created_at=utcnow())
                    session.add(user)
                    session.flush()
                elif role == "admin":
                    user.role = "admin"
                return Principal(user.id, user.name, user.role == "admin")
        except IntegrityError:
            continue
    raise TokenError(f"could not create user {name!r}")


def create_token(db: Db, name: str, *, user: str | None = None, admin: bool = False) -> str:
    """A new token called ``name`` for ``user`` (default: a user called ``name``, created
    when missing); returns the token, which is not stored anywhere."""
    if not name or len(name) > 100:
        raise TokenError("a token name has 1 to 100 characters")
    owner = ensure_user(db, user or name, "admin" if admin else "user")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    try:
        with db.begin() as session:
            session.add(
                ApiToken(
                    user_id=owner.user_id,
                    name=name,
                    key_id=key_id,
                    secret_sha256=_sha(secret),
                    created_at=utcnow(),
                )
            )
    except IntegrityError:
        raise TokenError(
            f"a token called {name!r} exists already; revoke it or pick another name"
        ) from None
    return f"{PREFIX}{key_id}_{secret}"


def revoke_token(db: Db, name: str) -> bool:
    """Revoke the token called ``name``; False when there is no such live token."""
    with db.begin() as session:
        token = session.scalars(
            select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        ).one_or_none()
        if token is None:
            return False
        token.revoked_at = utcnow()
        return True


def list_tokens(db: Db) -> list[TokenInfo]:
    with db() as session:
        rows = session.execute(
            select(ApiToken, User).join(User, ApiToken.user_id == User.id).order_by(ApiToken.id)
        ).all()
    return [
        TokenInfo(t.name, u.name, u.role, t.key_id, t.created_at, t.revoked_at) for t, u in rows
    ]


def token_shape(token: object) -> tuple[str, str] | None:
    """(key_id, secret) of a string shaped exactly like a token; None for anything else.
    Checked before any query: the key id is then plain ASCII, fit for any database."""
    shaped = TOKEN_SHAPE.fullmatch(token) if isinstance(token, str) else None
    return None if shaped is None else (shaped["key_id"], shaped["secret"])


def authenticate(session: Session, token: str) -> Principal | None:
    """The principal of a live token; None for anything else (malformed, unknown, revoked).
    A malformed token never reaches the database; the secret's hash is compared in
    constant time, also when the key id is unknown."""
    shape = token_shape(token)
    if shape is None:
        return None
    key_id, secret = shape
    row = session.execute(
        select(ApiToken.secret_sha256, User.id, User.name, User.role)
        .join(User, ApiToken.user_id == User.id)
        .where(ApiToken.key_id == key_id, ApiToken.revoked_at.is_(None))
    ).one_or_none()
    expected = row.secret_sha256 if row is not None else _DUMMY_SHA
    if not hmac.compare_digest(_sha(secret), expected) or row is None:
        return None
    return Principal(row.id, row.name, row.role == "admin")
