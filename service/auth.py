"""Bearer-token authentication and ownership.

Every route but the health checks depends on ``service.deps.current_principal``: a request without a
live token is 401. With ``RECU_AUTH_DISABLED=true`` (development only; the service logs a
warning at start-up and on every response sets ``X-Recu-Auth: disabled``) every request
acts as the admin user "local". A job, sweep or checkpoint is visible only to its owner
and to admins; to anyone else it does not exist (404, never 403: no existence leak).
"""

from __future__ import annotations

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from recu_db.models import Job
from recu_db.tokens import Principal, authenticate

DEV_USER = "local"

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


def principal_for(
    request: Request, credentials: HTTPAuthorizationCredentials | None, session: Session
) -> Principal:
    """Who the request acts for (its token looked up on ``session``); 401 without one."""
    dev: Principal | None = request.app.state.dev_principal
    if dev is not None:
        return dev
    if credentials is None:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = authenticate(session, credentials.credentials)
    if principal is None:
        raise _unauthorized("invalid or revoked token")
    return principal


def owner_filter(principal: Principal) -> int | None:
    """The user id a listing is restricted to; None (everyone's) for an admin."""
    return None if principal.admin else principal.user_id


def can_see(principal: Principal, job: Job) -> bool:
    return principal.admin or job.user_id == principal.user_id
