"""The lowest versions CI tests are the floors pyproject.toml allows, and the environment is really at them.

``./dev test`` runs the suite twice: in ``.venv`` on the newest versions, and in ``.venv-lowest`` with
``.ci/lowest-constraints.txt`` pinning the direct dependencies below to their floors (``./dev test-lowest``).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from support import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

CONSTRAINTS = ROOT / ".ci" / "lowest-constraints.txt"
# The direct dependencies whose floors CI tests: the core three and the adapters' libraries.
FLOORED = {
    "torch",
    "transformers",
    "sentence-transformers",
    "langchain-core",
    "langchain-classic",
    "llama-index-core",
    "haystack-ai",
    "onnxruntime",
    "onnx",
    "openvino",
    "nncf",
}


def floors() -> dict[str, Version]:
    """name -> the ``>=`` floor of every FLOORED requirement in pyproject.toml (dependencies and extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"].values()
    requirements = [*project["dependencies"], *(line for extra in extras for line in extra)]
    found: dict[str, set[Version]] = {}
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name in FLOORED:
            lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
            assert len(lower) == 1, f"{line!r}: CI tests its floor, so it needs exactly one '>=' bound"
            found.setdefault(requirement.name, set()).update(lower)
    for name, versions in found.items():
        assert len(versions) == 1, f"{name} has different floors in pyproject.toml: {sorted(map(str, versions))}"
    return {name: versions.pop() for name, versions in found.items()}


def pins() -> dict[str, Version]:
    """name -> the ``==`` version of every line of .ci/lowest-constraints.txt."""
    result: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{line!r}: a lowest constraint pins one version"
        result[requirement.name] = Version(spec.version)
    return result


def test_every_floored_dependency_has_a_floor() -> None:
    assert set(floors()) == FLOORED


def test_lowest_constraints_pin_exactly_the_floors() -> None:
    assert pins() == floors()


@pytest.mark.skipif(not os.environ.get("RERANK_PLUGINS_LOWEST"), reason="only in the lowest environment")
def test_the_lowest_environment_has_the_floors_installed() -> None:
    installed = {name: Version(Version(importlib.metadata.version(name)).public) for name in FLOORED}
    assert installed == pins()


def test_setup_printed_no_error() -> None:
    """./dev keeps each venv's pip output in ``setup.log``; no line of it may be an error."""
    log = Path(sys.prefix) / "setup.log"
    if not log.is_file():
        pytest.skip(f"{sys.prefix} was not set up by ./dev")
    errors = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if "ERROR" in line]
    assert errors == []
