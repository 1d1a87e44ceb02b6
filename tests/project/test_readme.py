"""The code blocks of the README and of our docs pages run as tests, against tiny offline models.

Every ```python block runs in a fresh namespace, in an empty working directory. Every command of a ```bash
block must be a ``rerank-plugins`` command, which runs in-process through the CLI. Hub ids resolve to tiny
random models of the same architecture with the registry entry of that id applied (``preset=``), so a block
exercises exactly the code path a user's copy would, without downloading anything.

A block right after ``<!-- not-tested: <reason> -->`` is skipped with that reason (keep those rare: installs,
GPU-only settings). Any other shell command fails, so that nothing untested slips into the docs.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rerank_plugins import cli
from rerank_plugins.cross_encoder import CrossEncoder
from rerank_plugins.registry import REGISTRY, RegistryEntry, lookup

ROOT = Path(__file__).resolve().parent.parent
# Pages whose code blocks we own and test; the other docs pages test their own examples.
DOCUMENTS = [
    "README.md",
    "docs/index.md",
    "docs/quickstart.md",
    "docs/models/inranker-monot5.md",
    "docs/models/distillranknet.md",
    "docs/models/r-star.md",
    "docs/models/rankinggpt.md",
    "docs/models/listconranker.md",
    "docs/integrations/sentence-transformers.md",
    "docs/cli.md",
    "docs/families.md",
]
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell", "console"}
# Modules a block may need that are optional extras: without them the block is skipped, not failed.
OPTIONAL_MODULES = ("rerank_plugins.langchain", "rerank_plugins.llama_index", "langchain_classic", "llama_index")

FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_TESTED = re.compile(r"<!--\s*not-tested:(?P<reason>.*?)-->\s*$", re.DOTALL)


@dataclass(frozen=True)
class Block:
    path: str
    line: int
    lang: str
    code: str
    skip_reason: str | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def code_blocks(relative: str) -> Iterator[Block]:
    """The fenced code blocks of a Markdown file, each with the reason it is not tested, if marked so."""
    text = (ROOT / relative).read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        marker = NOT_TESTED.search(before[-300:])
        reason = marker.group("reason").strip() if marker else None
        if marker is not None and not reason:
            raise ValueError(f"{relative}: a not-tested marker must give its reason.")
        line = text.count("\n", 0, match.start()) + 1
        yield Block(relative, line, match.group("lang").lower(), match.group("code"), reason)


def all_blocks() -> list[Block]:
    return [
        block
        for relative in DOCUMENTS
        if (ROOT / relative).exists()
        for block in code_blocks(relative)
        if block.lang in PYTHON | SHELL
    ]


BLOCKS = all_blocks()


def tiny_kind(hub_id: str, entry: RegistryEntry) -> str:
    """Which tiny model (see ``rerank_plugins.testing``) stands in for a published checkpoint."""
    if entry.family == "sequence-classification":
        return "deberta" if "deberta" in hub_id.lower() else "sequence-classification"
    if entry.family == "query-likelihood":
        return "llama" if "llama" in hub_id.lower() else "query-likelihood"
    return entry.family


def test_every_registry_id_has_a_tiny_stand_in(tiny_paths: dict[str, str]) -> None:
    missing = [hub_id for hub_id, entry in REGISTRY.items() if tiny_kind(hub_id, entry) not in tiny_paths]
    assert not missing


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tiny_paths: dict[str, str], tmp_path: Path) -> None:
    """Hub ids load tiny local models with their registry entry; the working directory is empty."""
    original = CrossEncoder.__init__

    @functools.wraps(original)
    def init(
        self: CrossEncoder, model_name_or_path: Any = None, *, family: Any = None, preset: Any = None, **kw: Any
    ) -> None:
        entry = lookup(model_name_or_path) if isinstance(model_name_or_path, str) else None
        if entry is not None:
            if preset is None and family is None:
                preset = model_name_or_path
            model_name_or_path = tiny_paths[tiny_kind(model_name_or_path, entry)]
        original(self, model_name_or_path, family=family, preset=preset, **kw)

    monkeypatch.setattr(CrossEncoder, "__init__", init)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def llama_index_settings() -> Iterator[None]:
    """LlamaIndex's ``Settings`` is global: a block that sets it must not leak into other tests."""
    try:
        from llama_index.core import Settings
    except ImportError:
        yield
        return
    saved = dict(vars(Settings))
    yield
    vars(Settings).update(saved)


def imported_modules(code: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def skip_without_optional_modules(code: str) -> None:
    for module in sorted(imported_modules(code)):
        if module.startswith(OPTIONAL_MODULES):
            try:
                importlib.import_module(module)
            except ImportError as error:
                pytest.skip(f"needs {module}, which does not import here: {error}")


def shell_commands(code: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments and prompts dropped."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line.removeprefix("$ "), comments=True)
        if words:
            commands.append(words)
    return commands


def run_cli(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Run one ``rerank-plugins`` command in-process and check what it printed."""
    assert words[0] == "rerank-plugins", f"untested shell command {shlex.join(words)!r}: mark the block not-tested"
    status = cli.main(words[1:])
    out = capsys.readouterr().out
    assert status == 0, f"{shlex.join(words)} exited with {status}"
    args = cli.build_parser().parse_args(words[1:])
    if args.command == "tiny-model":
        assert (Path(out.strip()) / "config.json").is_file()
    elif args.command == "rank":
        if args.json:
            rows = [(row["index"], row["score"], row["text"]) for row in json.loads(out)["results"]]
        else:  # rank, index, score, text (cut to 80 characters)
            rows = [(int(f[1]), float(f[2]), " ".join(f[3:])) for f in (r.split() for r in out.splitlines()[1:])]
        expected = len(args.documents) if args.top_k is None else min(args.top_k, len(args.documents))
        assert len(rows) == expected and len({index for index, _, _ in rows}) == expected
        assert all(" ".join(args.documents[index].split())[:80].startswith(text) for index, _, text in rows)
        scores = [score for _, score, _ in rows]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_code_block(block: Block, offline_hub: None, llama_index_settings: None, capsys: pytest.CaptureFixture[str]):
    if block.skip_reason:
        pytest.skip(block.skip_reason)
    if block.lang in PYTHON:
        skip_without_optional_modules(block.code)
        exec(compile(block.code, str(block), "exec"), {"__name__": "__readme__"})
    else:
        commands = shell_commands(block.code)
        assert commands, f"{block}: an empty shell block"
        for words in commands:
            run_cli(words, capsys)


def test_readme_has_the_blocks_it_promises() -> None:
    readme = [block for block in BLOCKS if block.path == "README.md"]
    python = [block for block in readme if block.lang in PYTHON and not block.skip_reason]
    code = "\n".join(block.code for block in python)
    for family_id in ("InRanker", "DistillRankNET", "R-star", "RankingGPT", "ListConRanker"):
        assert family_id in code, f"the README has no tested quickstart for {family_id}"
    assert "rerank_plugins.langchain" in code and "rerank_plugins.llama_index" in code
    skipped = [block for block in readme if block.skip_reason]
    assert len(skipped) <= 3, f"keep untested README blocks rare: {[str(block) for block in skipped]}"


def test_readme_links_resolve() -> None:
    """The README links this repository's files by absolute URL (it is also the PyPI page): they must exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    repository = "https://github.com/rerank-plugins/rerank-plugins/blob/main/"
    local = [target.removeprefix(repository) for target in targets if target.startswith(repository)]
    assert local, "the README links no docs page"
    missing = [target for target in local if not (ROOT / target).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
