"""``rerank-plugins serve``: its flags, a light ``--help``, and a real server process that drains on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from support import DOCUMENTS, QUERIES, ROOT, free_port

from rerank_plugins.cli import CommandError, build_parser
from rerank_plugins.serve.cli import build_settings, model_specs


def test_registering_serve_imports_neither_torch_nor_fastapi() -> None:
    code = (
        "import argparse, sys\n"
        "from rerank_plugins.serve.cli import register\n"
        "register(argparse.ArgumentParser().add_subparsers())\n"
        "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_models_families_and_presets_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RERANK_PLUGINS_API_KEY", raising=False)
    argv = ["serve", "--model", "unicamp-dl/InRanker-base", "--model", "mine=/models/r-star", "--family",
            "mine=sequence-classification", "--preset", "mine=xpmir/monobert", "--device", "cpu"]  # fmt: skip
    args = build_parser().parse_args(argv)
    assert args.host == "127.0.0.1" and args.api_key is None
    specs = model_specs(args)
    assert [(name, source) for name, source, _ in specs] == [
        ("unicamp-dl/InRanker-base", "unicamp-dl/InRanker-base"),
        ("mine", "/models/r-star"),
    ]
    assert specs[0][2] == {"trust_remote_code": False, "device": "cpu", "family": None, "preset": None}
    assert specs[1][2]["family"] == "sequence-classification" and specs[1][2]["preset"] == "xpmir/monobert"
    everyone = model_specs(build_parser().parse_args(["serve", "--model", "a", "--model", "b", "--family", "monot5"]))
    assert [kwargs["family"] for _, _, kwargs in everyone] == ["monot5", "monot5"]
    with pytest.raises(CommandError, match="no --model is served as 'c'"):
        model_specs(build_parser().parse_args(["serve", "--model", "a", "--family", "c=monot5"]))
    with pytest.raises(CommandError, match="given twice"):
        model_specs(build_parser().parse_args(["serve", "--model", "x=a", "--model", "x=b"]))


def test_limits_from_flags_and_the_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_PLUGINS_API_KEY", "from-env")
    args = build_parser().parse_args(["serve", "--model", "m", "--max-documents", "50", "--max-batch-wait-ms", "0"])
    settings = build_settings(args)
    assert settings.api_key == "from-env" and settings.max_documents == 50 and settings.batching.max_wait_ms == 0
    bad = build_parser().parse_args(["serve", "--model", "m", "--max-documents", "500", "--max-queue-pairs", "100"])
    with pytest.raises(CommandError, match="max-queue-pairs"):
        build_settings(bad)


def test_a_server_process_drains_its_requests_on_sigterm(
    tiny_paths: dict[str, str], load_tiny: Callable, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "rerank_plugins", "serve", "--model", f"t5={tiny_paths['monot5']}",
               "--port", str(port), "--device", "cpu", "--log-level", "warning"]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        documents = [DOCUMENTS[i % len(DOCUMENTS)] + f" {i}" for i in range(150)]
        answers: list[httpx.Response] = []
        body = {"query": QUERIES[0], "documents": documents}

        def ask() -> None:
            answers.append(httpx.post(f"{url}/v1/rerank", json=body, timeout=120))

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while "rerank_plugins_requests_in_flight 0.0" in httpx.get(f"{url}/metrics", timeout=10).text:
            assert not answers and time.monotonic() < deadline, "no request was seen in flight"
            time.sleep(0.01)  # until the requests are being answered
        server.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        # uvicorn re-raises the signal once it has drained, so the process ends as terminated by SIGTERM
        assert server.wait(60) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
    assert [answer.status_code for answer in answers] == [200, 200]
    expected = load_tiny("monot5").rank(QUERIES[0], documents)
    for answer in answers:
        results = answer.json()["results"]
        assert {r["index"]: r["relevance_score"] for r in results} == pytest.approx(
            {e["corpus_id"]: e["score"] for e in expected}, abs=1e-6
        )
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
    assert json.dumps(answers[0].json())  # a whole JSON body, not a cut connection
