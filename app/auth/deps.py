"""Auth dependencies: bearer tokens for /api, the session cookie for pages, CSRF for forms."""
from __future__ import annotations

from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import repository, service
from app.config import Settings, get_settings
from app.db import read_only, session_scope, utcnow
from app.deps import SessionDep, SettingsDep

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
    """
    settings = get_settings()
    bearer = credentials.credentials if credentials is not None else None
    if bearer is not None and service.is_env_token(settings, bearer):
        return
    cookie = request.cookies.get(SESSION_COOKIE) if request.method in SAFE_METHODS else None
    verdict, due = read_only(partial(service.api_access, settings=settings, bearer=bearer,
                                     session_cookie=cookie))
    if due is not None:
        await run_in_threadpool(_mark_used, due)
    if verdict == "wrong":
        raise unauthorized("wrong bearer token")
    if verdict == "missing":
        raise unauthorized("missing bearer token: send 'Authorization: Bearer <token>' "
                           "(create one with `tunedeck token create NAME`)")


def _mark_used(token_id: int) -> None:
    with session_scope() as session:
        repository.mark_used(session, token_id, utcnow())


def _cookie_user(request: Request, session: Session, settings: Settings) -> str | None:
    token_hash = service.read_session(settings, request.cookies.get(SESSION_COOKIE))
    if token_hash and service.is_current(session, settings, token_hash):
        return token_hash
    return None


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
    return service.csrf_token(get_settings(), request.cookies.get(SESSION_COOKIE))


async def require_csrf(request: Request, settings: SettingsDep) -> None:
    """State-changing page routes: the token from csrf_token() must come back."""
    if request.method in SAFE_METHODS:
        return
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and _is_form(request):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not service.csrf_ok(settings, request.cookies.get(SESSION_COOKIE), presented):
        raise HTTPException(403, "missing or stale CSRF token: reload the page and try again")


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


ApiAuth = Depends(require_api_token)
PageUser = Annotated[bool, Depends(require_page_user)]
Csrf = Depends(require_csrf)
