"""Counting truncation per ``predict`` call, with no state on shared objects.

Each ``predict`` opens a :func:`truncation_report`; the modules add what they cut with :func:`report_truncated`.
The report lives in a context variable, so two threads scoring with one model each count their own call. Texts
are re-tokenized without truncation only through :func:`untruncated`, a private copy of the tokenizer: a fast
tokenizer keeps its truncation and padding settings on the shared Rust object, and switching them on the
model's own tokenizer would change them for another thread in the middle of its call.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class TruncationReport:
    """How many inputs of one call were cut to ``max_length``."""

    count: int = 0


_current: ContextVar[TruncationReport | None] = ContextVar("rerank_plugins_truncation", default=None)
_copies: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_copies_lock = threading.Lock()


@contextmanager
def truncation_report() -> Iterator[TruncationReport]:
    """Collect the truncation of everything scored inside the ``with`` block (this thread or task only)."""
    report = TruncationReport()
    token = _current.set(report)
    try:
        yield report
    finally:
        _current.reset(token)


def report_truncated(count: int) -> None:
    """Add ``count`` cut inputs to the current call's report (nothing outside a call, e.g. in training)."""
    report = _current.get()
    if report is not None and count:
        report.count += count


def untruncated(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` used only without truncation or padding, made once per tokenizer."""
    with _copies_lock:
        twin = _copies.get(tokenizer)
        if twin is None:
            twin = _copies[tokenizer] = copy.deepcopy(tokenizer)
        return twin


def cut_rows(tokenizer: Any, texts: Sequence[str] | Sequence[tuple[str, str]], limit: int) -> list[int]:
    """The indices of ``texts`` (single texts or pairs) longer than ``limit`` tokens without truncation."""
    if not texts:
        return []
    twin = untruncated(tokenizer)
    if all(isinstance(text, str) for text in texts):
        ids = twin(list(texts), truncation=False, verbose=False)["input_ids"]
    else:
        pairs: Sequence[tuple[str, str]] = texts  # type: ignore[assignment]
        ids = twin([str(a) for a, _ in pairs], [str(b) for _, b in pairs], truncation=False, verbose=False)["input_ids"]
    return [row for row, row_ids in enumerate(ids) if len(row_ids) > limit]


def truncated_rows(
    tokenizer: Any,
    texts: Sequence[str] | Sequence[tuple[str, str]],
    attention_mask: torch.Tensor,
    limit: int,
) -> list[int]:
    """The rows of ``texts`` that were cut to ``limit`` tokens.

    Only a row that came out exactly ``limit`` tokens long can have been cut, so only those rows are
    tokenized again, without truncation, to tell "cut" from "exactly the limit": free for short inputs.
    """
    full_rows = (attention_mask.sum(dim=1) >= limit).nonzero().flatten().tolist()
    again: Any = [texts[i] for i in full_rows]
    return [full_rows[i] for i in cut_rows(tokenizer, again, limit)]
