"""The code blocks of the Haystack docs page run, as the README's do (tests/project/test_readme.py).

Hub ids resolve to tiny offline models with that id's registry settings, so each block runs the code path a
user's copy would, without downloading anything.
"""

from __future__ import annotations

import inspect

import pytest
from haystack import Pipeline
from support import Block, code_blocks, skip_without_optional_modules

PAGE = "docs/integrations/haystack.md"
BLOCKS = [block for block in code_blocks(PAGE) if block.lang in {"python", "py", "bash"}]
# Haystack 2 has no deserialisation allowlist: Pipeline.loads takes no allowed_modules there.
HAS_ALLOWLIST = "allowed_modules" in inspect.signature(Pipeline.loads).parameters


def test_page_has_tested_python_blocks() -> None:
    tested = [block for block in BLOCKS if block.lang != "bash" and not block.skip_reason]
    assert len(tested) >= 5
    assert all(block.skip_reason for block in BLOCKS if block.lang == "bash"), "shell blocks here are installs only"


@pytest.mark.parametrize("block", [block for block in BLOCKS if block.lang != "bash"], ids=str)
def test_docs_code_block(block: Block, offline_hub: None) -> None:
    if block.skip_reason:
        pytest.skip(block.skip_reason)
    if "allowed_modules=" in block.code and not HAS_ALLOWLIST:
        pytest.skip("Haystack 2: Pipeline.loads has no allowed_modules (the unit tests load YAML there)")
    skip_without_optional_modules(block.code)
    exec(compile(block.code, str(block), "exec"), {"__name__": "__docs__"})
