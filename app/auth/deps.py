"""Auth dependencies: bearer tokens for /api, the session cookie for pages, CSRF for forms."""
from __future__ import annotations

import secrets
from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import repository, service
from app.auth.throttle import FailureLimiter
from app.config import Settings, get_settings
from app.db import read_only, session_scope, utcnow
from app.deps import SessionDep, SettingsDep
from app.security import CSRF_COOKIE

SESSION_COOKIE = "tunedeck_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(auto_error=False, description=(
    "A token from `tunedeck token create NAME` or TUNEDECK_API_TOKENS. Needed only when "
    "auth is on (any token configured)."))
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def require_api_token(request: Request, credentials: BearerDep) -> None:
    """Every /api route: a bearer token, or (for reads from the pages) the session cookie.

    Checked on the event loop: a TUNEDECK_API_TOKENS token without the database, anything
    else with short reads (db.read_only); only a due last_used_at write goes to the pool.
    tests/app/test_event_loop.py fails if it holds the loop over 50 ms.
    """
    settings = get_settings()
    bearer = credentials.credentials if credentials is not None else None
    refuse_while_throttled(request)
    if bearer is not None and service.is_env_token(settings, bearer):
        return
    cookie = request.cookies.get(SESSION_COOKIE) if request.method in SAFE_METHODS else None
    verdict, due = read_only(partial(service.api_access, settings=settings, bearer=bearer,
                                     session_cookie=cookie))
    if due is not None:
        await run_in_threadpool(_mark_used, due)
    if verdict == "wrong":
        failed_attempt(request)
        raise unauthorized("wrong bearer token")
    if verdict == "missing":
        raise unauthorized("missing bearer token: send 'Authorization: Bearer <token>' "
                           "(create one with `tunedeck token create NAME`)")


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def _limiter(request: Request) -> FailureLimiter:
    return request.app.state.auth_failures


def failed_attempt(request: Request) -> None:
    """Count a wrong token against the client's address."""
    _limiter(request).failed(client_address(request))


def refuse_while_throttled(request: Request) -> None:
    """429 while this address is over its wrong-token limit (app/auth/throttle.py)."""
    wait = _limiter(request).retry_after(client_address(request))
    if wait is not None:
        raise HTTPException(429, f"too many wrong tokens from this address; retry in {wait} s",
                            headers={"Retry-After": str(wait)})


def _mark_used(token_id: int) -> None:
    with session_scope() as session:
        repository.mark_used(session, token_id, utcnow())


def _cookie_user(request: Request, session: Session, settings: Settings) -> str | None:
    return service.session_user(session, settings, request.cookies.get(SESSION_COOKIE))


def require_page_user(request: Request, session: SessionDep, settings: SettingsDep) -> bool:
    """HTML routes: True when logged in, False when auth is off; else off to /login."""
    if not service.auth_enabled(session, settings):
        return False
    if _cookie_user(request, session, settings):
        return True
    target = "/login?next=" + quote(request.url.path, safe="/")
    if request.headers.get("HX-Request"):
        raise HTTPException(401, "log in first", headers={"HX-Redirect": target})
    raise HTTPException(303, "log in first", headers={"Location": target})


def csrf_token(request: Request) -> str:
    """The token a page puts in forms (hidden csrf_token) and htmx headers (X-CSRF-Token)."""
    binding = _csrf_binding(request)
    if binding is None:  # a browser's first visit: give it its own CSRF cookie
        value = secrets.token_urlsafe(32)
        request.state.csrf_cookie = value  # app/security.py sends it with the response
        binding = "a:" + value
    return service.csrf_token(get_settings(), binding)


def _csrf_binding(request: Request) -> str | None:
    """What a CSRF token is bound to: the session cookie, else the browser's CSRF cookie."""
    if session_cookie := request.cookies.get(SESSION_COOKIE):
        return "s:" + session_cookie
    if anonymous := request.cookies.get(CSRF_COOKIE):
        return "a:" + anonymous
    return None


async def require_csrf(request: Request, settings: SettingsDep) -> None:
    """State-changing page routes: the token from csrf_token() must come back."""
    if request.method in SAFE_METHODS:
        return
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and _is_form(request):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not service.csrf_ok(settings, _csrf_binding(request), presented):
        raise HTTPException(403, "missing or stale CSRF token: reload the page and try again")


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


ApiAuth = Depends(require_api_token)
PageUser = Annotated[bool, Depends(require_page_user)]
Csrf = Depends(require_csrf)
