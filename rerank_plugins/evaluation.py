"""sentence-transformers' reranking evaluator with a listwise model: each sample's list is scored alone.

``CrossEncoderRerankingEvaluator`` flattens every sample's (query, document) pairs into one ``predict`` call. A
pointwise score does not care; a listwise one does: two samples with the same query (one sample per positive is
common) would be scored as one merged list. ``predict`` therefore asks :func:`evaluator_lists` whether its caller
is that evaluator; if so, it rebuilds each sample's list from the evaluator's public ``samples`` the way the
evaluator flattens them, checks that they are exactly the pairs it was given, and scores each list as a request
of its own. Pairs that do not match are an error rather than lists guessed from query text.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def evaluator_lists(pairs: Sequence[Sequence[str]], depth: int = 2) -> list[int] | None:
    """The sizes of the samples' lists when ``predict``'s caller (``depth`` frames up) is sentence-transformers'
    ``CrossEncoderRerankingEvaluator``; None for any other caller."""
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    caller = sys._getframe(depth).f_locals.get("self")
    if not isinstance(caller, CrossEncoderRerankingEvaluator):
        return None
    lists = [docs for docs in (_sample_documents(caller, sample) for sample in caller.samples) if docs is not None]
    flat = [(sample_query, doc) for sample_query, docs in lists for doc in docs]
    if [tuple(pair) for pair in pairs] != flat:
        raise ValueError(
            "A listwise model scores each sample's list alone, but the pairs this reranking evaluator sent are not "
            "its samples' lists in order (another sentence-transformers version?). Score each sample with "
            "model.rank(query, documents) instead."
        )
    return [len(docs) for _, docs in lists]


def _sample_documents(evaluator: Any, sample: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(query, the documents the evaluator scores for ``sample``), or None for a sample it skips (no positive)."""
    positive = sample["positive"]
    positive = [positive] if isinstance(positive, str) else list(positive)
    documents = sample.get("documents")
    if documents is None:
        docs, relevant = positive + list(sample["negative"]), len(positive)
    elif evaluator.always_rerank_positives:
        docs, relevant = positive + [d for d in documents if d not in positive], len(positive)
    else:
        docs, relevant = list(documents), sum(document in positive for document in documents)
    # Nothing relevant to find: the evaluator scores such a sample 0 without calling the model.
    return (sample["query"], docs) if relevant else None
