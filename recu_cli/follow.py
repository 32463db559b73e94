"""Following a job on its live stream (``GET /jobs/{id}/stream``, server-sent events read
with httpx-sse), re-attaching after a dropped connection or an API restart.

Every event's id is the stream's cursor; on a reconnect the client sends the last one as
``Last-Event-ID`` and the service resumes after it, so nothing is shown twice or lost.
While the API cannot be reached (or answers 5xx) the follower retries (1 s, then up to
5 s apart, saying so once on stderr) for up to ``REATTACH_S``; a refusal (4xx) ends it
at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse import connect_sse
from rich.console import Console

#: How long a follower keeps trying to reach a restarting API before it gives up.
REATTACH_S = 600.0
#: No byte for this long (the service pings every 15 s) means the connection is dead.
READ_TIMEOUT_S = 45.0

errors = Console(stderr=True)


class FollowError(RuntimeError):
    """The stream was refused, or the API stayed out of reach for ``REATTACH_S``."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


def follow(
    client: httpx.Client,
    job_id: int,
    on_event: Callable[[str, dict[str, Any]], bool],
    *,
    reattach_s: float = REATTACH_S,
) -> None:
    """Read the job's stream, calling ``on_event(kind, data)`` for each event, until the
    ``end`` event or until ``on_event`` returns True (the caller has seen enough)."""
    cursor: str | None = None
    lost_at: float | None = None
    delay = 1.0
    while True:
        headers = {"Last-Event-ID": cursor} if cursor else {}
        try:
            with connect_sse(
                client,
                "GET",
                f"/jobs/{job_id}/stream",
                headers=headers,
                timeout=(30.0, READ_TIMEOUT_S, 30.0, 30.0),  # connect, read, write, pool
            ) as source:
                if source.response.status_code >= 500:  # restarting, or its streams full
                    raise httpx.RemoteProtocolError(f"HTTP {source.response.status_code}")
                if source.response.status_code >= 400:
                    source.response.read()
                    raise FollowError("the stream was refused", source.response)
                if lost_at is not None:
                    errors.print(f"re-attached to job {job_id}")
                lost_at, delay = None, 1.0
                for sse in source.iter_sse():
                    if sse.id:
                        cursor = sse.id
                    if on_event(sse.event, json.loads(sse.data)) or sse.event == "end":
                        return
        except httpx.TransportError as err:
            now = time.monotonic()
            if lost_at is None:
                lost_at = now
                errors.print(
                    f"lost the service ({type(err).__name__}); re-attaching to job {job_id}"
                )
            if now - lost_at > reattach_s:
                raise FollowError(
                    f"the service stayed out of reach for {reattach_s:.0f} s"
                ) from err
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        # a stream that closed without its end event (the API stopped): read it again
