"""The server side of `tunedeck`: serve, worker, migrate. app/cli.py loads this module only when
one of these commands runs, so the client commands start without uvicorn, SQLAlchemy or Celery.

The worker runs as `python -m worker` (worker/__main__.py): started by command, not imported.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import uvicorn

from app.auth import cli as token_cli
from app.config import get_settings
from app.migrate import upgrade
from app.security import WILDCARD_BINDS

SWEEP_TIMEOUT = 120.0
# After SIGTERM, requests still running this long are cut off so serve stops for sure. Event
# streams do not wait for it: they end at the signal (app/jobs/events.py `lifespan`).
GRACEFUL_SHUTDOWN_SECONDS = 10


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker", *args]


def cmd_serve(args: argparse.Namespace) -> int:
    """Web server plus an embedded worker process: one machine, nothing else to run."""
    settings = get_settings()
    upgrade(settings.db_url)
    host = args.host or settings.host
    port = args.port or settings.port
    if problem := token_cli.exposure_problem(host) or token_cli.key_problem():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    _name_hosts_notice(host)
    # An embedded worker sweeps itself when it starts; without one, a child process does.
    # The inference worker answers try-it, pre-flight and push requests while a job trains.
    workers = [_start_sweep()] if args.no_worker else [_start_embedded_worker(),
                                                       _start_embedded_worker("--inference")]
    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exception so the
    # `finally` below still stops the embedded worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port,
                    log_level=args.log_level, workers=args.workers or settings.web_workers,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    finally:
        _stop_children(workers)
    return 0


def _name_hosts_notice(host: str) -> None:
    """A wildcard bind answers to the box's addresses and loopback names (app/security.py):
    say so, since clients that use a name get 400 until it is in TUNEDECK_ALLOWED_HOSTS."""
    if host.strip().lower() in WILDCARD_BINDS and not get_settings().allowed_host_list:
        print("tunedeck: answering to this machine's IP addresses and localhost; set "
              "TUNEDECK_ALLOWED_HOSTS to the host names clients use to reach it",
              file=sys.stderr)


def _start_sweep() -> subprocess.Popen:
    """Re-send queued jobs the broker lost and hand on jobs of dead workers, beside start-up
    (worker/sweep.py through `python -m worker --sweep-once`; it prints its own report)."""
    return subprocess.Popen(worker_command("--sweep-once"), start_new_session=True)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _start_embedded_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen(worker_command("--exit-with-parent", str(os.getpid()), *args),
                            start_new_session=True)


def _stop_children(processes: list[subprocess.Popen]) -> None:
    """Warm stop, then cold, all at once: a job still running is resumed from its last
    checkpoint later."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
        running = [process for process in processes if process.poll() is None]
        for process in running:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        if all(process.poll() is not None for process in processes):
            return
        if sig == signal.SIGTERM:
            print("tunedeck: the embedded worker is still busy; stopping it now (a job "
                  "resumes from its last checkpoint on the next start)", file=sys.stderr)


def cmd_worker(args: argparse.Namespace) -> int:
    """Upgrade the schema, then become `python -m worker` (same process id, same session)."""
    if not args.no_migrate:
        upgrade(get_settings().db_url)
    argv = worker_command("--log-level", args.log_level)
    if args.hostname:
        argv += ["--hostname", args.hostname]
    if args.exit_with_parent:
        argv += ["--exit-with-parent", str(args.exit_with_parent)]
    if args.inference:
        argv.append("--inference")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def cmd_migrate(_args: argparse.Namespace) -> int:
    upgrade(get_settings().db_url)
    return 0
