"""Issue 22, item 28: argument mistakes that need no model are one line before torch is imported (the command
line promises an answer at once, docs/cli.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``rerank-plugins ARGV`` in a fresh process; its stdout's last line says which heavy modules it imported."""
    code = (
        "import sys\n"
        "from rerank_plugins.cli import main\n"
        f"status = main({list(argv)!r})\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
        "sys.exit(status)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["tiny-model", "--family", "bert", "x"], "unknown kind 'bert' for tiny-model --family; choose from monot5"),
        (["rank", "--model", "m", "--family", "bert", "--query", "q", "d"], "unknown family 'bert'"),
    ],
)
def test_a_mistake_that_needs_no_model_is_one_line_without_torch(argv: list[str], says: str) -> None:
    done = run_cli(*argv)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert says in line
    assert done.stdout.strip().splitlines()[-1] == "[]"  # neither torch nor transformers was imported
