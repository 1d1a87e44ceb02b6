"""The README and the command-line / TREC pages match what a fresh clone has.

Every file an example reads must exist in the repository, the README (also the PyPI page, where relative links
break) links by absolute URL, the model pages' tables have real header rows, and the README states the scale of
iterative ListConRanker scores, which the last test checks against the model.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
from collections.abc import Callable

import pytest
from support import ROOT

from rerank_plugins import cli

REPOSITORY = "https://github.com/rerank-plugins/rerank-plugins/blob/main/"
PAGES = ["README.md", "docs/trec.md", "docs/cli.md", "docs/quickstart.md", "docs/index.md"]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
READS = re.compile(r"\b(?:read_run|read_qrels|read_topics|read_corpus|read_rank_llm_json)\(\s*\"([^\"]+)\"")


def tracked_files() -> set[str]:
    """The files a fresh clone has: git's index where this is a checkout, else everything under the root."""
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {str(path.relative_to(ROOT)) for path in ROOT.rglob("*") if path.is_file()}
    return set(listed.splitlines())


def inputs_and_outputs(page: str) -> list[tuple[str, str, str]]:
    """``(kind, path, command)`` for every file the page's examples read ("in") or write ("out"), in order."""
    found: list[tuple[str, str, str]] = []
    text = (ROOT / page).read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        lang, code = match.group("lang"), match.group("code")
        if lang in ("python", "py"):
            found += [("in", path, line.strip()) for line in code.splitlines() for path in READS.findall(line)]
            found += [("out", path, "write_run") for path in re.findall(r"write_run\(\s*\"([^\"]+)\"", code)]
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        for line in code.replace("\\\n", " ").splitlines():
            words = shlex.split(line.removeprefix("$ "), comments=True)
            if not words or words[0] != "rerank-plugins" or "--help" in words:
                continue
            if any(word.startswith("[") for word in words):  # a synopsis, not a command
                continue
            args = cli.build_parser().parse_args(words[1:])
            command = shlex.join(words)
            if args.command == "rerank-run":
                found += [("in", path, command) for path in (args.run, args.topics, args.corpus) if path]
                found.append(("out", args.output, command))
            elif args.command == "evaluate":
                found += [("in", path, command) for path in (args.qrels, *args.runs)]
            elif args.command == "tiny-model":
                found.append(("out", args.directory, command))
            elif args.command == "rank" and args.model.count("/") != 1:  # a local model directory
                found.append(("in", args.model, command))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_every_file_an_example_reads_is_in_the_repository(page: str) -> None:
    files, written = tracked_files(), set()
    missing = []
    for kind, path, command in inputs_and_outputs(page):
        if kind == "out":
            written.add(path)
        elif path not in written and path not in files:
            missing.append(f"{path} (in: {command})")
    assert not missing, f"{page} reads files that a clone does not have: {missing}"


def test_the_examples_read_the_shipped_sample() -> None:
    """The check above must see the TREC page's commands (a parser change could hide them)."""
    read = {path for kind, path, _ in inputs_and_outputs("docs/trec.md") if kind == "in"}
    assert {"tests/data/dl19-sample.json", "tests/data/qrels.txt", "tests/data/dl19-sample-corpus.jsonl"} <= read


def test_readme_links_are_absolute() -> None:
    """PyPI shows the README as the project page, where a relative link points nowhere."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.MULTILINE)
    relative = [link for link in links if not link.startswith(("https://", "http://", "#", "mailto:"))]
    assert links and not relative, f"relative links in README.md: {relative}"
    ours = [link.removeprefix(REPOSITORY).split("#")[0] for link in links if link.startswith(REPOSITORY)]
    assert ours and all((ROOT / path).exists() for path in ours), ours


@pytest.mark.parametrize(
    "page", sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs" / "models").glob("*.md"))
)
def test_model_pages_have_no_empty_table_headers(page: str) -> None:
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    for number, (line, below) in enumerate(itertools.pairwise(lines), start=1):
        if line.startswith("|") and re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", below.strip()):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            assert all(cells), f"{page}:{number}: a table header with empty cells: {line!r}"


def test_readme_states_the_scale_of_iterative_listconranker_scores(load_tiny: Callable) -> None:
    """The README's table says iterative scores are score + round; a 30-passage list shows scores above 1."""
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if "`ByteDance/ListConRanker`" in line)
    assert "iterative=True" in row and "round" in row and "above 1" in row, row
    passages = [f"Passage {i} about Paris, France and its history." for i in range(30)]
    results = load_tiny("listconranker").rank("what is the capital of france", passages, iterative=True)
    scores = sorted(result["score"] for result in results)
    # Round 0 removes at least 10 passages (more on exact ties), which keep scores in [0, 1]; the rest score
    # in round 1, in [1, 2].
    assert 0.0 <= scores[0] < 1.0 < scores[-1] <= 2.0
    assert 0 < sum(score > 1.0 for score in scores) <= 20
