"""The release artefacts: ``python -m build`` makes a wheel and an sdist that ``twine check`` accepts, and the
wheel, installed on its own into a fresh virtual environment, runs the ``rerank-plugins`` command.

Offline by design: the build runs ``--no-isolation`` (hatchling comes from the test environment), and the fresh
environment sees the test environment's packages (torch, transformers, ...) through a ``.pth`` file, then gets
the wheel with ``pip install --no-deps --no-index``. The new environment's own site-packages comes first on
``sys.path``, so the code that runs is the wheel's, never the editable source tree; the test checks that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import packaging
import pytest
from packaging.version import Version
from support import ROOT

import rerank_plugins

VERSION = rerank_plugins.__version__


def run(command: list[str], cwd: Path, **env: str) -> str:
    """Run ``command``, fail the test with its output if it fails, and return its stdout."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1", **env}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from it, in a temporary directory."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], cwd=out)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert [path.name for path in wheels] == [f"rerank_plugins-{VERSION}-py3-none-any.whl"]
    assert [path.name for path in sdists] == [f"rerank_plugins-{VERSION}.tar.gz"]
    return {"wheel": wheels[0], "sdist": sdists[0]}


def test_twine_check_accepts_both(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        metadata = wheel.read(f"rerank_plugins-{VERSION}.dist-info/METADATA").decode()
    metadata_version = metadata.split("Metadata-Version: ", 1)[1].split("\n", 1)[0].strip()
    if Version(metadata_version) >= Version("2.5") and Version(packaging.__version__) < Version("26"):
        # The lowest environment: langchain-core 1.0.0 caps packaging<26, which cannot read the Metadata-Version
        # 2.5 that hatchling writes, so no twine there can check it (twine 7 needs packaging>=26).
        pytest.skip(f"packaging {packaging.__version__} cannot read Metadata-Version {metadata_version}")
    output = run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])], ROOT)
    assert output.count("PASSED") == 2, output


def test_wheel_holds_the_package_and_the_command(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"rerank_plugins-{VERSION}.dist-info"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert {"rerank_plugins/__init__.py", "rerank_plugins/cli/__init__.py", "rerank_plugins/py.typed"} <= names
    assert not any(name.startswith(("tests/", "docs/")) for name in names)
    assert "rerank-plugins = rerank_plugins.cli:main" in entry_points
    assert f"Version: {VERSION}" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
    assert "# rerank-plugins" in metadata  # the README is the long description


def test_sdist_holds_what_a_rebuild_needs(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "rerank_plugins/__init__.py", "tests/conftest.py"} <= names


def fresh_environment(directory: Path) -> Path:
    """A new virtual environment that sees the test environment's packages, behind its own; its python."""
    venv.EnvBuilder(with_pip=False).create(directory)
    python = directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    own = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], directory).strip())
    # Plain paths, not the test environment's own .pth files: its editable install must stay out of sight.
    inherited = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (own / "inherited-test-environment.pth").write_text("\n".join(inherited) + "\n")
    return python


def test_wheel_installs_and_runs_in_a_fresh_environment(dist: dict[str, Path], tmp_path: Path) -> None:
    python = fresh_environment(tmp_path / "env")
    run([str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", str(dist["wheel"])], tmp_path)

    # Where the package would be imported from (find_spec does not run it) and what metadata says.
    probe = (
        "import importlib.metadata as m, importlib.util as u; "
        "print(u.find_spec('rerank_plugins').origin, m.version('rerank-plugins'))"
    )
    location, version = run([str(python), "-c", probe], tmp_path).split()
    assert Path(location).is_relative_to(tmp_path / "env"), location
    assert version == VERSION

    command = str(python.parent / ("rerank-plugins.exe" if os.name == "nt" else "rerank-plugins"))
    model = run([command, "tiny-model", "--family", "monot5", str(tmp_path / "tiny")], tmp_path).strip()
    assert (Path(model) / "config.json").is_file()

    documents = ["Paris is the capital and largest city of France.", "The stock market fell sharply on Monday."]
    table = run([command, "rank", "--model", model, "--query", "what is the capital of france", *documents], tmp_path)
    header, *rows = table.strip().splitlines()
    assert header.split() == ["rank", "index", "score", "text"]
    fields = [row.split(maxsplit=3) for row in rows]
    assert [int(f[0]) for f in fields] == [1, 2]
    assert sorted(int(f[1]) for f in fields) == [0, 1]
    assert all(documents[int(f[1])] == f[3] for f in fields)
    scores = [float(f[2]) for f in fields]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)  # P(true)
