"""Request dependencies: a session per request and validating lookups (404 in one place).

One database connection per request at a time: the token is looked up (when the token
cache does not know it already, ``service.token_cache``) on a short session of its own,
closed (its connection back in the pool) before the handler's session takes one, and
the handler's session is closed when the handler returns, before the response is sent
(``scope="function"``), so a slow client never holds a connection. With the admission
limit (``service.limits.AdmissionLimit``, at most pool + overflow requests at once) an
admitted request never waits for a connection another admitted one holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

import anyio.to_thread
from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.orm import Session, sessionmaker

from recu_db.models import Checkpoint, Job
from recu_db.tokens import Principal
from service.auth import bearer, can_see, looked_up, request_token
from service.config import ServiceSettings
from service.token_cache import TokenCache

# The plain accessors are ``async``: FastAPI runs a sync dependency on a worker thread
# (a thread hop each); these only read app.state.


async def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessionmaker


async def get_read_sessionmaker(request: Request) -> sessionmaker[Session]:
    return request.app.state.read_sessionmaker


async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_session(
    makers: Annotated[sessionmaker[Session], Depends(get_read_sessionmaker)],
) -> Iterator[Session]:
    """A read-only session per request (on SQLite it never takes the write lock), closed
    when the handler returns; every write goes through a ``recu_db`` function in a short
    transaction of its own."""
    with makers() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
T = TypeVar("T")


async def in_thread(work: Callable[[], T]) -> T:
    """Run a route's blocking work (its session, statements and response model) on a
    worker thread in one hop. The hot routes are ``async def`` and call this once: a sync
    route costs FastAPI a hop for the handler, one for its response's validation and two
    for a generator dependency's session (bench/framework_floor.py: a bare sync endpoint
    serves half what an async one does on this stack)."""
    return await anyio.to_thread.run_sync(work)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    makers: Annotated[sessionmaker[Session], Depends(get_read_sessionmaker)],
) -> Principal:
    """The caller: from the token cache, else its token looked up (on a worker thread) on
    a short read session of its own, closed before the handler's session takes a
    connection (a request never holds two)."""
    dev: Principal | None = request.app.state.dev_principal
    if dev is not None:
        return dev
    token = request_token(request, credentials)
    cache: TokenCache = request.app.state.token_cache
    principal = cache.get(token)
    if principal is None:

        def look_up() -> Principal:
            with makers() as session:
                return looked_up(token, session)

        principal = await anyio.to_thread.run_sync(look_up)
        cache.put(token, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
Id = Annotated[int, Path(ge=1, le=2**31 - 1, description="A row id (a 32-bit integer).")]
SessionMakerDep = Annotated[sessionmaker[Session], Depends(get_sessionmaker)]
ReadSessionMakerDep = Annotated[sessionmaker[Session], Depends(get_read_sessionmaker)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]


def existing_job(job_id: Id, session: SessionDep, principal: PrincipalDep) -> Job:
    """The job, when it exists and the caller may see it (else 404, also for another
    user's job)."""
    job = session.get(Job, job_id)
    if job is None or not can_see(principal, job):
        raise HTTPException(status_code=404, detail=f"no job {job_id}")
    return job


def existing_checkpoint(
    checkpoint_id: Id, session: SessionDep, principal: PrincipalDep
) -> Checkpoint:
    """The checkpoint, when its job is the caller's (or the caller is an admin)."""
    ckpt = session.get(Checkpoint, checkpoint_id)
    job = session.get(Job, ckpt.job_id) if ckpt is not None else None
    if ckpt is None or job is None or not can_see(principal, job):
        raise HTTPException(status_code=404, detail=f"no checkpoint {checkpoint_id}")
    return ckpt


JobDep = Annotated[Job, Depends(existing_job)]
CheckpointDep = Annotated[Checkpoint, Depends(existing_checkpoint)]
