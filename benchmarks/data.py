"""The benchmark workload: real queries and their BM25 candidates from a ``bm25-top100.json`` file."""

from __future__ import annotations

import json
from pathlib import Path

Group = tuple[str, list[str]]
"""One query and the passages to score for it."""

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "trec-dl19" / "bm25-top100.json"


def load_run(path: Path) -> list[dict]:
    """The ``[{"query": str, "hits": [{"content": str, ...}]}]`` list, or a clear error naming the path."""
    if not path.is_file():
        raise SystemExit(
            f"No benchmark data at {path}. Pass --data PATH to a JSON list of "
            '{"query": str, "hits": [{"content": str, ...}]} (the layout of ../shared/data/trec-dl19/bm25-top100.json).'
        )
    with path.open(encoding="utf-8") as handle:
        run = json.load(handle)
    if not run or "query" not in run[0] or "hits" not in run[0]:
        raise SystemExit(f"{path} is not a list of {{'query', 'hits'}} records.")
    return run


def groups(run: list[dict], queries: int, depth: int) -> list[Group]:
    """The first ``queries`` queries, each with its top ``depth`` passages (BM25 order)."""
    return [(record["query"], [hit["content"] for hit in record["hits"][:depth]]) for record in run[:queries]]


def split(run: list[dict], queries: int, depth: int, warm_up_queries: int) -> tuple[list[Group], list[Group]]:
    """The timed groups (the first ``queries`` queries) and warm-up groups (the next ``warm_up_queries``).

    The warm-up queries are other queries than the timed ones, so that the timed pairs are unseen by every cache.
    """
    if queries + warm_up_queries > len(run):
        raise SystemExit(
            f"The data holds {len(run)} queries; {queries} timed + {warm_up_queries} warm-up queries are asked for."
        )
    timed = groups(run, queries, depth)
    return timed, groups(run[queries:], warm_up_queries, depth)


def long_list(run: list[dict], size: int) -> Group:
    """One query with ``size`` distinct passages, drawn from every query's candidates (for the long-list mode)."""
    passages = list(dict.fromkeys(hit["content"] for record in run for hit in record["hits"]))
    if len(passages) < size:
        raise SystemExit(f"The data holds {len(passages)} distinct passages; the long-list mode needs {size}.")
    return run[0]["query"], passages[:size]


def corpus(run: list[dict]) -> list[str]:
    """Every passage and query of the file: the text the benchmark tokenizers are trained on."""
    return [hit["content"] for record in run for hit in record["hits"]] + [record["query"] for record in run]
