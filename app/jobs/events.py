"""Server-sent events for one job: status, progress and metric events, resumable by id.

The framing is written here, not taken from FastAPI's `EventSourceResponse` (fastapi.sse) or
sse-starlette, on purpose:
- The events of one poll are formatted once, by the job's feed (app/jobs/streams.py), and the
  same text goes to every subscriber as one write. FastAPI's SSE path runs each yielded item
  through a pydantic `ServerSentEvent` and `jsonable_encoder`, per subscriber, with two extra
  tasks and two memory streams per stream: the per-watcher CPU this module exists to cut.
- Shutdown: FastAPI's response does nothing at shutdown; sse-starlette has shutdown handling
  of its own but is a new dependency for what `lifespan` below does in a few lines. Neither
  knows the resumable cursor: `id:` on every event, `Last-Event-ID`/`after` and the replay are
  ours either way, and so are the stream cap (503 before any byte is sent) and the
  slow-subscriber cut-off.
- What they would add is the 7-line `format_event` below and a keepalive comment, both here.
"""
from __future__ import annotations

import asyncio
import json
import math
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.config import get_settings
from app.jobs.streams import KEEPALIVE_SECONDS, StreamHub

__all__ = ["KEEPALIVE_SECONDS", "EventStream", "format_event", "hub_of", "json_safe", "lifespan"]

# Seconds a client refused for the stream cap should wait (sent as Retry-After).
STREAMS_RETRY_AFTER = 5
_hub_lock = threading.Lock()


def json_safe(value: Any) -> Any:
    """NaN and infinities (a diverged loss) become null: bare NaN is not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def format_event(event: str, data: Any, event_id: int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(json_safe(data), separators=(',', ':'), default=str, allow_nan=False)}")
    return "\n".join(lines) + "\n\n"


def hub_of(app: FastAPI) -> StreamHub:
    """The app's stream hub (one per web process), made on first use."""
    with _hub_lock:
        hub = getattr(app.state, "event_hub", None)
        if hub is None:
            settings = get_settings()
            hub = app.state.event_hub = StreamHub(settings.max_streams,
                                                  settings.sse_poll_seconds, format_event)
        return hub


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Ends every event stream as soon as SIGTERM/SIGINT arrives, not after them.

    uvicorn waits for open responses to finish before it runs the lifespan's shutdown, and an
    event stream of a running job does not finish by itself: so the hub is told at the
    signal, chained in front of uvicorn's own handler, and the streams end at once.
    """
    hub = hub_of(app)
    loop = asyncio.get_running_loop()
    restore = _chain_exit_signals(lambda: loop.call_soon_threadsafe(hub.close))
    try:
        yield
    finally:
        restore()
        hub.close()


def _chain_exit_signals(on_exit: Callable[[], object]) -> Callable[[], None]:
    """Runs on_exit, then the handler already installed (uvicorn's), on SIGTERM and SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # a test client's loop thread: no signals there
    chained = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue  # default or ignored: nothing of uvicorn's to keep

        def handler(signum: int, frame: FrameType | None, previous=previous) -> None:
            on_exit()
            previous(signum, frame)

        signal.signal(sig, handler)
        chained[sig] = (handler, previous)

    def restore() -> None:
        for sig, (handler, previous) in chained.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)

    return restore


class EventStream(StreamingResponse):
    """The event stream of one subscriber; gives its slot back however the response ends."""

    def __init__(self, hub: StreamHub, job_id: int, cursor: int):
        self.hub = hub
        events: AsyncIterator[str] = hub.stream(job_id, cursor)
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.release()
