"""A cap on request body size, enforced while the body streams in (pure ASGI middleware)."""
from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import get_settings

# Room for multipart boundaries and form fields around an upload of exactly the limit.
OVERHEAD_BYTES = 1024 * 1024


def too_large_message(limit_mb: int) -> str:
    return f"the request is larger than the upload limit of {limit_mb} MB (TUNEDECK_MAX_UPLOAD_MB)"


class BodySizeLimit:
    """413 on a Content-Length over the limit; otherwise counts the bytes as they arrive."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_mb = get_settings().max_upload_mb
        limit = limit_mb * 1024 * 1024 + OVERHEAD_BYTES
        if _declared_length(scope) > limit:
            await _reject(send, too_large_message(limit_mb))
            return
        await self.app(scope, _counting(receive, limit, limit_mb), send)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _counting(receive: Receive, limit: int, limit_mb: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise HTTPException(413, too_large_message(limit_mb))
        return message

    return wrapped


async def _reject(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
