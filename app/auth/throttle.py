"""A cap on wrong tokens per client address (login form and bearer tokens alike).

TUNEDECK_AUTH_FAILURES_PER_MINUTE of them, then 429 with Retry-After until the minute ends.
In-process (one FailureLimiter per app, app.state.auth_failures): each web process counts on
its own, so `serve --workers N` allows up to N times the limit, and a restart forgets them. Enough to turn guessing from thousands of tries
a second into a few a minute. Behind a proxy every client has the proxy's address unless
uvicorn trusts its X-Forwarded-For (it does for a proxy on 127.0.0.1; FORWARDED_ALLOW_IPS
names others), so one guesser can then lock everyone out for a minute at a time.
"""
from __future__ import annotations

import math
import threading
import time

WINDOW_SECONDS = 60.0
MAX_CLIENTS = 10_000  # forget the oldest windows beyond this, so memory stays bounded


class FailureLimiter:
    """Fixed windows: `failures` wrong tokens from one address within WINDOW_SECONDS, then
    every request from it waits for the window to end (right token or not, so a guess that
    happens to be right cannot be told apart)."""

    def __init__(self, failures: int, window: float = WINDOW_SECONDS):
        self.failures = failures
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it may now."""
        found = self._windows.get(client)
        if found is None or found[1] < self.failures:
            return None
        left = found[0] + self.window - time.monotonic()
        return math.ceil(left) if left > 0 else None

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            start, count = self._windows.get(client, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            self._windows[client] = (start, count + 1)
            if len(self._windows) > MAX_CLIENTS:
                self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        for key, (start, _) in list(self._windows.items()):
            if now - start >= self.window:
                del self._windows[key]
        while len(self._windows) > MAX_CLIENTS:
            del self._windows[next(iter(self._windows))]

