"""`tunedeck token create|list|revoke`: API tokens in the database (run on the server).

app/cli.py defines the arguments and imports this module only when a token command runs.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from app.auth import repository, service
from app.config import get_settings
from app.db import session_scope
from app.errors import Conflict, Invalid, NotFound
from app.migrate import upgrade


def migrated(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Upgrade the schema first: token commands may be the first thing run on a new server."""

    def run(args: argparse.Namespace) -> int:
        upgrade(get_settings().db_url)
        return func(args)

    return run


@migrated
def cmd_create(args: argparse.Namespace) -> int:
    try:
        with session_scope() as session:
            _, token = service.create_token(session, args.name)
    except (Conflict, Invalid) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(token)
    print(f"token {args.name!r} created; it is shown only this once. Use it as "
          "TUNEDECK_TOKEN=... or 'Authorization: Bearer ...'.", file=sys.stderr)
    return 0


@migrated
def cmd_list(_args: argparse.Namespace) -> int:
    with session_scope() as session:
        rows = repository.all_tokens(session)
        for row in rows:
            used = row.last_used_at.isoformat(" ", "seconds") if row.last_used_at else "never"
            print(f"{row.name}\tcreated {row.created_at:%Y-%m-%d %H:%M}\tlast used {used}")
    env_tokens = len(get_settings().token_list)
    if env_tokens:
        print(f"(+ {env_tokens} token(s) from TUNEDECK_API_TOKENS)")
    return 0


@migrated
def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        with session_scope() as session:
            service.revoke_token(session, args.name)
    except NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"token {args.name!r} revoked", file=sys.stderr)
    return 0


# Tokens from `token create` are 46 characters; an env token for a network bind must be long
# enough not to be guessed at the rate app/auth/throttle.py allows.
MIN_NETWORK_TOKEN_CHARS = 24


def exposure_problem(host: str) -> str | None:
    """Why `serve` must not bind `host` as configured, or None when it may."""
    if service.is_loopback(host):
        return None
    settings = get_settings()
    if short := [t for t in settings.token_list if len(t) < MIN_NETWORK_TOKEN_CHARS]:
        return (f"refusing to serve on {host}: TUNEDECK_API_TOKENS holds {len(short)} token(s) "
                f"shorter than {MIN_NETWORK_TOKEN_CHARS} characters, which anyone who can reach "
                "this port could guess.\nFix: use long random tokens, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))', or make one with "
                "`tunedeck token create NAME`.")
    with session_scope() as session:
        if service.auth_enabled(session, settings):
            return None
    return (f"refusing to serve on {host} without authentication: anyone who can reach this "
            "port could run jobs and download models.\n"
            "Fix: create a token with `tunedeck token create NAME` (then send it as "
            "'Authorization: Bearer <token>'), or set TUNEDECK_API_TOKENS=<token>[,<token>...];"
            "\nor bind to 127.0.0.1 for a single-user setup.")


def key_problem() -> str | None:
    """Why the signing key is unusable (empty, short, or cannot be written: a full disk), or
    None. Also writes a missing key now, before several web processes race to."""
    try:
        service.secret_key(get_settings())
    except service.WeakSecretKey as exc:
        return f"refusing to start: {exc}"
    except OSError as exc:
        return f"refusing to start: could not read or write the secret key: {exc}"
    return None
