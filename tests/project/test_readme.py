"""The code blocks of the README and of our docs pages run as tests, against tiny offline models.

Every ```python block runs in a fresh namespace, in an empty working directory. Every command of a ```bash
block must be a ``rerank-plugins`` command, which runs in-process through the CLI. Hub ids resolve to tiny
random models of the same architecture with the registry entry of that id applied (``preset=``), so a block
exercises exactly the code path a user's copy would, without downloading anything.

A block right after ``<!-- not-tested: <reason> -->`` is skipped with that reason (keep those rare: installs,
GPU-only settings). Any other shell command fails, so that nothing untested slips into the docs.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from support import ROOT, Block, ScoreLedger, code_blocks, skip_without_optional_modules, tiny_kind

from rerank_plugins import cli
from rerank_plugins.registry import REGISTRY

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
    "docs/models/qwen3-reranker.md",
    "docs/models/mxbai-rerank-v2.md",
    "docs/models/bge-reranker-v2-gemma.md",
    "docs/integrations/sentence-transformers.md",
    "docs/cli.md",
    "docs/families.md",
]
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell", "console"}


def all_blocks() -> list[Block]:
    return [
        block
        for relative in DOCUMENTS
        if (ROOT / relative).exists()
        for block in code_blocks(relative)
        if block.lang in PYTHON | SHELL
    ]


BLOCKS = all_blocks()


def test_every_registry_id_has_a_tiny_stand_in(tiny_paths: dict[str, str]) -> None:
    missing = [hub_id for hub_id, entry in REGISTRY.items() if tiny_kind(hub_id, entry) not in tiny_paths]
    assert not missing


def shell_commands(code: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments and prompts dropped."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line.removeprefix("$ "), comments=True)
        if words:
            commands.append(words)
    return commands


def run_cli(words: list[str], capsys: pytest.CaptureFixture[str], ledger: ScoreLedger) -> None:
    """Run one ``rerank-plugins`` command in-process and check what it printed against the model's ``rank``."""
    assert words[0] == "rerank-plugins", f"untested shell command {shlex.join(words)!r}: mark the block not-tested"
    ledger.calls.clear()
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
        # The model's own rank of the same documents: the same order and the same scores, to the printed digits.
        (model, query, documents, options), *_ = ledger.calls
        assert (query, documents) == (args.query, args.documents)
        ranked = model.rank(query, documents, **options)[:expected]
        assert [index for index, _, _ in rows] == [hit["corpus_id"] for hit in ranked]
        assert [score for _, score, _ in rows] == pytest.approx([hit["score"] for hit in ranked], abs=1e-4)


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_code_block(
    block: Block,
    offline_hub: None,
    llama_index_settings: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each block runs, and every score it prints or returns is the model's own ``rank`` score for that document."""
    if block.skip_reason:
        pytest.skip(block.skip_reason)
    ledger = ScoreLedger(monkeypatch)
    if block.lang in PYTHON:
        skip_without_optional_modules(block.code)
        exec(compile(block.code, str(block), "exec"), {"__name__": "__readme__"})
        compared = ledger.check(capsys.readouterr().out)
        if block.path == "README.md" and ledger.calls:
            assert compared, f"{block} scores documents but shows no score to compare"
    else:
        commands = shell_commands(block.code)
        assert commands, f"{block}: an empty shell block"
        for words in commands:
            run_cli(words, capsys, ledger)


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
