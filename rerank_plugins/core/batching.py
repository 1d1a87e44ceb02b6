"""The one batching policy: which rows share a forward, decided on real token counts.

Every row is tokenized before it is batched (``encode``), so the policy knows each row's length exactly. Rows go
longest first, so that a batch pads little. On a CPU a forward costs about its tokens, so batches are
sentence-transformers' 32 rows (the family modules then cut each batch into chunks of similar length); on an
accelerator a fixed row count leaves it idle on short passages and can run out of memory on long ones, so a batch
holds as many rows as fit in ``batch_tokens`` padded tokens. An explicit ``batch_size`` keeps its
sentence-transformers meaning everywhere. A listwise family's row is a whole list, always a forward of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CPU_BATCH_SIZE = 32
"""sentence-transformers' default rows per forward, kept on a CPU."""
ACCELERATOR_BATCH_TOKENS = 32_768
"""Default padded tokens per forward on an accelerator (e.g. 64 rows of 512 tokens, 256 rows of 128)."""
MAX_ROWS = 1024
"""At most this many rows per forward on an accelerator, however short."""


def on_accelerator(device: Any) -> bool:
    """Whether batches are cut by a token budget on ``device`` (a ``torch.device``): anywhere but a CPU."""
    return bool(device.type != "cpu")


def plan_batches(
    tokens: Sequence[int],
    *,
    accelerator: bool,
    batch_size: int | None = None,
    batch_tokens: int = ACCELERATOR_BATCH_TOKENS,
) -> list[list[int]]:
    """Row indices in batches, longest rows first.

    ``batch_size`` rows per batch when given, else :data:`CPU_BATCH_SIZE` on a CPU; on an accelerator, runs of
    rows whose padded size (rows x the first, longest row) stays within ``batch_tokens`` (a row longer than the
    budget is a batch of its own).
    """
    order = sorted(range(len(tokens)), key=lambda i: -tokens[i])
    if batch_size is not None or not accelerator:
        size = batch_size or CPU_BATCH_SIZE
        return [order[start : start + size] for start in range(0, len(order), size)]
    batches: list[list[int]] = []
    for index in order:
        last = batches[-1] if batches else None
        if last is not None and len(last) < MAX_ROWS and (len(last) + 1) * tokens[last[0]] <= batch_tokens:
            last.append(index)
        else:
            batches.append([index])
    return batches


def one_per_batch(tokens: Sequence[int]) -> list[list[int]]:
    """A listwise family's batches: each list alone, longest first."""
    return [[index] for index in sorted(range(len(tokens)), key=lambda i: -tokens[i])]
