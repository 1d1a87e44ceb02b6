"""The code blocks of the LangChain and LlamaIndex docs pages run, as the README's do (tests/project/test_readme.py).

Hub ids resolve to tiny offline models with that id's registry settings, so each block runs the code path a
user's copy would, without downloading anything.
"""

from __future__ import annotations

import pytest
from support import Block, code_blocks, skip_without_optional_modules

PAGES = ["docs/integrations/langchain.md", "docs/integrations/llama-index.md"]
BLOCKS = [block for page in PAGES for block in code_blocks(page) if block.lang in {"python", "py", "bash"}]


def test_pages_have_tested_python_blocks() -> None:
    for page in PAGES:
        tested = [b for b in BLOCKS if b.path == page and b.lang != "bash" and not b.skip_reason]
        assert len(tested) >= 4, page
    assert all(b.skip_reason for b in BLOCKS if b.lang == "bash"), "shell blocks here are installs only"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang != "bash"], ids=str)
def test_docs_code_block(block: Block, offline_hub: None, llama_index_settings: None) -> None:
    if block.skip_reason:
        pytest.skip(block.skip_reason)
    skip_without_optional_modules(block.code)
    exec(compile(block.code, str(block), "exec"), {"__name__": "__docs__"})
