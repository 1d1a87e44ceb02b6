"""``python -m benchmarks.serve``: throughput and latency of ``rerank-plugins serve``, with and without batching.

It starts the server as its own process (on 127.0.0.1) twice, with dynamic batching (``--max-wait-ms``,
default 5) and without it (0), and on each sends real TREC DL19 queries with their BM25 passages to
``POST /v1/rerank``: first one request at a time, then from ``--clients`` concurrent clients. It prints requests
and pairs per second, the speed-up against one request at a time, and p50/p99 latency, and checks that every
answer has the scores of the first (sequential) answer to the same request. Not a test: run it by hand.

    python -m benchmarks.serve                                  # MiniLM-L6 cross-encoder shape, CPU
    python -m benchmarks.serve --model PATH --family monot5 --device cuda --clients 32 --requests 20
    python -m benchmarks.serve --ray-replicas 2                 # and Ray Serve with 2 replicas (batching on)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/serve.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks import data
from benchmarks.models import BENCH, ensure_model

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    args: argparse.Namespace, model: str, wait_ms: float, extra: list[str]
) -> tuple[subprocess.Popen, str]:
    """The server process (``extra``: more ``serve`` flags) and its URL, once ``/health`` answers."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "rerank_plugins",
        "serve",
        "--model",
        f"m={model}",
        "--port",
        str(port),
        "--max-wait-ms",
        str(wait_ms),
        "--batch-size",
        str(args.batch_size),
        "--log-level",
        "warning",
        "--request-timeout",
        "3600",
        *extra,
    ]
    if args.family:
        command += ["--family", args.family]
    if args.device:
        command += ["--device", args.device]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.kill()
    raise SystemExit("the server did not come up within 300 s")


async def _send(http: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, dict[int, float]]:
    started = time.perf_counter()
    response = await http.post("/v1/rerank", json=body)
    response.raise_for_status()
    return time.perf_counter() - started, {r["index"]: r["relevance_score"] for r in response.json()["results"]}


async def measure(url: str, bodies: list[dict[str, Any]], clients: int, requests: int) -> dict[str, Any]:
    """``clients`` clients each sending ``requests`` requests (client i starts at body i); their timings."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as http:
        await _send(http, bodies[0])  # warm-up

        async def client(number: int) -> list[tuple[int, float, dict[int, float]]]:
            out = []
            for j in range(requests):
                k = (number + j) % len(bodies)
                seconds, scores = await _send(http, bodies[k])
                out.append((k, seconds, scores))
            return out

        started = time.perf_counter()
        results = await asyncio.gather(*(client(n) for n in range(clients)))
        wall = time.perf_counter() - started
    answers = [answer for per_client in results for answer in per_client]
    latencies = sorted(seconds for _, seconds, _ in answers)
    pairs = sum(len(bodies[k]["documents"]) for k, _, _ in answers)
    return {
        "requests": len(answers),
        "pairs": pairs,
        "seconds": wall,
        "requests_per_s": len(answers) / wall,
        "pairs_per_s": pairs / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "answers": {k: scores for k, _, scores in answers},
        "all_answers": answers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or directory (default: a MiniLM-L6 cross-encoder shape, built once)")
    parser.add_argument("--family", help="force a family for --model")
    parser.add_argument("--device", help="cpu, cuda ...")
    parser.add_argument("--data", type=Path, default=data.DEFAULT_DATA, help="bm25-top100.json of TREC DL19")
    parser.add_argument("--queries", type=int, default=16, help="distinct requests (one query each)")
    parser.add_argument("--depth", type=int, default=20, help="passages per request")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8, help="requests per client")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0, help="--max-wait-ms of the batching server")
    parser.add_argument(
        "--ray-replicas",
        type=int,
        default=0,
        help="also measure `serve --engine ray` with this many replicas (0: not measured)",
    )
    parser.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs reserved per Ray Serve replica")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    groups = data.groups(data.load_run(args.data), args.queries, args.depth)
    bodies = [{"model": "m", "query": query, "documents": passages} for query, passages in groups]
    model = args.model or str(
        ensure_model(
            BENCH["sequence-classification"],
            Path(tempfile.gettempdir()) / "rerank-bench",
            [p for _, ps in groups for p in ps],
        )
    )
    report: dict[str, Any] = {
        "model": model,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "depth": args.depth,
        "rows": [],
    }
    reference: dict[int, dict[int, float]] | None = None
    worst = 0.0
    servers: list[tuple[str, float, list[str]]] = [
        ("dynamic batching", args.wait_ms, []),
        ("no batching", 0.0, []),
    ]
    if args.ray_replicas:
        flags = ["--engine", "ray", "--replicas", str(args.ray_replicas), "--replica-cpus", str(args.replica_cpus)]
        servers.append((f"ray serve x{args.ray_replicas}", args.wait_ms, flags))
    for label, wait_ms, extra in servers:
        server, url = start_server(args, model, wait_ms, extra)
        try:
            one = asyncio.run(measure(url, bodies, 1, len(bodies)))
            many = asyncio.run(measure(url, bodies, args.clients, args.requests))
        finally:
            server.terminate()
            server.wait(120)
        reference = reference or one["answers"]
        for k, _, scores in one["all_answers"] + many["all_answers"]:
            worst = max(worst, max(abs(scores[i] - reference[k][i]) for i in scores))
        for mode, row in (("one at a time", one), (f"{args.clients} clients", many)):
            report["rows"].append(
                {"server": label, "mode": mode, **{key: value for key, value in row.items() if "answers" not in key}}
            )
    print(f"model {model}; {args.depth} passages a request; {args.clients} clients x {args.requests} requests")
    print(f"{'server':<18} {'mode':<14} {'req/s':>8} {'pairs/s':>9} {'speed-up':>9} {'p50 ms':>8} {'p99 ms':>8}")
    base = next(row["pairs_per_s"] for row in report["rows"] if row["mode"] == "one at a time")
    for row in report["rows"]:
        print(
            f"{row['server']:<18} {row['mode']:<14} {row['requests_per_s']:>8.1f} {row['pairs_per_s']:>9.0f} "
            f"{row['pairs_per_s'] / base:>8.2f}x {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}"
        )
    print(f"largest score difference from the first sequential answer: {worst:.2e}")
    report["max_score_difference"] = worst
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
