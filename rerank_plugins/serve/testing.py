"""A real server for tests: the app under uvicorn (as ``rerank-plugins serve`` runs it), in a thread, on a free
loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", startup_timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` (made by ``create_app``) on ``host`` and a free port; yield its base URL; stop it (gracefully,
    as on SIGTERM) on exit."""
    from rerank_plugins.serve.server import Server, uvicorn_config

    config = uvicorn_config(app, host=host, port=0, log_level="warning")
    server = Server(config, app.state.draining)
    thread = threading.Thread(target=server.run, name="rerank-plugins-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        app.state.draining.set()
        server.should_exit = True
        thread.join(startup_timeout)
