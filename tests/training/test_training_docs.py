"""The code blocks of docs/training.md run against tiny models, as the README's do (test_readme.py)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from support import Block, ScoreLedger, code_blocks

from rerank_plugins import CrossEncoder

PAGE = "docs/training.md"
BLOCKS = [block for block in code_blocks(PAGE) if block.lang in {"python", "py", "bash"}]


def test_page_has_tested_python_blocks() -> None:
    tested = [b for b in BLOCKS if b.lang != "bash" and not b.skip_reason]
    assert len(tested) >= 5
    assert all(b.skip_reason for b in BLOCKS if b.lang == "bash"), "shell blocks here are installs only"


def dataset_pairs(dataset: Any) -> list[tuple[str, str]]:
    """(query, document) of every document of a training dataset: pairs, triplets or lists."""
    columns = [name for name in dataset.column_names if name not in ("label", "labels", "score", "scores")]
    pairs = []
    for row in dataset:
        for column in columns[1:]:
            values = row[column] if isinstance(row[column], list) else [row[column]]
            pairs.extend((row[columns[0]], value) for value in values)
    return pairs


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang != "bash"], ids=str)
def test_training_docs_code_block(
    block: Block,
    offline_hub: None,
    one_thread: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each block runs; a training block's model has learned (its ranking of its own training pairs moved) and,
    where the block saves it, the saved copy ranks exactly as the trained model; printed scores are rank's."""
    if block.skip_reason:
        pytest.skip(block.skip_reason)
    ledger = ScoreLedger(monkeypatch)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    exec(compile(block.code, str(block), "exec"), namespace)
    if "CrossEncoderTrainer(" not in block.code:
        ledger.check(capsys.readouterr().out)
        return
    trained = namespace["model"]
    source = re.search(r'CrossEncoder\("([^"]+)"\)', block.code)
    assert source is not None, f"{block}: which model does it train?"
    untrained = CrossEncoder(source[1])  # the same checkpoint, as the block loaded it
    by_query: dict[str, list[str]] = {}
    for query, document in dataset_pairs(namespace["train_dataset"]):
        by_query.setdefault(query, []).append(document)
    for query, documents in by_query.items():
        after = [hit["score"] for hit in sorted(trained.rank(query, documents), key=lambda hit: hit["corpus_id"])]
        before = [hit["score"] for hit in sorted(untrained.rank(query, documents), key=lambda hit: hit["corpus_id"])]
        assert np.isfinite(after).all() and not np.array_equal(after, before), f"{block}: {before} -> {after}"
    saved = re.search(r'save_pretrained\("([^"]+)"\)', block.code)
    if saved:
        reloaded = CrossEncoder(saved[1])
        for query, documents in by_query.items():
            expected = trained.rank(query, documents)
            got = reloaded.rank(query, documents)
            assert [hit["corpus_id"] for hit in got] == [hit["corpus_id"] for hit in expected]
            assert [hit["score"] for hit in got] == pytest.approx([hit["score"] for hit in expected], abs=1e-6)
