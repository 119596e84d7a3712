"""`python -m worker`: one Celery worker process, as `tunedeck worker` and `serve` start it.

The web side starts this by command, never by import: app/ does not import worker/.
`python -m worker --sweep-once` runs the start-up sweep alone (for `serve --no-worker`).
`python -m worker --inference` runs the inference worker instead (worker/inference.py).
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time

from app.config import Settings, get_settings
from app.jobs.queue import worker_queues
from worker import inventory
from worker.celery_app import celery_app
from worker.sweep import sweep_once as run_sweep


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sweep_once:
        return sweep_once()
    if args.exit_with_parent:
        exit_with_parent(args.exit_with_parent)
    if args.inference:
        # Imported here, not at the top: it loads torch, transformers and peft (seconds), which
        # the training worker's main process and --sweep-once do not need.
        importlib.import_module("worker.inference").run_inference_worker(args.hostname,
                                                                        args.log_level)
    else:
        run_worker(args.hostname, args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--hostname", default=None, help="Celery node name, e.g. gpu0@%%h")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID",
                        help="stop once process PID (the serve that started it) is gone")
    parser.add_argument("--inference", action="store_true",
                        help="serve the inference queue (try it, pre-flight, push) instead")
    parser.add_argument("--sweep-once", action="store_true",
                        help="hand on jobs of dead workers, re-send lost ones, and exit")
    return parser


def concurrency(settings: Settings, gpus: int) -> int:
    """TUNEDECK_WORKER_CONCURRENCY, or one job per GPU (four per GPU with sharing on: jobs
    that do not fit wait for the scheduler, worker/allocation.py); one without GPUs."""
    if settings.worker_concurrency:
        return settings.worker_concurrency
    return max(1, gpus * (4 if settings.gpu_sharing else 1))


def run_worker(hostname: str | None, log_level: str) -> None:
    """A Celery worker: a fresh process for each job, as many at once as concurrency(), fed
    by the queues of the jobs its GPUs can run (app/jobs/queue.py worker_queues)."""
    settings = get_settings()
    gpus = len(inventory.discover(settings))
    queues = worker_queues(gpus, settings.ddp_cpu)
    print(f"tunedeck: worker with {gpus} GPU(s) consumes {', '.join(queues)}", file=sys.stderr)
    argv = ["worker", "--loglevel", log_level.upper(),
            "--concurrency", str(concurrency(settings, gpus)),
            "--max-tasks-per-child", "1", "--queues", ",".join(queues), "--without-gossip",
            "--without-mingle"]
    if hostname:
        argv += ["--hostname", hostname]
    celery_app.worker_main(argv)


def sweep_once() -> int:
    """Re-send queued jobs the broker lost and hand on jobs of dead workers (worker/sweep.py)."""
    try:
        report = run_sweep(get_settings())
    except Exception as exc:  # noqa: BLE001 - workers retry it; serving must not wait
        print(f"tunedeck: start-up sweep failed: {exc}", file=sys.stderr)
        return 1
    if report:
        print(f"tunedeck: start-up sweep: {report}", file=sys.stderr)
    return 0


def exit_with_parent(parent: int, interval: float = 1.0, grace: float = 10.0) -> None:
    """Stop this worker once the `serve` that started it is gone, even killed: a cold stop
    (SIGQUIT), once more after `grace` seconds, then SIGKILL to its process group.

    A SIGQUIT that lands while Celery is still starting can be lost (seen: serve killed 5 s
    after start on a loaded machine left the worker running, ready, for good), so the watch
    repeats it and ends with a kill; a job it was running resumes from its last checkpoint.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGQUIT)
            time.sleep(grace)
        os.killpg(os.getpid(), signal.SIGKILL)  # the pool's child too

    if os.getpgrp() != os.getpid():  # serve starts it in a session of its own already
        os.setpgid(0, 0)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


if __name__ == "__main__":
    sys.exit(main())
