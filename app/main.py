"""The FastAPI application factory."""
from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles

from app.auth.deps import ApiAuth, Csrf, require_page_user
from app.auth.views import router as auth_views
from app.datasets.api import router as datasets_api
from app.jobs.api import router as jobs_api
from app.jobs.api import spec_errors
from app.jobs.views import router as jobs_views
from app.limits import BodySizeLimit
from app.openapi_docs import UNAUTHORIZED

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app() -> FastAPI:
    app = FastAPI(title="tunedeck", version="0.1.0",
                  description="Launch and watch Hugging Face fine-tunes.")
    app.add_middleware(BodySizeLimit)
    app.add_exception_handler(RequestValidationError, spec_errors)
    app.include_router(jobs_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(datasets_api, dependencies=[ApiAuth], responses=UNAUTHORIZED)
    app.include_router(auth_views)
    app.include_router(jobs_views, dependencies=[Depends(require_page_user), Csrf])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
