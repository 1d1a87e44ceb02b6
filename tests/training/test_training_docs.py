"""The code blocks of docs/training.md run against tiny models, as the README's do (test_readme.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from support import Block, code_blocks

PAGE = "docs/training.md"
BLOCKS = [block for block in code_blocks(PAGE) if block.lang in {"python", "py", "bash"}]


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_page_has_tested_python_blocks() -> None:
    tested = [b for b in BLOCKS if b.lang != "bash" and not b.skip_reason]
    assert len(tested) >= 5
    assert all(b.skip_reason for b in BLOCKS if b.lang == "bash"), "shell blocks here are installs only"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang != "bash"], ids=str)
def test_training_docs_code_block(block: Block, offline_hub: None, one_thread: None) -> None:
    if block.skip_reason:
        pytest.skip(block.skip_reason)
    exec(compile(block.code, str(block), "exec"), {"__name__": "__docs__"})
