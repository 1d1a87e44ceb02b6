"""What runs before any parsing, for every HTTP request: the API key, then the body's time and size.

Under uvicorn, load is shed earlier still (``ServeConfig.max_connections``: a 503 before this guard runs) and the
headers have ``read_timeout`` to arrive (``rerank_plugins.serve.server``). Here:

1. the API key, compared as bytes (a key with non-ASCII characters, sent as UTF-8, matches);
2. the body: at most ``max_body_bytes`` (413) within ``read_timeout`` seconds (408), read whole, then replayed to
   the application; once the server is shutting down, a request still sending its body is answered 503 at once
   (so that a stalled upload never holds up the shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rerank_plugins.serve.config import ServeConfig
from rerank_plugins.serve.errors import error_response

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
"""Paths answered without the API key."""
POLL_SECONDS = 0.25
"""How often a body read checks whether the server is shutting down."""


class Guard:
    """ASGI middleware: see the module's docstring. ``draining`` is set when the server starts shutting down."""

    def __init__(self, app: ASGIApp, config: ServeConfig, draining: threading.Event) -> None:
        self.app = app
        self.config = config
        self.draining = draining
        key = config.api_key
        # The header's bytes are compared: as UTF-8 (what clients send), or Latin-1 (what some clients send).
        self.keys = [] if key is None else list(dict.fromkeys(_encodings(key)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.keys and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            token = token.strip()
            if scheme.lower() != b"bearer" or not any(hmac.compare_digest(token, key) for key in self.keys):
                reason = "missing" if not given else "wrong"
                await _send(send, error_response(
                    401, f"{reason} API key: send the header 'Authorization: Bearer <key>'", "authentication",
                    "Authorization", {"www-authenticate": "Bearer"},
                ))  # fmt: skip
                return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body = await self._read_body(headers, receive, send)
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once an error was sent (or the client left)."""
        limit, timeout = self.config.max_body_bytes, self.config.read_timeout
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            await _send(send, error_response(413, f"the request body has {declared} bytes; at most {limit}",
                                             "payload_too_large"))  # fmt: skip
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._next(receive, deadline)
            if message is None:
                if self.draining.is_set():
                    await _send(send, error_response(
                        503, "the server is shutting down; retry on another server or later", "unavailable",
                        headers={"Retry-After": str(self.config.retry_after), "Connection": "close"},
                    ))  # fmt: skip
                else:
                    await _send(send, error_response(
                        408, f"the request body did not arrive within {timeout:g} s (read_timeout)", "timeout",
                    ))  # fmt: skip
                return None
            if message["type"] == "http.disconnect":
                return None  # the client left before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send(send, error_response(413, f"the request body has more than {limit} bytes",
                                                 "payload_too_large"))  # fmt: skip
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _next(self, receive: Receive, deadline: float) -> Message | None:
        """The next message, or None at the deadline or once the server is shutting down."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(receive())
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0 or self.draining.is_set():
                    return None
                done, _ = await asyncio.wait({task}, timeout=min(POLL_SECONDS, remaining))
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()


def _encodings(key: str) -> list[bytes]:
    out = [key.encode("utf-8")]
    with contextlib.suppress(UnicodeEncodeError):  # a key with characters beyond Latin-1 has no such form
        out.append(key.encode("latin-1"))
    return out


async def _send(send: Send, response: JSONResponse) -> None:
    await response({"type": "http"}, _nothing, send)


async def _nothing() -> Any:
    return {"type": "http.disconnect"}
