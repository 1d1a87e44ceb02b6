"""What the docs pages promise a newcomer: an install that works today, code that fits the page, a readable API.

The install test reads the README as a new user would; the width test reads every code block of the README
and of docs/; the API test builds the site (mkdocs, strict) and reads the rendered API reference.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, code_blocks

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

PAGES = ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").rglob("*.md"))]
CODE_WIDTH = 88
"""Columns a code line may take: wider ones overflow the rendered page's content column (1400 px wide)."""


def extras() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return set(tomllib.load(handle)["project"]["optional-dependencies"])


def test_the_readme_installs_from_a_clone() -> None:
    """The package is not on PyPI: the Install section clones it and installs it from there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    block = next(code_blocks("README.md"))  # the Install section's block comes first
    assert block.code in install
    assert "git clone https://github.com/rerank-plugins/rerank-plugins.git" in block.code
    assert "cd rerank-plugins" in block.code
    installed = re.findall(r'pip install -e "\.\[([^\]]+)\]"', block.code)
    assert installed and set(installed[0].split(",")) <= extras()
    assert "not on PyPI yet" in install


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_the_pypi_line_is_marked_as_not_yet_published(page: str) -> None:
    text = " ".join((ROOT / page).read_text(encoding="utf-8").split())  # sentences may wrap anywhere
    lines = [m.start() for m in re.finditer(r'pip install "rerank-plugins\[', text)]
    assert lines, f"{page} no longer shows the PyPI line"
    for start in lines:
        before = text[max(0, start - 120) : start]
        assert "Once" in before and "published on PyPI" in before, text[start - 120 : start + 60]


def test_every_extra_the_docs_name_exists() -> None:
    named = {
        extra
        for page in PAGES
        for group in re.findall(r"rerank-plugins\[([\w,-]+)\]|\.\[([\w,-]+)\]", (ROOT / page).read_text("utf-8"))
        for names in group
        for extra in names.split(",")
        if extra
    }
    assert named and named <= extras(), sorted(named - extras())


def test_code_lines_fit_the_page() -> None:
    """Lines of 110-120 characters overflowed the content column (the home page's first snippet, serving's first
    block). Blocks without a language are verbatim program output and are left as printed."""
    wide = [
        f"{block}+{number}: {len(line)} {line.strip()[:40]}"
        for page in PAGES
        for block in code_blocks(page)
        if block.lang
        for number, line in enumerate(block.code.splitlines(), start=1)
        if len(line) > CODE_WIDTH
    ]
    assert not wide, "\n".join(wide)


@pytest.fixture(scope="module")
def api_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    site = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    command = [str(mkdocs), "build", "--strict", "--site-dir", str(site)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return (site / "api" / "index.html").read_text(encoding="utf-8")


def test_the_api_reference_renders_cross_references(api_page: str) -> None:
    """Docstrings name objects the Sphinx way (:class:`~x.Y`); the page shows links, never the raw roles."""
    text = re.sub(r"<[^>]+>", "", api_page)
    raw = re.findall(r":(?:class|func|meth|attr|data|mod|exc|obj):", text)
    assert not raw, f"{len(raw)} raw roles on the API page"
    # CrossEncoder's score_cache argument names ScoreCache: a link to its entry.
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="#rerank_plugins\.cache\.ScoreCache"', api_page)


def test_the_api_reference_names_bases_fully(api_page: str) -> None:
    """ "Bases: CrossEncoder" read as a class inheriting from itself."""
    bases = [re.sub(r"<[^>]+>|\s", "", match) for match in re.findall(r"Bases:(.*?)</p>", api_page, re.DOTALL)]
    assert "sentence_transformers.CrossEncoder" in bases
    assert "CrossEncoder" not in bases
