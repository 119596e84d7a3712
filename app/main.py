"""The FastAPI application factory."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.auth.deps import ApiAuth, Csrf, require_page_user
from app.auth.throttle import FailureLimiter
from app.auth.views import router as auth_views
from app.compare.api import router as compare_api
from app.compare.views import router as compare_views
from app.config import get_settings
from app.datasets.api import router as datasets_api
from app.errors import (
    Conflict,
    Invalid,
    InvalidAll,
    NotFound,
    TooLarge,
    Unavailable,
    WorkerFailed,
)
from app.hub.api import router as hub_api
from app.hub.views import router as hub_views
from app.jobs.api import router as jobs_api
from app.jobs.api import spec_errors
from app.jobs.events import lifespan as event_streams
from app.jobs.views import router as jobs_views
from app.limits import BodySizeLimit
from app.openapi_docs import UNAUTHORIZED
from app.preflight.api import router as preflight_api
from app.preflight.views import router as preflight_views
from app.security import SiteGuard
from app.sweeps.api import router as sweeps_api
from app.sweeps.views import router as sweeps_views
from app.tryit.api import router as tryit_api
from app.tryit.views import router as tryit_views
from app.workers.views import router as workers_views

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app() -> FastAPI:
    app = FastAPI(title="tunedeck", version="0.1.0",
                  description="Launch and watch Hugging Face fine-tunes.", lifespan=event_streams)
    app.state.auth_failures = FailureLimiter(get_settings().auth_failures_per_minute)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(SiteGuard)  # the outermost: a foreign Host is refused before anything
    app.add_exception_handler(RequestValidationError, spec_errors)
    add_error_handlers(app)
    app.include_router(jobs_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(tryit_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(datasets_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(hub_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(sweeps_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(preflight_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(compare_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(auth_views)
    app.include_router(preflight_views, dependencies=[Depends(require_page_user), Csrf])
    app.include_router(jobs_views, dependencies=[Depends(require_page_user), Csrf])
    app.include_router(hub_views, dependencies=[Depends(require_page_user), Csrf])
    app.include_router(tryit_views, dependencies=[Depends(require_page_user), Csrf])
    app.include_router(sweeps_views, dependencies=[Depends(require_page_user), Csrf])
    app.include_router(compare_views, dependencies=[Depends(require_page_user), Csrf])
    app.include_router(workers_views, dependencies=[Depends(require_page_user), Csrf])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def add_error_handlers(app: FastAPI) -> None:
    """The domain errors as HTTP answers, for every route: routes just let them propagate."""
    for error, status in ((NotFound, 404), (Conflict, 409), (TooLarge, 413),
                          (Unavailable, 503), (WorkerFailed, 500)):
        app.add_exception_handler(error, _plain(status))
    app.add_exception_handler(Invalid, _invalid)
    app.add_exception_handler(InvalidAll, _invalid_all)


def _plain(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status)
    return handler


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 shaped like FastAPI's own validation errors, naming the field (query or body)."""
    assert isinstance(exc, Invalid)
    where = "query" if request.method in ("GET", "HEAD") else "body"
    return JSONResponse({"detail": [{"loc": [where, *exc.field.split(".")], "msg": exc.message,
                                     "type": "value_error"}]}, 422)


async def _invalid_all(request: Request, exc: Exception) -> JSONResponse:
    """422 with one entry per problem (a sweep's bad points), each naming its field."""
    assert isinstance(exc, InvalidAll)
    where = "query" if request.method in ("GET", "HEAD") else "body"
    return JSONResponse({"detail": [{"loc": [where, *loc], "msg": message, "type": "value_error"}
                                    for loc, message in exc.problems]}, 422)
