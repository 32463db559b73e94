"""HTTP-level middleware: the request body size cap (413 before the body is read when
Content-Length is too large, and as soon as a streamed body passes it), and a complete
``Allow`` header on 405."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
