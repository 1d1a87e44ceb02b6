"""Evaluating runs against qrels with ir-measures, over a query set fixed here (``trec_eval -c`` by default)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rerank_plugins.trec.formats import Qrels, RunRanking

DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@100")


def ir_measures_module() -> Any:
    """The ``ir_measures`` module, or an ImportError that says how to install it."""
    try:
        import ir_measures
    except ImportError as error:
        raise ImportError("evaluation needs ir-measures: pip install 'rerank-plugins[eval]'") from error
    return ir_measures


def evaluate(
    qrels: Qrels,
    run: Mapping[str, RunRanking],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    run_queries_only: bool = False,
) -> dict[str, float]:
    """Each metric's mean over the queries of the qrels, per-query values computed by ir-measures.

    A judged query that the run lacks counts as 0 (``trec_eval -c``), so that a run cannot gain by dropping
    hard queries; ``run_queries_only=True`` averages over the judged queries the run has instead (``trec_eval``
    without ``-c``). The query set is fixed here, not left to the installed ir-measures version. Queries of the
    run without judgements are ignored. Metric names are ir-measures' (``nDCG@10``, ``RR(rel=2)@10``, ``R@1000``,
    ``AP``); a bad name raises ``ValueError``.
    """
    ir_measures = ir_measures_module()
    measures = []
    for name in metrics:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (NameError, ValueError, TypeError) as error:
            raise ValueError(f"unknown metric {name!r} ({error}); see https://ir-measur.es/ for the names") from None
    queries = [qid for qid in qrels if qid in run] if run_queries_only else list(qrels)
    if not queries:
        return dict.fromkeys(metrics, math.nan)
    judgements = (ir_measures.Qrel(qid, docid, grade) for qid in queries for docid, grade in qrels[qid].items())
    scored = (ir_measures.ScoredDoc(qid, docid, score) for qid in queries for docid, score in run.get(qid, ()))
    values: dict[Any, dict[str, float]] = {measure: {} for measure in measures}
    for metric in ir_measures.iter_calc(measures, judgements, scored):
        values[metric.measure][metric.query_id] = float(metric.value)
    return {
        name: sum(values[measure].get(qid, 0.0) for qid in queries) / len(queries)
        for name, measure in zip(metrics, measures, strict=True)
    }
