"""A short-lived, bounded cache of token look-ups: most requests authenticate without a
database round trip.

Only live tokens are kept (an unknown, malformed or revoked token is looked up every
time, so guessing cannot fill the cache), keyed by the sha256 of the whole token (the
token itself is never held), for at most ``ttl_s`` seconds from the look-up that found
it (``RECU_AUTH_CACHE_S``; 0 turns the cache off). That is the bound: a token revoked
(or a user demoted) at time t stops working in every API process by t + ttl_s, since
an entry found before t expires by then and a look-up after t finds the revocation. At
most ``max_entries`` tokens are kept (least recently used dropped first).
"""

from __future__ import annotations

import hashlib
import threading
import time

from cachetools import TTLCache

from recu_db.tokens import Principal


class TokenCache:
    """token -> Principal for ``ttl_s`` seconds after the look-up; thread-safe."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._entries: TTLCache[bytes, Principal] | None = (
            TTLCache(maxsize=max_entries, ttl=ttl_s, timer=time.monotonic) if ttl_s > 0 else None
        )
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str) -> Principal | None:
        if self._entries is None:
            return None
        with self._lock:
            return self._entries.get(self._key(token))

    def put(self, token: str, principal: Principal) -> None:
        if self._entries is None:
            return
        with self._lock:
            self._entries[self._key(token)] = principal
