"""/jobs/{id}/stream: a job's live events as server-sent events (sse-starlette).

The stream sends, in order: ``state`` (the job as ``GET /jobs/{id}`` shows it) at once and
whenever its state, attempt, epoch, pending reason or error changes; ``event`` (a state
transition), ``epoch`` (an epoch's metrics), ``log`` (a line of output) and
``checkpoint`` (a stored checkpoint) as they are committed; and ``end`` once the job is
terminal and everything before it was sent, after which the server closes the stream.
Every event's id is a cursor (``recu_db.feed``): a client that reconnects with
``Last-Event-ID`` (browsers' EventSource do it themselves) gets what came after it and
nothing twice. The database is read every ``RECU_API_STREAM_POLL_S`` (0.5 s) on one of
``READERS`` threads, each read on a short session of its own: an open stream holds no
thread or connection between reads and sits outside the admission limit; at most
``RECU_API_MAX_STREAMS`` are open per API process (503 + Retry-After beyond).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Header, HTTPException, Request, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from recu_db import reads
from recu_db.feed import BadCursorError, Cursor, Item, changes
from service.auth import can_see
from service.deps import Id, PrincipalDep, ReadSessionMakerDep, SettingsDep
from service.limits import STREAM_SUFFIX
from service.pending import pending_reasons
from service.responses import NOT_FOUND, error_description
from service.routes.jobs import view_public
from service.schemas import JobPublic

router = APIRouter(prefix="/jobs", tags=["jobs"])

#: Threads the streams of one process read the database on (their own, so streams never
#: take the threads of admitted requests).
READERS = 4
#: Seconds between keep-alive comments on a quiet stream (proxies close idle ones).
PING_S = 15
#: What a change of the job's ``state`` event is judged by.
_WATCHED = ("state", "attempt", "current_epoch", "pending_reason", "error")


class StreamSlots:
    """How many streams this process has open, and the bound on them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.readers = anyio.CapacityLimiter(READERS)

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1

    def holder(self) -> Callable[[], None]:
        """A taken slot's release, safe to call more than once (the stream's end and the
        response's background task both call it: either may be skipped, by a generator
        never started or a response that raised)."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.give_back()

        return release


def _view(makers: Any, job_id: int) -> JobPublic | None:
    with makers() as session:
        row = reads.job_view(session, job_id)
        return None if row is None else view_public(row, pending_reasons(session, [row]))


def _read(makers: Any, job_id: int, cursor: Cursor) -> tuple[JobPublic | None, list[Item], bool]:
    """The job now and what came after ``cursor``. The view is read first: rows committed
    between the two reads are sent now, and a terminal state is final only once a read
    after it finds nothing more."""
    view = _view(makers, job_id)
    with makers() as session:
        items, more = changes(session, job_id, cursor)
    return view, items, more


def event(kind: str, data: Any, cursor: object) -> ServerSentEvent:
    """One server-sent event: its kind, its data as JSON, and its id (``str(cursor)``)."""
    return ServerSentEvent(data=orjson.dumps(data).decode(), event=kind, id=str(cursor))


#: The OpenAPI entry of a stream's answer.
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}
}


async def open_stream(
    slots: StreamSlots,
    visible: Callable[[], bool],
    missing: str,
    events: Callable[[Callable[[], None]], AsyncIterator[ServerSentEvent]],
) -> EventSourceResponse:
    """A stream's response: 404 ``missing`` unless ``visible()`` (read on a stream reader
    thread), then a slot of this process (503 when none is free) and ``events(release)``,
    kept alive by pings; the slot is given back when the stream ends either way."""
    if not await anyio.to_thread.run_sync(visible, limiter=slots.readers):
        raise HTTPException(status_code=404, detail=missing)
    release = take_slot(slots)
    return EventSourceResponse(events(release), ping=PING_S, background=BackgroundTask(release))


def take_slot(slots: StreamSlots) -> Callable[[], None]:
    """A stream slot of this process, and its release; 503 + Retry-After when all are
    taken."""
    if not slots.take():
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"{slots.limit} live streams are open (RECU_API_MAX_STREAMS); retry",
            headers={"Retry-After": "5"},
        )
    return slots.holder()


async def _events(
    makers: Any,
    job_id: int,
    cursor: Cursor,
    poll_s: float,
    slots: StreamSlots,
    release: Callable[[], None],
) -> AsyncIterator[ServerSentEvent]:
    try:
        shown: tuple[Any, ...] | None = None
        while True:
            view, items, more = await anyio.to_thread.run_sync(
                _read, makers, job_id, cursor, limiter=slots.readers
            )
            if view is None:  # deleted while followed
                return
            for item in items:
                cursor = item.cursor
                yield event(item.kind, item.data, cursor)
            watched = tuple(getattr(view, name) for name in _WATCHED)
            if watched != shown:
                shown = watched
                yield event("state", view.model_dump(mode="json"), cursor)
            if view.terminal and not items:
                yield event("end", {"state": view.state}, cursor)
                return
            if not more:
                await anyio.sleep(poll_s)
    finally:
        release()


@router.get(
    "/{job_id}" + STREAM_SUFFIX,
    response_class=EventSourceResponse,
    responses={
        **NOT_FOUND,
        **EVENT_STREAM,
        400: error_description("Last-Event-ID is not a cursor of this stream."),
    },
)
async def stream_job(
    job_id: Id,
    request: Request,
    makers: ReadSessionMakerDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> EventSourceResponse:
    """The job's live events (server-sent events): ``state``, ``event``, ``epoch``,
    ``log``, ``checkpoint``, then ``end`` when it is terminal; resumable with
    ``Last-Event-ID`` (every event's id is the cursor after it)."""
    try:
        cursor = Cursor.parse(last_event_id)
    except BadCursorError as err:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(err)) from None
    slots: StreamSlots = request.app.state.streams

    def visible() -> bool:
        with makers() as session:
            row = reads.job_view(session, job_id)
            return row is not None and can_see(principal, row)

    return await open_stream(
        slots,
        visible,
        f"no job {job_id}",
        lambda release: _events(makers, job_id, cursor, settings.api_stream_poll_s, slots, release),
    )
