"""Bearer-token authentication and ownership.

Every route but the health checks depends on ``service.deps.current_principal``: a
request without a live token is 401. A live token's look-up is kept for
``RECU_AUTH_CACHE_S`` seconds (``service.token_cache``; 5 by default): a revoked token
stops working within that bound. A bearer or cookie token of the wrong shape (NUL, a lone
surrogate, another alphabet or length) is 401 like an unknown one, before any query:
``recu_db.tokens.authenticate`` checks ``token_shape`` first, for every caller here and
in the dashboard's routes. The API's description (``/openapi.json``, ``/docs``,
``/redoc``) is public on purpose: it holds no data (docs/reliability.md, Security).

With ``RECU_AUTH_DISABLED=true`` (development only; the service logs a warning at
start-up and on every response sets ``X-Recu-Auth: disabled``) every request acts as
the admin user "local". A job, sweep or checkpoint is visible only to its owner
and to admins; to anyone else it does not exist (404, never 403: no existence leak).

The web dashboard signs in once (``POST /ui/session``) and then sends the same token in an
HttpOnly, SameSite=Strict session cookie. A request that authenticates by that cookie and
changes anything (any method but GET/HEAD/OPTIONS) must also carry the header
``X-Recu-Dashboard: 1``: a cross-site form cannot set it, so the cookie alone never
cancels a job (CSRF).
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Row
from sqlalchemy.orm import Session

from recu_db.models import Job
from recu_db.tokens import Principal, authenticate

DEV_USER = "local"
SESSION_COOKIE = "recu_session"
CSRF_HEADER = "X-Recu-Dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `recu token create NAME` (shown once at creation).",
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def request_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The request's bearer token, else its session cookie (a state-changing cookie
    request must carry the CSRF header); 401 without either."""
    token = credentials.credentials if credentials is not None else None
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
        if token is None:
            raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"a session-cookie request that changes state needs '{CSRF_HEADER}: 1'",
            )
    return token


def looked_up(token: str, session: Session) -> Principal:
    """The principal of a live token, looked up on ``session``; 401 for anything else."""
    principal = authenticate(session, token)
    if principal is None:
        raise _unauthorized("invalid or revoked token")
    return principal


def owner_filter(principal: Principal) -> int | None:
    """The user id a listing is restricted to; None (everyone's) for an admin."""
    return None if principal.admin else principal.user_id


def can_see(principal: Principal, job: Job | Row[Any]) -> bool:
    return principal.admin or job.user_id == principal.user_id
