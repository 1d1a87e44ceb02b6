"""Ray Serve on a local Ray instance: ``rerank-plugins serve --engine ray`` with two replicas, and Ray's own
``serve run`` with the config of docs/serving.md, answer with ``CrossEncoder.rank``'s scores; the flags
become Ray's deployment options; SIGTERM lets the requests in flight finish."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import DOCUMENTS, QUERIES, ROOT, code_blocks, free_port

from rerank_plugins.cli import build_parser

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'rerank-plugins[ray-serve]'")
yaml = pytest.importorskip("yaml")  # a dependency of ray

from rerank_plugins.serve.ray_serve import (  # noqa: E402  (after the skip: it needs ray.serve)
    DEPLOYMENT_NAME,
    build_application,
    deployment_options,
    parse_builder_args,
)

STARTUP_TIMEOUT = 240  # a local Ray instance, its proxy and two replicas loading on two cores


def parse(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "--model", "m=/models/m", *flags])


def test_builder_args_are_the_serve_flags() -> None:
    args = parse_builder_args(
        {"model": ["a=/x", "b=/y"], "max_documents": 50, "trust_remote_code": True, "replicas": "1:3", "device": "cpu"}
    )
    assert args.model == ["a=/x", "b=/y"] and args.max_documents == 50 and args.device == "cpu"
    assert args.trust_remote_code is True and args.replicas == (1, 3) and args.engine == "uvicorn"
    assert parse_builder_args({"model": "a", "trust_remote_code": False}).trust_remote_code is False
    with pytest.raises(ValueError, match=r"--max-documents.*'many'"):
        parse_builder_args({"model": "a", "max_documents": "many"})
    with pytest.raises(ValueError, match="--model"):
        parse_builder_args({"max_documents": 5})
    for key in ("port", "host", "engine"):
        with pytest.raises(ValueError, match=f"^{key}: set by Ray Serve"):
            parse_builder_args({"model": "a", key: "x"})


@pytest.mark.parametrize("text", ["0", "3:1", "two", "1:", ":2"])
def test_replicas_that_cannot_be(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_status:
        parse("--replicas", text)
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert "--replicas" in error and repr(text) in error and len(error.strip().splitlines()) == 1


def test_deployment_options_from_the_flags() -> None:
    fixed = deployment_options(parse("--replicas", "3", "--replica-cpus", "0.5"), request_timeout=60)
    assert fixed["name"] == DEPLOYMENT_NAME and fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.0}
    assert fixed["graceful_shutdown_timeout_s"] == 65 and fixed["max_ongoing_requests"] == 64
    scaled = deployment_options(parse("--replicas", "1:4", "--target-ongoing-requests", "3"), request_timeout=10)
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 3.0}
    assert deployment_options(parse("--device", "cuda:1"), 60)["ray_actor_options"]["num_gpus"] == 1.0
    assert deployment_options(parse("--device", "cuda", "--replica-gpus", "0.5"), 60)["ray_actor_options"] == {
        "num_cpus": 1.0,
        "num_gpus": 0.5,
    }
    # Ray itself accepts these options (a misspelt or retired one is a TypeError here), without a cluster.
    assert build_application(parse("--replicas", "1:4")) is not None
    assert build_application(parse("--replicas", "2", "--api-key", "k")) is not None


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a command under test: this checkout importable, offline, a Ray of its own."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


@contextmanager
def process(command: list[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` in a session of its own, its output in ``log``; on the way out, the whole session is killed
    if it still runs (Ray's processes with it)."""
    with log.open("wb") as output:
        child = subprocess.Popen(
            command, env=child_env(), cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(30)


def wait_until(ready: Callable[[], bool], child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        assert child.poll() is None, log.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, "not up in time:\n" + log.read_text(errors="replace")[-4000:]
        time.sleep(0.5)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def expected(load_tiny: Callable, kind: str, query: str, documents: list[str]) -> dict[int, float]:
    return {r["corpus_id"]: r["score"] for r in load_tiny(kind).rank(query, documents)}


def scores_of(answer: httpx.Response) -> dict[int, float]:
    assert answer.status_code == 200, answer.text
    return {r["index"]: r["relevance_score"] for r in answer.json()["results"]}


def test_the_command_serves_two_replicas_and_drains_on_sigterm(
    tiny_paths: dict[str, str], load_tiny: Callable, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "ray-serve.log"
    command = [sys.executable, "-m", "rerank_plugins", "serve", "--engine", "ray", "--replicas", "2",
               "--replica-cpus", "0.5", "--model", f"t5={tiny_paths['monot5']}",
               "--model", f"lc={tiny_paths['listconranker']}", "--port", str(port), "--device", "cpu",
               "--log-level", "warning"]  # fmt: skip
    with process(command, log, tmp_path) as server:
        wait_until(lambda: "rerank-plugins: serving" in log.read_text(errors="replace"), server, log)
        assert "serving t5, lc on Ray Serve, 2 replica(s) running (2)" in log.read_text()
        assert healthy(url)
        models = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
        assert [(m["id"], m["family"], m["listwise"]) for m in models] == [
            ("t5", "monot5", False),
            ("lc", "listconranker", True),
        ]
        for kind, name in (("monot5", "t5"), ("listconranker", "lc")):  # ListConRanker: the list, whole
            answer = httpx.post(f"{url}/v1/rerank", json={"model": name, "query": QUERIES[0], "documents": DOCUMENTS})
            assert scores_of(answer) == pytest.approx(expected(load_tiny, kind, QUERIES[0], DOCUMENTS), abs=1e-6)

        # Four long requests spread over the replicas; SIGTERM while they are being scored: all are answered.
        documents = [DOCUMENTS[i % len(DOCUMENTS)] + f" {i}" for i in range(600)]
        answers: list[tuple[str, httpx.Response]] = []

        def ask(query: str) -> None:
            body = {"model": "t5", "query": query, "documents": documents}
            answers.append((query, httpx.post(f"{url}/v1/rerank", json=body, timeout=120)))

        threads = [threading.Thread(target=ask, args=(QUERIES[i % 2],)) for i in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while "rerank_plugins_requests_in_flight 0.0" in httpx.get(f"{url}/metrics", timeout=10).text:
            assert len(answers) < 4 and time.monotonic() < deadline, "no request was seen in flight"
            time.sleep(0.02)
        server.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        assert server.wait(90) == 0, log.read_text(errors="replace")[-4000:]
    assert len(answers) == 4
    for query, answer in answers:
        assert scores_of(answer) == pytest.approx(expected(load_tiny, "monot5", query, documents), abs=1e-6)
    assert "shutting down Ray Serve" in log.read_text() and "Traceback" not in log.read_text()
    assert not healthy(url)


def documented_config() -> dict[str, Any]:
    blocks = [block for block in code_blocks("docs/serving.md") if block.lang == "yaml"]
    assert len(blocks) == 1, "docs/serving.md has one Ray Serve config"
    config: dict[str, Any] = yaml.safe_load(blocks[0].code)
    return config


def test_serve_run_with_the_documented_config(tiny_paths: dict[str, str], load_tiny: Callable, tmp_path: Path) -> None:
    config = documented_config()
    (application,) = config["applications"]
    assert application["import_path"] == "rerank_plugins.serve.ray_serve:app"
    assert [d["name"] for d in application["deployments"]] == [DEPLOYMENT_NAME]
    # The documented file, pointed at tiny local models and a free port; nothing else changed.
    port = free_port()
    config["http_options"]["port"] = port
    application["args"]["model"] = [f"inranker={tiny_paths['monot5']}", f"listcon={tiny_paths['listconranker']}"]
    path = tmp_path / "rerank-serve.yaml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve-run.log"
    with process([str(Path(sys.executable).parent / "serve"), "run", str(path)], log, tmp_path) as server:
        wait_until(lambda: healthy(url), server, log)
        models = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
        assert [m["id"] for m in models] == ["inranker", "listcon"]
        v2 = httpx.post(f"{url}/v2/rerank", json={"model": "listcon", "query": QUERIES[2], "documents": DOCUMENTS})
        assert scores_of(v2) == pytest.approx(expected(load_tiny, "listconranker", QUERIES[2], DOCUMENTS), abs=1e-6)
        tei = httpx.post(f"{url}/rerank", json={"query": QUERIES[1], "texts": DOCUMENTS})  # the first model
        assert tei.status_code == 200
        got = {r["index"]: r["score"] for r in tei.json()}
        assert got == pytest.approx(expected(load_tiny, "monot5", QUERIES[1], DOCUMENTS), abs=1e-6)
        too_many = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["d"] * 1001})
        assert too_many.status_code == 413 and too_many.json()["field"] == "documents"  # max_documents: 1000
        server.send_signal(signal.SIGINT)  # what Ctrl-C sends: `serve run` deletes the application, stops Ray
        assert server.wait(90) == 0, log.read_text(errors="replace")[-4000:]
    assert not healthy(url)


def test_a_model_that_cannot_load_is_one_line(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "rerank_plugins", "serve", "--engine", "ray", "--port", str(free_port()),
            "--device", "cpu", "--log-level", "error"]  # fmt: skip
    env = child_env(RAY_SERVE_MAX_PER_REPLICA_RETRY_COUNT="1")
    # Found before Ray starts: the replicas would run on this machine, where the path does not exist.
    missing = subprocess.run(
        [*base, "--model", str(tmp_path / "missing")], capture_output=True, text=True, env=env, timeout=120
    )
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1  # no Ray was started
    assert (
        missing.stderr.strip().splitlines()[-1]
        == f"rerank-plugins: error: {tmp_path / 'missing'}: no such model directory"
    )
    # Found by the replica, when it loads: Ray's record of its failure, as one line.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    failed = subprocess.run([*base, "--model", str(broken)], capture_output=True, text=True, env=env, timeout=240)
    assert failed.returncode == 2, failed.stderr[-3000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"rerank-plugins: error: Ray Serve could not start the replicas: could not load model '{broken}'"
    )
    assert "model_type" in last and "Traceback" not in failed.stderr
