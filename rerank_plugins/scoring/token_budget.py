"""Batches chosen by tokens, not pairs, for ``predict`` calls on an accelerator that give no ``batch_size``.

sentence-transformers cuts a fixed number of pairs per forward (32 by default): right for a CPU, where a forward
costs about its tokens, but it leaves a GPU mostly idle on short passages and can run out of memory on long ones.
With no ``batch_size``, on an accelerator, pairs are sorted by length and grouped so that each forward holds up to
``batch_tokens`` (padded) tokens; an explicit ``batch_size`` keeps its sentence-transformers meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

ACCELERATOR_BATCH_TOKENS = 32_768
"""Default padded tokens per forward on an accelerator (e.g. 64 pairs of 512 tokens, 256 pairs of 128)."""
CPU_BATCH_SIZE = 32
"""sentence-transformers' default pairs per forward, kept on a CPU."""
MAX_ROWS = 1024
"""At most this many pairs per forward, however short."""
CHARS_PER_TOKEN = 3
"""A cautious estimate (English runs 4 to 5 characters a token): groups err on the small side."""


def estimated_tokens(pair: Sequence[str], max_length: int | None) -> int:
    """An upper-leaning estimate of a pair's tokens, without tokenizing: characters / 3, plus special tokens."""
    tokens = sum(len(text) for text in pair) // CHARS_PER_TOKEN + 8
    return min(tokens, max_length) if max_length else tokens


def token_budget_groups(
    pairs: Sequence[Sequence[str]], max_length: int | None, batch_tokens: int = ACCELERATOR_BATCH_TOKENS
) -> list[list[int]]:
    """Indices of ``pairs`` in groups, longest first, each holding at most ``batch_tokens`` padded tokens.

    A group is a run of the length-sorted pairs; its padded size is rows x its longest row (the first). A single
    pair longer than the budget is a group of its own.
    """
    lengths = [estimated_tokens(pair, max_length) for pair in pairs]
    order = sorted(range(len(pairs)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for index in order:
        if groups and len(groups[-1]) < MAX_ROWS and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= batch_tokens:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups
