"""The `tunedeck` command line.

This module and the client commands (app/cli_remote.py, app/cli_sweep.py) import only the standard library and
httpx, so `tunedeck jobs` starts at once; a server command's module (app/cli_server.py,
app/auth/cli.py) is imported only when that command runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

# httpx imports its own command line (click, rich, pygments: 0.18 s of `-X importtime` here)
# when they are installed, as they are beside Celery; this process never runs it. A None entry
# makes that optional import fail, and httpx then skips it. Set before httpx is first imported.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from app import cli_remote, cli_sweep  # noqa: E402 - after the line above

Command = Callable[[argparse.Namespace], int]


def server_command(target: str) -> Command:
    """`module:function`, imported when the command runs rather than when the parser is built."""
    module, _, name = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        command: Command = getattr(importlib.import_module(module), name)
        return command(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunedeck", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web app and an embedded worker")
    serve.add_argument("--host", default=None, help="default: TUNEDECK_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: TUNEDECK_PORT or 8000")
    serve.add_argument("--no-worker", action="store_true", help="web only; run workers apart")
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="web processes (default: TUNEDECK_WEB_WORKERS or 1); one per core "
                            "for API-heavy use; the training worker is apart from these")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=server_command("app.cli_server:cmd_serve"))

    worker = sub.add_parser("worker", help="run a Celery worker against TUNEDECK_BROKER_URL")
    worker.add_argument("--hostname", default=None, help="Celery node name, e.g. gpu0@%%h")
    worker.add_argument("--inference", action="store_true",
                        help="serve short requests (try it, pre-flight, push) instead of training")
    worker.add_argument("--no-migrate", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(func=server_command("app.cli_server:cmd_worker"))

    migrate = sub.add_parser("migrate", help="upgrade the database schema to head")
    migrate.set_defaults(func=server_command("app.cli_server:cmd_migrate"))
    register_tokens(sub)
    cli_remote.register(sub)
    cli_sweep.register(sub, [cli_remote.server_options()])
    return parser


def register_tokens(sub: argparse._SubParsersAction) -> None:
    """`tunedeck token create|list|revoke` (app/auth/cli.py; on the server)."""
    token = sub.add_parser("token", help="manage API tokens (on the server)")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", help="create a token; prints it once")
    create.add_argument("name", help="who or what uses it, e.g. laptop or ci")
    create.set_defaults(func=server_command("app.auth.cli:cmd_create"))
    actions.add_parser("list", help="token names and last use").set_defaults(
        func=server_command("app.auth.cli:cmd_list"))
    revoke = actions.add_parser("revoke", help="delete a token; its sessions end too")
    revoke.add_argument("name")
    revoke.set_defaults(func=server_command("app.auth.cli:cmd_revoke"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
