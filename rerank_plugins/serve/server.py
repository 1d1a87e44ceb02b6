"""The application under uvicorn: connections shed first, reads bounded, a bounded shutdown.

uvicorn alone waits forever for a connection that opens and sends nothing, or half its headers, and a process
can run out of file descriptors under a flood of such connections. Here (the app's :class:`ServeConfig`):

- ``max_connections`` (by default what the open-file limit allows) open connections, at most: past it uvicorn
  answers 503 before the application, so before the API key is read;
- ``read_timeout`` for a request's headers (:func:`bounded_protocol`, here) and then for its body (the app's
  :class:`~rerank_plugins.serve.guard.Guard`): a 408 and the connection closed; an idle kept-alive connection is
  closed after uvicorn's 5 s;
- on SIGTERM or Ctrl-C: no new connections, requests still sending their body answered 503 at once, requests being
  scored finish (each within ``request_timeout``); the shutdown waits at most the larger of ``request_timeout``
  and ``read_timeout``, plus 5 s.
"""

from __future__ import annotations

import json
import socket
import threading
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from rerank_plugins.serve.config import ServeConfig

KEEP_ALIVE_SECONDS = 5
"""How long an idle kept-alive connection stays open (uvicorn's default)."""


def max_connections(config: ServeConfig) -> int | None:
    """``config.max_connections``, else what the process's open-file limit allows (less the files it needs)."""
    if config.max_connections is not None:
        return config.max_connections
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no such limit on this platform
        return None
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(8, min(4096, soft - 64))  # model files, logs and the listening socket need descriptors too


def bounded_protocol(read_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, with ``read_timeout`` seconds for a request's headers: a connection that sends
    nothing, or only part of its headers, gets a 408 and is closed."""
    body = json.dumps(
        {
            "message": f"the request headers did not arrive within {read_timeout:g} s (read_timeout)",
            "error": f"the request headers did not arrive within {read_timeout:g} s (read_timeout)",
            "error_type": "timeout",
            "field": None,
        }
    ).encode()
    late = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )

    class BoundedH11Protocol(H11Protocol):
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._awaiting_headers():
                self._disarm()
            elif self._header_timer is None:  # the first bytes of the next request on a kept-alive connection
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _awaiting_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(read_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and self._awaiting_headers():
                self.transport.write(late)
                self.transport.close()

    return BoundedH11Protocol


class Server(uvicorn.Server):
    """uvicorn's server, which tells the application (``draining``) when a shutdown starts."""

    def __init__(self, config: uvicorn.Config, draining: threading.Event) -> None:
        super().__init__(config)
        self.draining = draining

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.draining.set()
        super().handle_exit(sig, frame)


def uvicorn_config(
    app: Any, host: str | None = None, port: int | None = None, log_level: str | None = None
) -> uvicorn.Config:
    """uvicorn's settings for ``app`` (made by ``create_app``), from its :class:`ServeConfig` (``host``, ``port``
    and ``log_level`` override the config's)."""
    config: ServeConfig = app.state.config
    return uvicorn.Config(
        app,
        host=config.host if host is None else host,
        port=config.port if port is None else port,
        log_level=config.log_level if log_level is None else log_level,
        http=bounded_protocol(config.read_timeout),
        limit_concurrency=max_connections(config),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=int(max(config.request_timeout, config.read_timeout)) + 5,
        lifespan="on",
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, as uvicorn would open it; an ``OSError`` when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run(app: Any, sock: socket.socket | None = None) -> None:
    """Serve ``app`` under uvicorn until SIGINT or SIGTERM (on ``sock`` when given, e.g. from :func:`bind`)."""
    server = Server(uvicorn_config(app), app.state.draining)
    server.run(sockets=[sock] if sock is not None else None)
