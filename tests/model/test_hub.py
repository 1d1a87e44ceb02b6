"""Loading from the hub fails fast, in Python as on the command line: one probe, one line, cached copies used.

No test reaches a network: the "hub" is a closed port on 127.0.0.1 (a refused connection, which huggingface_hub
retries for minutes), and a cached copy is a hub cache folder built from a tiny model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants
from support import free_port

from rerank_plugins import CrossEncoder, hub
from rerank_plugins.hub import HubUnreachableError, reachable_hub_kwargs

NO_SUCH_MODEL = "acme-labs/no-such-reranker"


def offline_environment(tmp_path: Path) -> tuple[dict[str, str], str]:
    """An environment whose hub is a closed local port (no proxy, no offline flag, an empty cache)."""
    env = {key: value for key, value in os.environ.items() if "PROXY" not in key.upper() and key != "HF_HUB_OFFLINE"}
    endpoint = f"http://127.0.0.1:{free_port()}"
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    return env, endpoint


def test_crossencoder_fails_fast_with_the_command_lines_one_line(tmp_path: Path) -> None:
    """Without the probe, CrossEncoder(hub id) went through huggingface_hub's retries (11 lines, about 30 s)."""
    env, endpoint = offline_environment(tmp_path)
    script = (
        "from rerank_plugins import CrossEncoder\n"
        "from rerank_plugins.hub import HubUnreachableError\n"
        "try:\n"
        f"    CrossEncoder({NO_SUCH_MODEL!r})\n"
        "except HubUnreachableError as error:\n"
        "    print(error)\n"
    )
    python = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    command = [sys.executable, "-m", "rerank_plugins", "rank", "--model", NO_SUCH_MODEL, "--query", "q", "d"]
    cli = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert python.returncode == 0 and python.stderr == "", python.stderr  # no retry warnings
    assert cli.returncode == 2
    line = python.stdout.strip()
    assert line.startswith(f"could not load model '{NO_SUCH_MODEL}': the Hugging Face hub ({endpoint}) cannot be")
    assert "not in the local cache" in line and "\n" not in line
    assert cli.stderr == f"rerank-plugins: error: {line}\n"  # the same line in both


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> str:
    """This process's hub: online mode (the tests run offline), a closed port as its endpoint."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    return endpoint


def hub_cache(tmp_path: Path, source: str, repo_id: str) -> Path:
    """A hub cache folder holding ``source``'s files as the main revision of ``repo_id``."""
    cache = tmp_path / "hub-cache"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    return cache


def test_a_cached_copy_loads_when_the_hub_is_out_of_reach(
    unreachable_hub: str, tiny_paths: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = hub_cache(tmp_path, tiny_paths["monot5"], "acme-labs/tiny-monot5")
    model = CrossEncoder("acme-labs/tiny-monot5", cache_folder=str(cache), device="cpu")
    assert f"The hub ({unreachable_hub}) is out of reach" in caplog.text and "using the cached copy" in caplog.text
    local = CrossEncoder(tiny_paths["monot5"], device="cpu")
    pairs = [("q", "a document"), ("q", "another document")]
    assert model.family == "monot5"
    np.testing.assert_allclose(model.predict(pairs), local.predict(pairs), atol=1e-6)


def test_no_probe_where_no_hub_is_needed(
    unreachable_hub: str, tiny_paths: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local directory, local_files_only=True and HF_HUB_OFFLINE=1 load without asking the network anything."""

    def probe(endpoint: str, timeout: float = 0.0) -> str | None:
        raise AssertionError(f"probed {endpoint}")

    monkeypatch.setattr(hub, "hub_unreachable", probe)
    assert CrossEncoder(tiny_paths["monot5"], device="cpu").family == "monot5"
    assert reachable_hub_kwargs(NO_SUCH_MODEL, {"local_files_only": True}) == {"local_files_only": True}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert reachable_hub_kwargs(NO_SUCH_MODEL, {"device": "cpu"}) == {"device": "cpu"}


def test_a_path_that_is_not_there_is_no_such_directory(tmp_path: Path) -> None:
    """Not huggingface_hub's "Repo id must be in the form 'repo_name' or 'namespace/repo_name'"."""
    for name in ("../nope", "./nope", str(tmp_path / "nope"), "a/b/c"):
        with pytest.raises(FileNotFoundError, match=f"{name}: no such model directory"):
            CrossEncoder(name)


def test_an_unreachable_hub_is_one_oserror(unreachable_hub: str) -> None:
    with pytest.raises(HubUnreachableError, match=f"the Hugging Face hub \\({unreachable_hub}\\) cannot be reached"):
        CrossEncoder(NO_SUCH_MODEL)
    assert issubclass(HubUnreachableError, OSError)
