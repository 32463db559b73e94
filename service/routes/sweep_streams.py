"""/sweeps/{id}/stream: a sweep's live view as server-sent events (sse-starlette).

A sweep's page shows a whole picture (its state, every trial's state and curve, the best
trial), so its stream sends the picture, not the rows: ``sweep`` (exactly the JSON of
``GET /sweeps/{id}?max_points=200``) at once and whenever anything it shows changes, and
``end`` once the sweep is terminal. What counts as a change is one cheap query
(``reads.sweep_version``) each ``RECU_API_STREAM_POLL_S``; the view is built only when it
differs. Each event is whole, so a client that reconnects gets the current picture at once
(its ``Last-Event-ID`` is not needed). Slots, readers and keep-alives are the job
stream's (``service.routes.streams``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from recu_db import reads
from recu_db.models import Job
from recu_db.states import JobKind
from service.auth import can_see
from service.deps import Id, PrincipalDep, ReadSessionMakerDep, SettingsDep
from service.limits import STREAM_SUFFIX
from service.responses import NOT_FOUND
from service.routes.streams import EVENT_STREAM, StreamSlots, event, open_stream
from service.routes.sweeps import sweep_detail
from service.sweep_schemas import SweepDetail

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

#: Epochs per trial curve in a ``sweep`` event (as the dashboard asks of GET /sweeps/{id}).
MAX_POINTS = 200


def _read(makers: Any, sweep_id: int, shown: tuple[Any, ...] | None) -> tuple[Any, Any]:
    """The sweep's version now, and its view when that differs from ``shown``."""
    with makers() as session:
        version = reads.sweep_version(session, sweep_id)
        if version is None or version == shown:
            return version, None
        sweep = session.get(Job, sweep_id)
        return version, None if sweep is None else sweep_detail(session, sweep, MAX_POINTS)


async def _events(
    makers: Any, sweep_id: int, poll_s: float, slots: StreamSlots, release: Callable[[], None]
) -> AsyncIterator[ServerSentEvent]:
    try:
        shown: tuple[Any, ...] | None = None
        sent = 0
        while True:
            version, view = await anyio.to_thread.run_sync(
                _read, makers, sweep_id, shown, limiter=slots.readers
            )
            if version is None:  # deleted while followed
                return
            if isinstance(view, SweepDetail):
                shown, sent = version, sent + 1
                yield event("sweep", view.model_dump(mode="json"), sent)
                if view.terminal:
                    yield event("end", {"state": view.state}, sent)
                    return
            await anyio.sleep(poll_s)
    finally:
        release()


@router.get(
    "/{sweep_id}" + STREAM_SUFFIX,
    response_class=EventSourceResponse,
    responses={
        **NOT_FOUND,
        **EVENT_STREAM,
    },
)
async def stream_sweep(
    sweep_id: Id,
    request: Request,
    makers: ReadSessionMakerDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> EventSourceResponse:
    """The sweep's live view (server-sent events): ``sweep`` (as ``GET /sweeps/{id}?
    max_points=200``) at once and on every change, then ``end`` when it is terminal."""
    slots: StreamSlots = request.app.state.streams

    def visible() -> bool:
        with makers() as session:
            sweep = session.get(Job, sweep_id)
            return sweep is not None and sweep.kind == JobKind.SWEEP and can_see(principal, sweep)

    return await open_stream(
        slots,
        visible,
        f"no sweep {sweep_id}",
        lambda release: _events(makers, sweep_id, settings.api_stream_poll_s, slots, release),
    )
