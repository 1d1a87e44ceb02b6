"""Issue 22, item 6, with real stalled sockets: headers and bodies have ``read_timeout`` to arrive, connections past
``max_connections`` are shed before the API key is read, and SIGTERM does not wait for stalled uploads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from support import DOCUMENTS, QUERIES, free_port

from rerank_plugins.serve import ServeConfig, create_app
from rerank_plugins.serve.testing import serve_in_thread

ROOT = Path(__file__).parents[2]
BODY = b'{"query": "q", "documents": ["a", "b"]}'
HEADERS = b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def answer_of(raw: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (at most 60 s)."""
    chunks = []
    while chunk := raw.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def stalled(url: str, count: int, sent: bytes) -> Iterator[list[socket.socket]]:
    """``count`` connections that send ``sent`` and then nothing more."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(connect(url)) for _ in range(count)]
        for raw in sockets:
            if sent:
                raw.sendall(sent)
        yield sockets


@pytest.mark.parametrize(
    ("sent", "what"),
    [
        (b"", "headers"),  # connected, sends nothing
        (b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\n", "headers"),  # half the headers
        (HEADERS % len(BODY) + BODY[:10], "body"),  # the headers, then a stalled body
    ],
)
def test_a_stalled_request_gets_a_408_and_the_connection_is_closed(load_tiny: Callable, sent: bytes, what: str) -> None:
    app = create_app(ServeConfig(read_timeout=1), models={"m": load_tiny("sequence-classification")})
    with serve_in_thread(app) as url, stalled(url, 1, sent) as (raw,):
        answer = answer_of(raw)  # returns once the server closes the connection
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert f"the request {what} did not arrive within 1 s (read_timeout)".encode() in body


def test_valid_clients_are_answered_while_stalled_connections_pile_up(load_tiny: Callable) -> None:
    model = load_tiny("sequence-classification")
    app = create_app(ServeConfig(read_timeout=120), models={"m": model})
    with serve_in_thread(app) as url:
        half = b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\n"
        with stalled(url, 40, half), stalled(url, 40, HEADERS % len(BODY)):
            answer = httpx.post(f"{url}/v1/rerank", json={"query": QUERIES[0], "documents": DOCUMENTS}, timeout=60)
    assert answer.status_code == 200
    expected = {r["corpus_id"]: r["score"] for r in model.rank(QUERIES[0], DOCUMENTS)}
    assert {r["index"]: r["relevance_score"] for r in answer.json()["results"]} == pytest.approx(expected, abs=1e-6)


def test_connections_past_the_limit_are_shed_before_the_api_key(load_tiny: Callable) -> None:
    config = ServeConfig(read_timeout=120, max_connections=4, api_key="k")
    app = create_app(config, models={"m": load_tiny("sequence-classification")})
    with serve_in_thread(app) as url:
        no_key = {"query": "q", "documents": ["a"]}
        assert httpx.post(f"{url}/v1/rerank", json=no_key, timeout=60).status_code == 401  # not loaded: the key
        with stalled(url, 3, HEADERS % len(BODY)):
            time.sleep(0.2)  # not a timing assertion: lets the server register the three connections
            shed = httpx.post(f"{url}/v1/rerank", json=no_key, timeout=60)
            assert shed.status_code == 503, shed.text
        deadline = time.monotonic() + 60  # the stalled ones closed: their connections go
        while (answer := httpx.post(f"{url}/v1/rerank", json=no_key, timeout=60)).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert answer.status_code == 401


def test_sigterm_does_not_wait_for_stalled_uploads(tiny_paths: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    # Reads and requests may take 5 minutes: only the shutdown's own handling of stalled uploads ends them early.
    command = [sys.executable, "-m", "rerank_plugins", "serve", "--model", tiny_paths["sequence-classification"],
               "--port", str(port), "--read-timeout", "300", "--request-timeout", "300",
               "--log-level", "warning"]  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        with stalled(url, 3, HEADERS % len(BODY) + BODY[:5]) as uploads:
            time.sleep(0.5)  # not a timing assertion: lets the server start reading the three bodies
            server.send_signal(signal.SIGTERM)
            answers = [answer_of(raw) for raw in uploads]
        status = server.wait(90)  # without the shutdown's own handling: 300 s of reads, then 305 s of grace
    finally:
        if server.poll() is None:
            server.kill()
    assert status in (0, -signal.SIGTERM), log.read_text()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 503 ") and b"shutting down" in answer
    assert "Traceback" not in log.read_text()
