"""The test suite's own layout: test files live in unit folders, share code only through support.py, never import
each other or conftest, and have unique basenames (pytest imports them by basename: there are no __init__.py files).
"""

from __future__ import annotations

import ast
from collections import Counter

from support import ROOT

TESTS = ROOT / "tests"
TEST_FILES = sorted(TESTS.rglob("test_*.py"))


def forbidden_imports(source: str) -> list[str]:
    """The modules ``source`` imports that a test file must not: ``conftest`` and any ``test_*`` module."""
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.append(node.module)
    return [name for name in imported if name.split(".")[0] == "conftest" or name.split(".")[-1].startswith("test_")]


def test_the_import_check_sees_each_forbidden_form() -> None:
    source = "import conftest\nfrom conftest import QUERIES\nimport test_adapters\nfrom test_readme import Block\n"
    assert forbidden_imports(source) == ["conftest", "conftest", "test_adapters", "test_readme"]
    assert forbidden_imports("import support\nfrom support import ROOT\nimport reference\nimport pytest\n") == []


def test_no_test_file_imports_conftest_or_another_test_file() -> None:
    assert len(TEST_FILES) > 30  # the glob found the suite
    offenders = {
        str(path.relative_to(TESTS)): names
        for path in TEST_FILES
        if (names := forbidden_imports(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"import from tests/support.py instead: {offenders}"


def test_support_does_not_import_conftest() -> None:
    assert forbidden_imports((TESTS / "support.py").read_text(encoding="utf-8")) == []


def test_test_files_live_in_unit_folders_with_unique_basenames() -> None:
    at_top = [path.name for path in TEST_FILES if path.parent == TESTS]
    assert not at_top, f"move these into a unit folder under tests/: {at_top}"
    repeated = [name for name, count in Counter(path.name for path in TEST_FILES).items() if count > 1]
    assert not repeated, f"test file basenames must be unique across tests/: {repeated}"
    packages = [str(path.relative_to(TESTS)) for path in TESTS.rglob("__init__.py")]
    assert not packages, f"tests/ has no packages: {packages}"
