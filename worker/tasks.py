"""Celery tasks: thin wrappers that pass ids to the runner, and the worker's lease sweep."""
from __future__ import annotations

import gc
import logging

from celery import Task
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from app import db
from app.config import get_settings
from app.jobs import queue
from worker import inventory
from worker.celery_app import TRAIN_TASK, celery_app
from worker.runner import run_job
from worker.sweep import Sweeper, SweepProcess

log = logging.getLogger(__name__)
_sweepers: list[SweepProcess] = []
_names: list[str] = []


@celery_app.task(name=TRAIN_TASK, bind=True, ignore_result=True)
def train(self: Task, job_id: int) -> str:
    """Run a job by id; a second delivery of a job already taken is dropped by the claim."""
    return run_job(int(job_id), worker_id=self.request.hostname)


@worker_init.connect
def freeze_imports(**_) -> None:
    """Take what the worker has imported (torch, transformers, datasets: 500,000 objects)
    out of the collector's reach before the pool forks. Each job runs in a fresh pool
    process; Celery's gc.collect before each fork and gpu.release's after each job would
    otherwise walk them all, 250 ms each on the benchmark machine, between one job's end and
    the next one's start. Frozen objects also stay shared with the children (copy-on-write)."""
    gc.freeze()


@worker_init.connect
def sweep_at_start(**_) -> None:
    """Before consuming: hand on jobs of dead workers, re-send what the broker lost. In this
    thread, before any pool process exists; its engine is disposed before the first fork."""
    sweeper = Sweeper(get_settings())
    try:
        report = sweeper.run_once(startup=True)
    except Exception:
        log.exception("the start-up sweep failed; the periodic sweep retries")
        return
    finally:
        sweeper.stop()
    log.info("start-up sweep: %s", report)


@worker_ready.connect
def start_sweeper(sender=None, **_) -> None:
    """Then every TUNEDECK_HEARTBEAT_SECONDS, in a spawned process of its own: no thread of
    the main process may hold a lock when the pool forks (worker/sweep.py SweepProcess).
    That process also advertises this worker's GPUs under its node name."""
    hostname = getattr(sender, "hostname", None)
    if hostname:
        _names.append(hostname)
    _sweepers.append(SweepProcess(get_settings(), hostname).start())


@worker_shutdown.connect
def stop_sweeper(**_) -> None:
    while _sweepers:
        _sweepers.pop().stop()
    while _names:
        try:
            inventory.withdraw(_names.pop())
        except Exception:  # the row goes stale on its own
            log.exception("could not withdraw this worker's GPUs")


@worker_process_init.connect
def fresh_connections(**_) -> None:
    """A forked pool process opens its own database and broker connections."""
    db.forget_engines(dispose=True)  # leave the parent's sockets to the parent
    queue.get_producer.cache_clear()
