"""The login form that turns an API token into a session cookie for the pages."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import service
from app.auth.deps import (
    SESSION_COOKIE,
    Csrf,
    csrf_token,
    failed_attempt,
    refuse_while_throttled,
)
from app.deps import SessionDep, SettingsDep
from app.templating import templates

router = APIRouter(tags=["pages"], include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a local path: no scheme, no host, no backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(request: Request, next_path: str, error: str | None = None,
               status: int = 200) -> HTMLResponse:
    context = {"next": safe_next(next_path), "error": error, "csrf": csrf_token(request)}
    return templates.TemplateResponse(request, "auth/login.html", context, status_code=status)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return login_page(request, next)


@router.post("/login", dependencies=[Csrf])
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    refuse_while_throttled(request)
    token_hash = service.identify(session, settings, token.strip())
    if token_hash is None:
        failed_attempt(request)
        return login_page(request, next, "That token is not valid.", status=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, service.make_session(session, settings, token_hash),
                        max_age=service.SESSION_SECONDS, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    service.end_session(session, settings, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
