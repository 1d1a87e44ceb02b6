"""Cutting a padded batch into length-homogeneous chunks, so that pad tokens are not computed.

A batch of length-sorted rows still pads every row to its longest, and with the lengths of real passages a large
part of the encoder's work is spent on pad tokens (measured in ``docs/performance.md``). A row's result does not
depend on the other rows or on its pad columns, so running the rows in chunks of similar length, each trimmed to
its own longest row, gives the same scores (to float rounding) for less work. On a CPU a forward pass costs
little beyond its tokens, so chunks pay off; on an accelerator each extra forward costs launches and parallelism,
so there the batch is only cut when it holds more tokens than ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

CPU_CHUNK_OVERHEAD = 64
"""The cost of one more forward pass on a CPU, in padded token slots."""
PACKED_CHUNK_OVERHEAD = 256
"""The same cost for cutting packed rows (``pack_rows``), whose bins are nearly full already: a T5 forward has a
fixed cost of many tokens' work, more on a loaded machine (how it was chosen: ``docs/performance.md``, "monoT5 on
other text")."""


def length_chunks(
    attention_mask: torch.Tensor,
    *,
    max_tokens: int | None = None,
    max_rows: int | None = None,
    overhead: float | None = None,
) -> list[tuple[torch.Tensor, int]]:
    """Split a batch into ``(row indices, width)`` chunks that minimise padded slots + ``overhead`` per chunk.

    Rows are taken longest first; a chunk is a run of consecutive rows of that order, trimmed to ``width`` columns
    (the last column any of its rows attends to, so both right and left padding are safe). ``max_tokens`` caps
    ``rows x width`` of a chunk (a single row is always allowed), ``max_rows`` its rows. ``overhead`` defaults to
    :data:`CPU_CHUNK_OVERHEAD` on a CPU and to "never split for padding alone" elsewhere.
    """
    if overhead is None:
        overhead = CPU_CHUNK_OVERHEAD if attention_mask.device.type == "cpu" else float(attention_mask.numel())
    lengths = attention_mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    widths = _last_columns(attention_mask)[order].tolist()  # non-increasing for right padding
    n = len(widths)
    # best[j]: the cheapest cost of the first j rows; cut[j]: where its last chunk starts.
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        width = 0
        for i in range(j - 1, -1, -1):
            width = max(width, widths[i])
            too_wide = max_tokens is not None and j - i > 1 and (j - i) * width > max_tokens
            if too_wide or (max_rows is not None and j - i > max_rows):
                break  # longer runs only grow
            cost = best[i] + (j - i) * width + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks: list[tuple[torch.Tensor, int]] = []
    j = n
    while j > 0:
        i = cut[j]
        chunks.append((order[i:j], max(widths[i:j])))
        j = i
    return chunks[::-1]


def run_chunks(
    chunks: list[tuple[torch.Tensor, int]], compute: Callable[[torch.Tensor, int], torch.Tensor]
) -> torch.Tensor:
    """``compute(rows, width)`` of every chunk of :func:`length_chunks`, each chunk's output at its own rows of
    one tensor, in the batch's row order."""
    output: torch.Tensor | None = None
    total = sum(len(rows) for rows, _ in chunks)
    for rows, width in chunks:
        part = compute(rows, width)
        if output is None:
            output = part.new_empty((total, *part.shape[1:]))
        output[rows] = part
    assert output is not None, "no chunks: length_chunks gives at least one for a non-empty batch"
    return output


def _last_columns(attention_mask: torch.Tensor) -> torch.Tensor:
    """1 + the index of the last attended column of each row (0 for an all-padding row)."""
    columns = torch.arange(1, attention_mask.shape[1] + 1, device=attention_mask.device)
    return (attention_mask.bool() * columns).amax(dim=1)


@dataclass
class Packing:
    """Rows packed end to end into fewer, equally wide rows ("bins"), for a model with relative positions only.

    ``input_ids`` ``(bins, capacity)``; ``attention_mask`` ``(bins, 1, capacity, capacity)``, additive (0 where a
    token may attend, the dtype's minimum elsewhere): block-diagonal, so a token attends only to the tokens of its
    own row; ``row_bin`` ``(rows,)`` the bin of each original row; ``row_columns`` ``(rows, capacity)`` the columns
    of each row's own tokens in its bin; ``filled`` ``(bins, capacity)`` the columns that hold a token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    row_bin: torch.Tensor
    row_columns: torch.Tensor
    filled: torch.Tensor


def pack_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32, pad_id: int = 0
) -> Packing:
    """Pack the attended tokens of each row into bins as wide as the longest row (first-fit, longest first).

    For an encoder whose attention depends on positions only through ``j - i`` (T5's relative position bias), a
    row's tokens give the same outputs anywhere in a bin, since the mask hides the other rows: the same numbers as
    a padded batch (to float rounding) with few pad tokens and few forwards: rows shorter than half the longest
    share bins. The bins are then cut with :func:`length_chunks` like any batch (``filled`` is their mask), which
    trims the bins that rows longer than half the capacity leave part empty.
    """
    lengths = attention_mask.sum(dim=1)
    capacity = max(int(lengths.max()), 1)
    free: list[int] = []  # room left in each bin
    bins, offsets = [0] * len(lengths), [0] * len(lengths)
    for row in torch.argsort(lengths, descending=True, stable=True).tolist():
        length = int(lengths[row])
        target = next((b for b, room in enumerate(free) if room >= length), len(free))
        if target == len(free):
            free.append(capacity)
        bins[row], offsets[row] = target, capacity - free[target]
        free[target] -= length
    device = input_ids.device
    row_bin = torch.tensor(bins, device=device)
    # Destination of every attended token, in row-major order (the order of input_ids[mask]).
    starts = row_bin * capacity + torch.tensor(offsets, device=device)
    counts = lengths.to(device)
    within = torch.arange(int(counts.sum()), device=device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    destination = torch.repeat_interleave(starts, counts) + within
    packed = torch.full((len(free) * capacity,), pad_id, dtype=input_ids.dtype, device=device)
    packed[destination] = input_ids[attention_mask.bool()]
    segment = torch.full((len(free) * capacity,), -1, dtype=torch.long, device=device)
    segment[destination] = torch.repeat_interleave(torch.arange(len(lengths), device=device), counts)
    segment = segment.view(len(free), capacity)
    allowed = (segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] >= 0)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
    row_columns = segment[row_bin] == torch.arange(len(lengths), device=device)[:, None]
    return Packing(packed.view(len(free), capacity), mask.unsqueeze(1), row_bin, row_columns, segment >= 0)
