"""The `tunedeck` command line."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import uvicorn

from app import cli_remote
from app.auth import cli as token_cli
from app.config import Settings, get_settings
from app.migrate import upgrade
from worker.celery_app import celery_app
from worker.sweep import sweep_once


def cmd_serve(args: argparse.Namespace) -> int:
    """Web server plus an embedded worker process: one machine, nothing else to run."""
    settings = get_settings()
    upgrade(settings.db_url)
    host = args.host or settings.host
    port = args.port or settings.port
    if problem := token_cli.exposure_problem(host):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.no_worker:
        _sweep_at_start(settings)  # an embedded worker does this itself when it starts
    worker = None if args.no_worker else _start_embedded_worker()
    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exception so the
    # `finally` below still stops the embedded worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port,
                    log_level=args.log_level, workers=args.workers or settings.web_workers)
    finally:
        if worker is not None:
            _stop_embedded_worker(worker)
    return 0


def _sweep_at_start(settings: Settings) -> None:
    """Re-send queued jobs the broker lost and hand on jobs of dead workers (worker/sweep.py)."""
    try:
        report = sweep_once(settings)
    except Exception as exc:  # noqa: BLE001 - workers retry it; serving must not wait
        print(f"tunedeck: start-up sweep failed: {exc}", file=sys.stderr)
        return
    if report:
        print(f"tunedeck: start-up sweep: {report}", file=sys.stderr)


def _exit_on_signal(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def _start_embedded_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--no-migrate",
                             "--exit-with-parent", str(os.getpid())], start_new_session=True)


def _exit_with_parent(parent: int, interval: float = 1.0, grace: float = 10.0) -> None:
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
        os.killpg(os.getpid(), signal.SIGKILL)  # the pool's child too: see below

    if os.getpgrp() != os.getpid():  # serve starts it in a session of its own already
        os.setpgid(0, 0)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _stop_embedded_worker(process: subprocess.Popen) -> None:
    """Warm stop, then cold: a job still running is resumed from its last checkpoint later."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            if sig == signal.SIGTERM:
                print("tunedeck: the embedded worker is still busy; stopping it now (a job "
                      "resumes from its last checkpoint on the next start)", file=sys.stderr)


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker: one job at a time, a fresh process for each job."""
    settings = get_settings()
    if not args.no_migrate:
        upgrade(settings.db_url)
    if args.exit_with_parent:
        _exit_with_parent(args.exit_with_parent)
    argv = ["worker", "--loglevel", args.log_level.upper(), "--concurrency", "1",
            "--max-tasks-per-child", "1", "--queues", "tunedeck", "--without-gossip",
            "--without-mingle"]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    celery_app.worker_main(argv)
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    upgrade(get_settings().db_url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunedeck", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web app and an embedded worker")
    serve.add_argument("--host", default=None, help="default: TUNEDECK_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: TUNEDECK_PORT or 8000")
    serve.add_argument("--no-worker", action="store_true", help="web only; run workers apart")
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="web processes (default: TUNEDECK_WEB_WORKERS or 1); one per core "
                            "for API-heavy use; the training worker is apart from these")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker against TUNEDECK_BROKER_URL")
    worker.add_argument("--hostname", default=None, help="Celery node name, e.g. gpu0@%%h")
    worker.add_argument("--no-migrate", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to head")
    migrate.set_defaults(func=cmd_migrate)
    token_cli.register(sub)
    cli_remote.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
