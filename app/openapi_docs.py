"""Error bodies and the error responses that OpenAPI documents for each route."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    detail: str


def error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# FastAPI types `responses` as dict[int | str, ...]; a plain {401: ...} would infer dict[int, ...].
Responses = dict[int | str, dict[str, Any]]
UNAUTHORIZED: Responses = {401: error("Missing or wrong bearer token (only when auth is on)")}
