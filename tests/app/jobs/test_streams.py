"""Event streams that scale (issue 17 items 4 and 5), against a real `tunedeck serve` process.

Many streams on one job share one poller: no pool exhaustion, /healthz stays fast, every point
reaches every stream once, in order; a cap per process answers 503 with Retry-After; a client
that resumes mid-run gets exactly the later points; SIGTERM ends open streams so serve stops.
"""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import db
from app.client import parse_sse
from app.config import get_settings
from app.db import session_scope, utcnow
from app.jobs import streams
from app.jobs.events import format_event
from app.jobs.models import Job, JobStatus, MetricPoint
from app.migrate import upgrade
from tests.app.factories import make_job
from tests.fixtures import (
    LiveServer,
    drop_postgres_database,
    fresh_postgres_database,
    postgres_available,
    reset_caches,
    service_missing,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, settings_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """settings_env pointed at a freshly migrated database of each dialect."""
    url = None
    env = dict(settings_env)
    if request.param == "postgresql":
        if not postgres_available():
            service_missing("PostgreSQL is not reachable at 127.0.0.1:5432")
        url = fresh_postgres_database()
        monkeypatch.setenv("TUNEDECK_DATABASE_URL", url)
        env["TUNEDECK_DATABASE_URL"] = url
        reset_caches()
        upgrade(url)
    yield env
    db.get_engine().dispose()
    db.get_read_engine().dispose()
    reset_caches()
    if url:
        drop_postgres_database(url)


def running_job() -> int:
    """A running job whose worker holds a live lease, so the start-up lease sweep that
    `serve` runs beside the web server leaves it running while the test watches it."""
    return make_job(JobStatus.running, worker_id="test-worker", attempts=1,
                    heartbeat_at=utcnow(), started_at=utcnow())


def serve(env: dict, tmp_path: Path, **settings: str) -> LiveServer:
    extra = {f"TUNEDECK_{k.upper()}": v for k, v in settings.items()}
    return LiveServer({**env, **extra}, tmp_path / "serve.log", with_worker=False)


def write_points(job_id: int, steps: range, pause: float = 0.0) -> list[int]:
    """What the worker's reporter does: commit points (and progress); returns their ids."""
    ids = []
    for step in steps:
        with session_scope() as session:
            job = session.get(Job, job_id)
            job.status, job.global_step, job.max_steps = JobStatus.running, step, 1000
            job.started_at = job.started_at or utcnow()
            point = MetricPoint(job_id=job_id, name="train/loss", step=step, value=1.0 / step)
            session.add(point)
            session.flush()
            ids.append(point.id)
        time.sleep(pause)
    return ids


def finish(job_id: int) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.status, job.finished_at = JobStatus.succeeded, utcnow()


async def watch(client: httpx.AsyncClient, url: str, opened: list, headers=None) -> dict:
    """One EventSource-like reader: the metric ids it got, its status codes and last event."""
    got: dict = {"ids": [], "events": []}
    async with client.stream("GET", url, headers=headers or {}) as response:
        got["status_code"] = response.status_code
        if response.status_code != 200:
            return got
        opened.append(1)
        lines = []
        async for line in response.aiter_lines():
            lines.append(line)
            if line == "":
                for event in parse_sse(iter(lines)):
                    got["events"].append(event.event)
                    if event.event == "metric":
                        got["ids"].append(event.data["id"])
                lines = []
    return got


def healthz_times(url: str, stop: threading.Event, samples: list[float]) -> None:
    """Seconds per /healthz, every 0.05 s until stopped; a failure or a timeout is inf."""
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = client.get(url + "/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.append(time.perf_counter() - started if ok else float("inf"))
            time.sleep(0.05)


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(0.95 * (len(ordered) - 1))]


def test_200_streams_on_one_job_share_one_poller(database, tmp_path):
    """Before the fix: each stream polled with a session of its own, and 200 exhausted the
    pool ("QueuePool limit ... reached") while /healthz waited behind them."""
    job_id = running_job()
    early = write_points(job_id, range(1, 11))
    server = serve(database, tmp_path, max_streams="250")
    streams_url = f"{server.url}/api/v1/jobs/{job_id}/events"
    health: list[float] = []
    stop = threading.Event()
    try:
        async def main() -> list[dict]:
            limits = httpx.Limits(max_connections=300, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=httpx.Timeout(60), limits=limits) as client:
                opened: list = []
                watchers = [asyncio.create_task(watch(client, streams_url, opened))
                            for _ in range(200)]
                deadline = time.monotonic() + 60
                while len(opened) < 200 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert len(opened) == 200
                late = await asyncio.to_thread(write_points, job_id, range(11, 41), 0.05)
                await asyncio.to_thread(finish, job_id)
                results = await asyncio.wait_for(asyncio.gather(*watchers), 90)
                return [{**r, "expected": early + late} for r in results]

        poller = threading.Thread(target=healthz_times, args=(server.url, stop, health))
        poller.start()
        results = asyncio.run(main())
        stop.set()
        poller.join()
        after = []
        for _ in range(20):
            started = time.perf_counter()
            assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
            after.append(time.perf_counter() - started)
    finally:
        stop.set()
        server.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "QueuePool" not in log and "Traceback" not in log, log[-3000:]
    assert [r["status_code"] for r in results] == [200] * 200
    # every point once, in id order, then `end`
    wrong = [(len(r["ids"]), r["events"][-1:]) for r in results
             if r["ids"] != r["expected"] or r["events"][-1:] != ["end"]]
    assert not wrong, f"{len(wrong)} streams short or out of order: {wrong[:5]}"
    assert p95(health) < 1.0, sorted(health)[-10:]
    assert max(after) < 1.0, after


def open_status(client: httpx.Client, url: str) -> tuple[int, dict]:
    """Opens a stream, returns its status code and headers, and closes it."""
    with client.stream("GET", url) as response:
        return response.status_code, dict(response.headers)


def test_beyond_the_stream_cap_is_503_with_retry_after(settings_env, tmp_path):
    job_id = running_job()
    server = serve(settings_env, tmp_path, max_streams="3")
    url = f"{server.url}/api/v1/jobs/{job_id}/events"
    held = []
    try:
        with httpx.Client(timeout=httpx.Timeout(10)) as client:
            held = [client.stream("GET", url) for _ in range(3)]
            responses = [h.__enter__() for h in held]
            assert [r.status_code for r in responses] == [200] * 3
            # Keep each line iterator: a dropped one is closed at once, and closing it closes
            # the response's connection, which gives the server's slot back.
            lines = [response.iter_lines() for response in responses]
            for line in lines:
                next(line)  # the stream is open (its retry: line came)
            refused = client.get(url)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["retry-after"]) > 0
            assert "too many event streams" in refused.json()["detail"]
            assert client.get(server.url + "/healthz").status_code == 200
            held.pop().__exit__(None, None, None)
            deadline = time.monotonic() + 5
            while (code := open_status(client, url)[0]) == 503 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert code == 200, "the closed stream's slot was not given back"
    finally:
        for h in held:
            h.__exit__(None, None, None)
        server.stop()


def test_a_client_resuming_mid_run_gets_exactly_the_later_points(database, tmp_path):
    """One watcher follows from the start; another joins mid-run from a cursor: its replay and
    the live fan-out meet without a gap or a duplicate."""
    job_id = running_job()
    first = write_points(job_id, range(1, 21))
    server = serve(database, tmp_path)
    url = f"{server.url}/api/v1/jobs/{job_id}/events"
    try:
        async def main() -> tuple[dict, dict]:
            async with httpx.AsyncClient(timeout=httpx.Timeout(60)) as client:
                opened: list = []
                follower = asyncio.create_task(watch(client, url, opened))
                while not opened:
                    await asyncio.sleep(0.05)
                more = await asyncio.to_thread(write_points, job_id, range(21, 31), 0.05)
                resumer = asyncio.create_task(watch(client, url, opened,
                                                    {"Last-Event-ID": str(first[9])}))
                rest = await asyncio.to_thread(write_points, job_id, range(31, 41), 0.05)
                await asyncio.to_thread(finish, job_id)
                got = await asyncio.wait_for(asyncio.gather(follower, resumer), 60)
                return {"all": first + more + rest, **got[0]}, got[1]
        follower, resumer = asyncio.run(main())
    finally:
        server.stop()
    assert follower["ids"] == follower["all"]
    assert resumer["ids"] == follower["all"][10:]
    assert resumer["events"][-1] == "end"


def test_sigterm_ends_open_streams_and_serve_stops(settings_env, tmp_path):
    """Before the fix serve waited for the watched job to end (a queued job: forever)."""
    job_id = make_job(JobStatus.queued)
    server = serve(settings_env, tmp_path)
    events: list = []
    try:
        with httpx.Client(timeout=httpx.Timeout(30)) as client, \
                client.stream("GET", f"{server.url}/api/v1/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            next(lines)
            time.sleep(0.5)
            started = time.monotonic()
            os.killpg(server.process.pid, signal.SIGTERM)
            events = list(parse_sse(lines))  # returns when the server ends the stream
            server.process.wait(timeout=10)
            stopped = time.monotonic() - started
    finally:
        server.stop()
    assert stopped < 5, f"serve took {stopped:.1f} s to stop"
    assert [e.event for e in events] == ["status"]  # no `end`: the client resumes later


def test_a_subscriber_that_falls_behind_is_ended_and_resumes(settings_env, monkeypatch):
    """A stream that reads nothing while points pile up is let go (not grown without bound);
    the feed's other subscriber is not held back, and a resume gets the rest."""
    monkeypatch.setattr(streams, "MAX_BACKLOG", 20)
    job_id = running_job()

    async def collect(events) -> str:
        return "".join([chunk async for chunk in events])

    async def main() -> tuple[list, list, list]:
        hub = streams.StreamHub(10, 0.05, format_event)
        fast, slow = hub.stream(job_id, 0), hub.stream(job_id, 0)
        assert (await anext(fast)).startswith("retry") and (await anext(slow)).startswith("retry")
        assert "event: status" in await anext(fast)
        assert "event: status" in await anext(slow)
        reader = asyncio.create_task(collect(fast))  # reads as the points come
        ids = await asyncio.to_thread(write_points, job_id, range(1, 61), 0.005)
        await asyncio.to_thread(finish, job_id)
        fast_text = await asyncio.wait_for(reader, 30)
        slow_text = await asyncio.wait_for(collect(slow), 30)  # only now: it fell behind
        resumed_at = [e.id for e in parse_sse(iter(slow_text.splitlines())) if e.id][-1]
        resumed = await asyncio.wait_for(collect(hub.stream(job_id, resumed_at)), 30)
        return ids, [fast_text, slow_text, resumed], [resumed_at]

    ids, (fast_text, slow_text, resumed), (resumed_at,) = asyncio.run(main())

    def metric_ids(text: str) -> list[int]:
        return [e.data["id"] for e in parse_sse(iter(text.splitlines())) if e.event == "metric"]

    assert metric_ids(fast_text) == ids and "event: end" in fast_text
    assert len(metric_ids(slow_text)) <= 20 and "event: end" not in slow_text
    assert metric_ids(slow_text) + metric_ids(resumed) == ids
    assert "event: end" in resumed and resumed_at == (metric_ids(slow_text) or [0])[-1]


def test_the_setting_has_a_default_per_process(settings_env):
    assert get_settings().max_streams == 100


def test_a_subscriber_cut_off_during_its_replay_leaves_no_gap(settings_env, monkeypatch):
    """Live points that pile up while a client reads its history slowly end the stream; what
    it got is still a gapless prefix (no live points after a cut-short replay)."""
    monkeypatch.setattr(streams, "BATCH", 3)
    monkeypatch.setattr(streams, "MAX_BACKLOG", 4)
    job_id = running_job()
    history = write_points(job_id, range(1, 31))

    async def main() -> tuple[str, list[int]]:
        hub = streams.StreamHub(10, 0.05, format_event)
        events = hub.stream(job_id, 0)
        assert (await anext(events)).startswith("retry")
        first = await anext(events)  # one replay chunk, then the client stalls
        live = await asyncio.to_thread(write_points, job_id, range(31, 41), 0.02)
        await asyncio.sleep(0.5)  # the feed's polls fill this subscriber's backlog
        rest = "".join([chunk async for chunk in events])
        return first + rest, live

    text, live = asyncio.run(main())
    got = [e.data["id"] for e in parse_sse(iter(text.splitlines())) if e.event == "metric"]
    everything = history + live
    assert got == everything[:len(got)] and len(got) < len(everything)
    assert "event: end" not in text
