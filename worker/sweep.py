"""The lease sweep: recover jobs whose worker died and jobs the broker lost.

1. A running job whose heartbeat is older than TUNEDECK_LEASE_TIMEOUT_SECONDS lost its worker
   (SIGKILL, OOM killer, preemption, power). Its open attempt ends `lost`; the job goes back to
   the queue and the next worker resumes it from its latest complete checkpoint, or it fails
   once it has used up TUNEDECK_MAX_RESTARTS, or it ends cancelled when a cancel was pending.
2. A queued job with no message in the broker (a Redis restart without persistence, a
   FLUSHDB, a publish that failed) is sent again: at start for every such job, later for
   those queued longer than the lease timeout. Where the broker cannot be read, only the start
   re-sends, blindly. A duplicate message is harmless: the worker's atomic claim drops it.

Every change is a conditional UPDATE (see app/jobs/lifecycle.py), so any number of sweepers
(one per worker, plus `serve`) can run at once. Tasks are sent after the commit. No Celery
import here beyond app.jobs.queue's producer.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.synchronize import Event as ProcessEvent

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine, session_scope, utcnow
from app.jobs import lifecycle
from app.jobs.models import Job
from app.jobs.queue import enqueue_after_commit
from worker import inventory
from worker.broker import BrokerView

log = logging.getLogger(__name__)
LOST_HINT = ("Each attempt's worker stopped heartbeating without reporting an error: the process "
             "was killed (host out of memory, preemption, a reboot) or hung. Check the worker "
             "logs and `dmesg` on that host; raise TUNEDECK_MAX_RESTARTS to allow more restarts.")


@dataclass
class SweepReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.cancelled or self.resent)


def sweep(settings: Settings, sessions: sessionmaker[Session], broker: BrokerView, *,
          resend: bool = True, startup: bool = False) -> SweepReport:
    """One pass: expired leases first, then (if `resend`) queued jobs the broker lacks."""
    report = SweepReport()
    with session_scope(sessions) as session:
        expire_leases(session, settings, report)
    if resend or startup:
        with session_scope(sessions) as session:
            resend_lost(session, settings, broker, report, startup=startup)
    return report


def expire_leases(session: Session, settings: Settings, report: SweepReport) -> None:
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.lease_timeout_seconds)
    for job in lifecycle.expired(session, cutoff):
        worker, seen = job.worker_id or "an unknown host", job.heartbeat_at
        message = f"worker {worker} stopped heartbeating at {_when(seen)}"
        outcome = after_loss(session, job, settings, now, cutoff, message)
        if outcome is None:
            continue  # renewed, finished or taken by another sweeper meanwhile
        getattr(report, outcome).append(job.id)
        if outcome == "requeued":
            enqueue_after_commit(session, job)
        log.warning("job %s: worker %s lost (last heartbeat %s); %s", job.id, worker,
                    _when(seen), outcome)


def after_loss(session: Session, job: Job, settings: Settings, now: datetime,
                cutoff: datetime, message: str) -> str | None:
    """End the lost attempt: the job is cancelled (a cancel was pending), failed (no restarts
    left) or requeued; None when the attempt renewed or ended meanwhile."""
    if job.cancel_requested:
        done = lifecycle.cancel_ack(session, job.id, job.attempts, now, expired_before=cutoff,
                                    message=message)
        return "cancelled" if done else None
    if job.attempts > settings.max_restarts:
        error = (f"worker lost {job.attempts} times (TUNEDECK_MAX_RESTARTS="
                 f"{settings.max_restarts}); last seen on {job.worker_id or 'an unknown host'}"
                 f" at {_when(job.heartbeat_at)}")
        done = lifecycle.lose(session, job.id, job.attempts, now, cutoff, message, error,
                              LOST_HINT)
        return "failed" if done else None
    done = lifecycle.requeue(session, job.id, job.attempts, now, cutoff, message)
    return "requeued" if done else None


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "an unknown time"


def resend_lost(session: Session, settings: Settings, broker: BrokerView, report: SweepReport,
                *, startup: bool = False) -> None:
    """Send queued jobs again that have no message in the broker."""
    now = utcnow()
    grace = 0.0 if startup else settings.lease_timeout_seconds
    waiting = lifecycle.waiting(session, now - timedelta(seconds=grace))
    if not waiting:
        return
    held = broker.job_ids()
    if held is None and not startup:
        return  # cannot tell which are lost; re-sending every time would flood the queue
    for job in waiting:
        if held is not None and job.id in held:
            continue
        if lifecycle.resend(session, job.id, job.enqueued_at, now):
            enqueue_after_commit(session, job)
            report.resent.append(job.id)
    if report.resent:
        log.warning("re-sent %d queued job(s) the broker did not hold: %s", len(report.resent),
                    report.resent)


class Sweeper:
    """Runs the sweep in a daemon thread every TUNEDECK_HEARTBEAT_SECONDS.

    It owns an unpooled engine: a connection lives only for one pass, so the pool processes
    Celery forks from this process never inherit an open one.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(settings.db_url, pooled=False)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.broker = BrokerView(settings.broker, fresh_seconds=settings.lease_timeout_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tunedeck-sweep")
        self._last_resend = float("-inf")

    def run_once(self, *, startup: bool = False) -> SweepReport:
        # Leases every tick; the broker is read at most once per lease timeout.
        resend = time.monotonic() - self._last_resend >= self.settings.lease_timeout_seconds
        report = sweep(self.settings, self.sessions, self.broker, resend=resend,
                       startup=startup)
        if resend or startup:
            self._last_resend = time.monotonic()
        return report

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.broker.close()
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                self.run_once()
            except Exception:
                log.exception("lease sweep failed; retrying in %ss",
                              self.settings.heartbeat_seconds)


def _advertise(settings: Settings, worker_id: str | None) -> None:
    if worker_id is None:
        return
    try:
        inventory.advertise(settings, worker_id)
    except Exception:  # the database may be away; the next pass renews it
        log.exception("could not advertise this worker's GPUs")


class SweepProcess:
    """The periodic sweep in a process of its own, started with spawn.

    Celery forks each job's pool process from the worker's main process. A fork copies only
    the forking thread: had the sweep run as a thread there, a lock it held at that moment
    (SQLite's allocator mutex during a query) would stay locked in the child for ever, and
    the job would hang in its first SQLite call, claim(). Started with spawn, this process
    shares no lock with the main process, and the main process runs no SQLite thread.
    """

    def __init__(self, settings: Settings, worker_id: str | None = None):
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._process = context.Process(target=run_periodic, args=(settings, self._stop,
                                                                   os.getpid(), worker_id),
                                        name="tunedeck-sweep", daemon=True)

    def start(self) -> SweepProcess:
        self._process.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._process.pid is None:
            return
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)


def run_periodic(settings: Settings, stop: ProcessEvent, parent: int,
                 worker_id: str | None = None) -> None:
    """The sweep process' loop: a pass every TUNEDECK_HEARTBEAT_SECONDS until told to stop or
    its worker is gone (a SIGKILLed worker cannot tell it); each pass also renews the
    worker's advertised GPUs (worker/inventory.py)."""
    logging.basicConfig(level=logging.INFO,
                        format="[%(asctime)s: %(levelname)s/sweep] %(message)s")
    sweeper = Sweeper(settings)
    _advertise(settings, worker_id)
    try:
        while not stop.wait(settings.heartbeat_seconds) and os.getppid() == parent:
            _advertise(settings, worker_id)
            try:
                sweeper.run_once()
            except Exception:
                log.exception("lease sweep failed; retrying in %ss", settings.heartbeat_seconds)
    finally:
        sweeper.stop()


def sweep_once(settings: Settings) -> SweepReport:
    """A start-up pass for processes that do not run a worker (`tunedeck serve --no-worker`)."""
    sweeper = Sweeper(settings)
    try:
        return sweeper.run_once(startup=True)
    finally:
        sweeper.stop()
