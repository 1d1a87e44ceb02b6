"""``rerank-plugins serve``: its flags become a ServeConfig (and fail fast, before torch), a light ``--help``, a busy
port, and a real server process that drains on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
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
from rerank_plugins.cli.serve import config_from_flags
from rerank_plugins.serve import ServeConfig, ServedModel


def parsed(*argv: str) -> object:
    return config_from_flags(build_parser().parse_args(["serve", *argv]))


def test_registering_serve_imports_neither_torch_nor_fastapi() -> None:
    code = (
        "import argparse, sys\n"
        "from rerank_plugins.cli.serve import register\n"
        "register(argparse.ArgumentParser().add_subparsers())\n"
        "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_models_families_and_presets_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RERANK_PLUGINS_API_KEY", raising=False)
    config = parsed("--model", "unicamp-dl/InRanker-base", "--model", "mine=/models/r-star", "--device", "cpu",
                    "--family", "mine=sequence-classification", "--preset", "mine=jaspercatapang/R-star")  # fmt: skip
    assert config.host == "127.0.0.1" and config.api_key is None
    assert config.models == (
        ServedModel("unicamp-dl/InRanker-base", "unicamp-dl/InRanker-base", device="cpu"),
        ServedModel("mine", "/models/r-star", "sequence-classification", "jaspercatapang/R-star", device="cpu"),
    )
    everyone = parsed("--model", "a", "--model", "b", "--family", "monot5")
    assert [model.family for model in everyone.models] == ["monot5", "monot5"]
    with pytest.raises(CommandError, match=r"^--family: c=monot5: no model is served as 'c'"):
        parsed("--model", "a", "--family", "c=monot5")
    with pytest.raises(CommandError, match=r"^--model: the name 'x' is given twice"):
        parsed("--model", "x=a", "--model", "x=b")


def test_a_preset_for_every_model_names_the_model_it_does_not_fit(
    tiny_paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--preset`` without ``NAME=`` applies to every model: the one it does not fit is named, with the preset's
    family and the checkpoint's architecture (it was transformers' "Unrecognized configuration class ...")."""
    from rerank_plugins.cli import main

    listcon = tiny_paths["listconranker"]
    argv = ["serve", "--model", tiny_paths["monot5"], "--preset", "unicamp-dl/InRanker-base",
            "--model", f"listcon={listcon}", "--port", str(free_port())]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(
        f"rerank-plugins: error: model 'listcon' ({listcon}): preset 'unicamp-dl/InRanker-base' "
        f"(family 'monot5') does not fit the model {listcon!r}: its architecture is BertModel (bert)"
    )
    assert "Unrecognized" not in err and "hub" not in err


def test_the_options_defaults_are_the_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RERANK_PLUGINS_API_KEY", raising=False)
    assert parsed("--model", "m") == ServeConfig(models=[ServedModel("m", "m")])
    assert ServeConfig.from_options({"model": "m"}) == ServeConfig(models=[ServedModel("m", "m")])


def test_limits_from_flags_and_the_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_PLUGINS_API_KEY", "from-env")
    config = parsed("--model", "m", "--max-documents", "50", "--max-batch-wait-ms", "0", "--max-call-pairs", "7")
    assert config.api_key == "from-env" and config.max_documents == 50 and config.queue.max_wait_ms == 0
    assert config.queue.max_call_pairs == 7 and config.queue.run.batch_size is None
    with pytest.raises(CommandError, match=r"^--max-queue-pairs: "):
        parsed("--model", "m", "--max-documents", "500", "--max-queue-pairs", "100")
    forward = parsed("--model", "m", "--batch-size", "16", "--max-batch-tokens", "4096")
    assert (forward.queue.run.batch_size, forward.queue.run.batch_tokens) == (16, 4096)


def run_cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``rerank-plugins ARGV`` in a fresh process; its stdout's last line says which heavy modules it imported."""
    code = (
        "import sys\n"
        "from rerank_plugins.cli import main\n"
        f"status = main({list(argv)!r})\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
        "sys.exit(status)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--model", "m", "--family", "bert"], "argument --family: unknown family 'bert'; choose from monot5"),
        (["--model", "m", "--preset", "nope/nothing"], "argument --preset: Unknown preset 'nope/nothing'"),
        (["--model", "=x"], "argument --model: '=x': NAME=VALUE needs both a name and a value"),
        (["--model", "m", "--replicas", "0"], "argument --replicas: expected 1 <= MIN <= MAX, got '0'"),
        (["--model", "m", "--max-documents", "500", "--max-queue-pairs", "100"], "--max-queue-pairs: "),
        (["--model", "=x=y"], "argument --model: '=x=y': NAME=VALUE needs both a name and a value"),
    ],
)
def test_argument_errors_are_one_line_before_torch(argv: list[str], says: str) -> None:
    done = run_cli("serve", *argv)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert says in line, line
    assert done.stdout.strip().splitlines()[-1] == "[]"  # torch and transformers were never imported


def test_a_hub_id_that_cannot_be_is_refused() -> None:
    done = run_cli("serve", "--model", "name=!x")
    assert done.returncode == 2
    assert done.stderr.strip() == "rerank-plugins: error: '!x' is neither a model directory nor a hub id (ORG/NAME)"
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_port_in_use_is_one_line_before_any_model_loads(tiny_paths: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_cli("serve", "--model", tiny_paths["monot5"], "--port", str(port))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"rerank-plugins: error: --port {port}: cannot listen on 127.0.0.1:{port} (")
    assert "in use" in line
    assert done.stdout.strip().splitlines()[-1] == "[]"  # the model was never loaded


def in_flight(url: str) -> float:
    """The server's ``rerank_plugins_requests_in_flight`` gauge."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("rerank_plugins_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no rerank_plugins_requests_in_flight in /metrics")


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
        documents = [DOCUMENTS[i % len(DOCUMENTS)] + f" {i}" for i in range(600)]  # long enough to overlap
        answers: list[httpx.Response] = []
        body = {"query": QUERIES[0], "documents": documents}

        def ask() -> None:
            answers.append(httpx.post(f"{url}/v1/rerank", json=body, timeout=120))

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while in_flight(url) < len(threads):  # both connected: a connection after SIGTERM would be refused
            assert not answers and time.monotonic() < deadline, "the requests were not seen in flight"
            time.sleep(0.01)
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
