"""HTTP-level middleware: the request body size cap (413 before the body is read when
Content-Length is too large, and as soon as a streamed body passes it), a complete
``Allow`` header on 405, the admission limit (503 with Retry-After beyond the requests
the database pool can serve) and the optional rate ceiling (requests paced to a rate)."""

from __future__ import annotations

import asyncio
import re
from collections import deque

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The path suffix of the live streams (``service/routes/streams.py``).
STREAM_SUFFIX = "/stream"


class BodySizeLimit:
    """Pure ASGI middleware (no buffering): checks Content-Length, counts streamed bytes."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request body larger than the limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                response = JSONResponse({"detail": self._detail()}, status_code=413)
                await response(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI re-raises this as the response
                    raise HTTPException(status_code=413, detail=self._detail())
            return message

        await self.app(scope, limited_receive, send)


class AllowHeader:
    """On a 405, ``Allow`` lists every method of the path (Starlette lists only those of
    the first route that matched the path, e.g. POST for /jobs, though GET exists too)."""

    def __init__(self, app: ASGIApp, methods_by_path: dict[str, set[str]]) -> None:
        self.app = app
        self.patterns = [
            (re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"), methods)
            for path, methods in methods_by_path.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def fixed(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed: set[str] = set()
                for pattern, methods in self.patterns:
                    if pattern.match(scope["path"]):
                        allowed |= methods
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"allow"]
                message["headers"] = [*headers, (b"allow", ", ".join(sorted(allowed)).encode())]
            await send(message)

        await self.app(scope, receive, fixed)


class AdmissionLimit:
    """Back-pressure: at most ``limit`` requests in the application at once (the pool's
    connections: each admitted request holds at most one, and one thread). A request
    beyond waits for a slot on the event loop, holding no thread and no connection, in
    arrival order, for at most ``wait_s`` seconds; then it is answered 503 with
    Retry-After before anything of it ran (a POST so refused stored nothing). The health
    checks bypass it. A slot is held until the response is sent."""

    EXEMPT = frozenset({"/healthz", "/readyz"})
    RETRY_AFTER_S = 2

    @classmethod
    def exempt(cls, path: str) -> bool:
        """The health checks, and the live streams (``/stream``: long-lived, capped on
        their own by ``StreamSlots``; each read takes a connection only for itself)."""
        return path in cls.EXEMPT or path.endswith(STREAM_SUFFIX)

    def __init__(self, app: ASGIApp, *, limit: int, wait_s: float) -> None:
        self.app = app
        self.limit = limit
        self.wait_s = wait_s
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def _admit(self) -> bool:
        if self.in_flight < self.limit and not self.waiters:
            self.in_flight += 1
            return True
        if self.wait_s <= 0:
            return False
        slot = asyncio.get_running_loop().create_future()
        self.waiters.append(slot)
        try:
            await asyncio.wait_for(asyncio.shield(slot), self.wait_s)
        except BaseException as err:  # time-out, or the client went away (cancelled)
            if slot.done() and not slot.cancelled():  # handed a slot as it gave up
                if isinstance(err, TimeoutError):
                    return True
                self._release()
                raise
            slot.cancel()
            self.waiters.remove(slot)
            if isinstance(err, TimeoutError):
                return False
            raise
        return True

    def _release(self) -> None:
        while self.waiters:
            slot = self.waiters.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes on: in_flight unchanged
                return
        self.in_flight -= 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not await self._admit():
            response = JSONResponse(
                {"detail": f"the service is busy ({self.limit} requests in flight); retry"},
                status_code=503,
                headers={"Retry-After": str(self.RETRY_AFTER_S)},
            )
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()


class RatePace:
    """A ceiling on the requests one API process starts per second, so the API (and the
    database work its requests cause) cannot take more than a bounded share of a
    machine it shares with training: CPU share ~ ``rate`` x CPU seconds per request.

    Requests are paced, not dropped (GCRA, virtual scheduling): the n-th request after a
    quiet spell starts at ``next_start``, which advances ``1 / rate`` per request; one
    that would wait longer than ``wait_s`` is answered 503 with Retry-After at once
    (nothing of it ran). A waiting request holds no thread, no connection and no CPU.
    The health checks and the live streams bypass it."""

    RETRY_AFTER_S = 1

    def __init__(self, app: ASGIApp, *, rate: float, wait_s: float) -> None:
        self.app = app
        self.interval = 1.0 / rate
        self.wait_s = wait_s
        self.next_start = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or AdmissionLimit.exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self.next_start)
        if start - now > self.wait_s:
            response = JSONResponse(
                {"detail": f"the service is paced to {1 / self.interval:g} requests/s; retry"},
                status_code=503,
                headers={"Retry-After": str(self.RETRY_AFTER_S)},
            )
            await response(scope, receive, send)
            return
        self.next_start = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)
        await self.app(scope, receive, send)
