"""One poller per watched job per web process, fanned out to every open event stream.

A `Feed` reads the job's snapshot and its new metric points once per poll (one short session
in a thread, released before it waits) and hands the same pre-formatted events to each
subscriber's bounded backlog; a stream holds no database connection while it waits. A
subscriber replays its own history from its cursor (one read per chunk, up to the feed's
position when it joined), then takes the live items, so each point reaches it once, in id
order. The `StreamHub` of the web process counts open streams (TUNEDECK_MAX_STREAMS) and, at
shutdown, ends every stream so the server can stop; clients resume with Last-Event-ID.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from anyio import to_thread

from app.db import session_scope
from app.jobs import repository
from app.jobs.models import Job, JobStatus, MetricPoint
from app.jobs.service import progress_of

log = logging.getLogger(__name__)

BATCH = 2000
# Points a subscriber may have waiting; beyond that it is ended, and its client resumes.
MAX_BACKLOG = 5 * BATCH
KEEPALIVE_SECONDS = 15.0

Format = Callable[[str, object, int | None], str]


@dataclass
class Item:
    """What one poll found: the points' events, then a status or progress event, or the end."""

    points: list[tuple[int, str]]
    last_id: int
    kind: str | None = None  # "status", "progress" or None (nothing changed)
    snapshot: dict | None = None
    text: str = ""  # the status/progress event, with id last_id
    end: dict | None = None


@dataclass(eq=False)
class Subscriber:
    """One open stream: its cursor and the items the feed handed it that it has not sent."""

    cursor: int
    horizon: int | None = None  # the feed's last point id when this subscriber joined it
    joined: dict | None = None  # the feed's snapshot at that moment
    backlog: deque[Item] = field(default_factory=deque)
    waiting: int = 0  # points in the backlog
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: str | None = None  # why the feed let it go: "too slow", "shutdown"

    def push(self, item: Item) -> bool:
        """Queues an item; False (and closed) when the backlog would grow past MAX_BACKLOG."""
        if self.waiting + len(item.points) > MAX_BACKLOG:
            self.close("too slow")
            return False
        self.backlog.append(item)
        self.waiting += len(item.points)
        self.wake.set()
        return True

    def close(self, reason: str) -> None:
        self.closed = self.closed or reason
        self.wake.set()


def _snapshot(job: Job) -> dict:
    return {
        "status": job.status,
        "progress": progress_of(job).model_dump(mode="json"),
        "latest_metrics": job.latest_metrics or {},
        "error": job.error_message,
        "gpu_peak_memory_mb": job.gpu_peak_memory_mb,
        "gpu_utilization": job.gpu_utilization,
    }


def _point(p: MetricPoint) -> dict:
    return {"id": p.id, "name": p.name, "step": p.step, "value": p.value, "epoch": p.epoch}


def read_poll(job_id: int, cursor: int | None) -> tuple[dict | None, list[dict], int]:
    """One read: the snapshot, the points after `cursor` (None: none, just the last id), and
    the last point id. The job is read first: a finished status means its points are in."""
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        if job is None:
            return None, [], cursor or 0
        snapshot = _snapshot(job)
        if cursor is None:
            return snapshot, [], repository.last_metric_id(session, job_id)
        points = [_point(p) for p in
                  repository.metric_points_after_id(session, job_id, cursor, BATCH)]
        return snapshot, points, points[-1]["id"] if points else cursor


def read_points(job_id: int, after: int, upto: int) -> list[dict]:
    """A replay chunk: up to BATCH points with after < id <= upto."""
    with session_scope() as session:
        points = repository.metric_points_after_id(session, job_id, after, BATCH)
        return [_point(p) for p in points if p.id <= upto]


class Feed:
    """The poller of one job: started by its first subscriber, stopped after its last."""

    def __init__(self, hub: StreamHub, job_id: int):
        self.hub, self.job_id = hub, job_id
        self.subscribers: set[Subscriber] = set()
        self.cursor = 0
        self.snapshot: dict | None = None
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)
        if self.ready.is_set():
            sub.horizon, sub.joined = self.cursor, self.snapshot

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            self.stop()

    def stop(self) -> None:
        if self.hub.feeds.get(self.job_id) is self:
            del self.hub.feeds[self.job_id]
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    async def run(self) -> None:
        try:
            await self._run()
        except Exception:  # a database error: end the streams; their clients resume
            log.exception("the event feed of job %s failed", self.job_id)
            self._end_all("poll failed")

    async def _run(self) -> None:
        snapshot, _, self.cursor = await to_thread.run_sync(read_poll, self.job_id, None)
        self.snapshot = snapshot
        for sub in self.subscribers:
            sub.horizon, sub.joined = self.cursor, snapshot
        self.ready.set()
        while self.subscribers:
            if snapshot is None:
                self._fan_out(Item([], self.cursor, end={"reason": "job deleted"}))
                return
            if JobStatus(snapshot["status"]).finished:
                self._fan_out(Item([], self.cursor, end={"status": snapshot["status"]}))
                return
            await asyncio.sleep(self.hub.poll_seconds)
            snapshot, points, cursor = await to_thread.run_sync(read_poll, self.job_id,
                                                                self.cursor)
            self._publish(snapshot, points, cursor)
            if len(points) == BATCH:  # more are waiting: read them before the next wait
                while len(points) == BATCH and self.subscribers:
                    snapshot, points, cursor = await to_thread.run_sync(
                        read_poll, self.job_id, self.cursor)
                    self._publish(snapshot, points, cursor)

    def _publish(self, snapshot: dict | None, points: list[dict], cursor: int) -> None:
        fmt = self.hub.format
        texts = [(p["id"], fmt("metric", p, p["id"])) for p in points]
        self.cursor = cursor
        item = Item(texts, cursor)
        if snapshot is not None and self.snapshot is not None:
            if snapshot["status"] != self.snapshot["status"]:
                item.kind = "status"
            elif snapshot["progress"] != self.snapshot["progress"]:
                item.kind = "progress"
            if item.kind:
                item.snapshot, item.text = snapshot, fmt(item.kind, snapshot, cursor)
        if snapshot is not None:
            self.snapshot = snapshot
        if texts or item.kind:
            self._fan_out(item)
        if snapshot is None:
            self.snapshot = None

    def _fan_out(self, item: Item) -> None:
        for sub in list(self.subscribers):
            if not sub.push(item):
                self.subscribers.discard(sub)
        if item.end is not None:
            self.subscribers.clear()
            self.stop()

    def _end_all(self, reason: str) -> None:
        for sub in self.subscribers:
            sub.close(reason)
        self.subscribers.clear()
        self.stop()


class StreamHub:
    """The open event streams of one web process, and the feeds behind them."""

    def __init__(self, max_streams: int, poll_seconds: float, format: Format):
        self.max_streams, self.poll_seconds, self.format = max_streams, poll_seconds, format
        self.feeds: dict[int, Feed] = {}
        self.open = 0
        self.closing = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()  # reserve() runs in the sync route's thread

    def reserve(self) -> bool:
        """Takes a stream slot; False when all TUNEDECK_MAX_STREAMS are open or at shutdown."""
        with self._lock:
            if self.closing or self.open >= self.max_streams:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.open -= 1

    def _bind(self) -> None:
        """Feeds belong to one event loop; a new loop (a new test client) starts afresh."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop, self.feeds, self._subscribers = loop, {}, set()

    async def stream(self, job_id: int, cursor: int) -> AsyncIterator[str]:
        """The events of one subscriber, whose slot reserve() took."""
        self._bind()
        if self.closing:
            return  # shutting down: the client resumes elsewhere or later
        sub = Subscriber(cursor)
        self._subscribers.add(sub)
        feed = self.feeds.get(job_id)
        if feed is None:
            feed = self.feeds[job_id] = Feed(self, job_id)
            feed.task = asyncio.create_task(feed.run(), name=f"job {job_id} event feed")
        feed.add(sub)
        try:
            yield "retry: 2000\n\n"
            await feed.ready.wait()
            async for text in self._follow(job_id, sub):
                yield text
        finally:
            self._subscribers.discard(sub)
            feed.remove(sub)

    async def _follow(self, job_id: int, sub: Subscriber) -> AsyncIterator[str]:
        assert sub.horizon is not None
        while sub.cursor < sub.horizon and not sub.closed:  # this subscriber's own history
            points = await to_thread.run_sync(read_points, job_id, sub.cursor, sub.horizon)
            if not points:
                break
            sub.cursor = points[-1]["id"]
            yield "".join(self.format("metric", p, p["id"]) for p in points)
        if sub.closed:
            return  # cut off during its replay: its live items would leave a gap
        if sub.joined is None:
            yield self.format("end", {"reason": "job deleted"}, sub.cursor)
            return
        yield self.format("status", sub.joined, max(sub.cursor, sub.horizon))
        sub.cursor = max(sub.cursor, sub.horizon)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    await sub.wake.wait()
            sub.wake.clear()
            if not sub.backlog and not sub.closed:
                yield ": keepalive\n\n"
                continue
            chunk, end = self._drain(sub)
            if chunk:
                yield chunk
            if end is not None:
                yield self.format("end", end, sub.cursor)
                return
            if sub.closed is not None:  # set by the feed meanwhile (mypy narrowed it above)
                return  # not an `end` event: the client reconnects with Last-Event-ID

    def _drain(self, sub: Subscriber) -> tuple[str, dict | None]:
        """The waiting items as one chunk of text (one write), and the end if one came."""
        parts: list[str] = []
        while sub.backlog:
            item = sub.backlog.popleft()
            sub.waiting -= len(item.points)
            for point_id, text in item.points:
                if point_id > sub.cursor:
                    parts.append(text)
                    sub.cursor = point_id
            if item.end is not None:
                return "".join(parts), item.end
            if item.kind:
                parts.append(item.text if sub.cursor <= item.last_id
                             else self.format(item.kind, item.snapshot, sub.cursor))
                sub.cursor = max(sub.cursor, item.last_id)
        return "".join(parts), None

    def close(self) -> None:
        """Shutdown: refuse new streams, end the open ones (their clients resume later)."""
        self.closing = True
        for sub in list(self._subscribers):
            sub.close("shutdown")
        for feed in list(self.feeds.values()):
            feed.stop()
