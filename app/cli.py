"""The `tunedeck` command line."""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys

import uvicorn

from app import cli_remote
from app.auth import cli as token_cli
from app.config import get_settings
from app.migrate import upgrade
from worker.celery_app import celery_app


def cmd_serve(args: argparse.Namespace) -> int:
    """Web server plus an embedded worker process: one machine, nothing else to run."""
    settings = get_settings()
    upgrade(settings.db_url)
    host = args.host or settings.host
    port = args.port or settings.port
    if problem := token_cli.exposure_problem(host):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    worker = None
    if not args.no_worker:
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--no-migrate"])
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port,
                    log_level=args.log_level)
    finally:
        if worker is not None:
            _stop(worker)
    return 0


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker: one job at a time, a fresh process for each job."""
    settings = get_settings()
    if not args.no_migrate:
        upgrade(settings.db_url)
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
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker against TUNEDECK_BROKER_URL")
    worker.add_argument("--hostname", default=None, help="Celery node name, e.g. gpu0@%%h")
    worker.add_argument("--no-migrate", action="store_true", help=argparse.SUPPRESS)
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
