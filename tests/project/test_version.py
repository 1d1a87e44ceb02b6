"""The version lives in one place: ``rerank_plugins.__version__``, which the build reads."""

from __future__ import annotations

import importlib.metadata
import re

from support import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

import rerank_plugins


def test_installed_metadata_matches_the_package() -> None:
    assert importlib.metadata.version("rerank-plugins") == rerank_plugins.__version__


def test_the_build_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "rerank_plugins/__init__.py"


def test_no_other_module_sets_a_version() -> None:
    assignment = re.compile(r"^\s*(__version__|VERSION|version)\s*=\s*[\"']\d", re.MULTILINE)
    home = ROOT / "rerank_plugins" / "__init__.py"
    files = [path for path in (ROOT / "rerank_plugins").rglob("*.py") if path != home]
    offenders = [str(path.relative_to(ROOT)) for path in files if assignment.search(path.read_text(encoding="utf-8"))]
    assert not offenders
    assert assignment.search(home.read_text(encoding="utf-8"))


def test_changelog_keeps_the_keep_a_changelog_form() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog\n")
    releases = re.findall(r"^## (.+)$", changelog, re.MULTILINE)
    assert releases[0] == "[Unreleased]", "the newest section is [Unreleased]"
    for release in releases[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", release), release
    kinds = set(re.findall(r"^### (.+)$", changelog, re.MULTILINE))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds
