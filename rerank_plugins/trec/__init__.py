"""TREC files in and out, and re-ranking a whole run query by query.

The package has one module per job; every name is also importable from ``rerank_plugins.trec`` itself:

* :mod:`~rerank_plugins.trec.formats`: the readers (runs, qrels, topics, corpora, rank_llm-style JSON). They
  check every line and name the file and line of the first bad one, because a run that is read wrongly is
  evaluated wrongly without any error.
* :mod:`~rerank_plugins.trec.output`: writing runs atomically, and :class:`RunWriter`, which saves each finished
  query durably so that an interrupted run resumes without losing or repeating work.
* :mod:`~rerank_plugins.trec.jobs`: :func:`plan` matches a run with its texts; :func:`rerank_run` re-ranks the
  top ``depth`` candidates of every query and yields each query as soon as it is done.
* :mod:`~rerank_plugins.trec.evaluation`: :func:`evaluate` with ir-measures.

Formats:

* run: ``qid Q0 docid rank score tag`` (whitespace-separated, 6 columns); candidates are ordered by score,
  best first, ties by the rank column, as evaluation tools read them.
* qrels: ``qid iteration docid relevance`` (4 columns, integer relevance).
* topics: ``qid<TAB>query``.
* corpus: JSONL ``{"docid": ..., "text": ...}`` (BEIR's ``_id`` and ``title`` are accepted too) or TSV
  ``docid<TAB>text``; either may be gzipped.
* rank_llm-style JSON: ``[{"query": str, "hits": [{"qid", "docid", "rank", "score", "content"}]}]``.

All files are UTF-8; a byte that is not is an error naming its file and line.
"""

from __future__ import annotations

from rerank_plugins.trec.evaluation import DEFAULT_METRICS, evaluate, ir_measures_module
from rerank_plugins.trec.formats import (
    LAYOUTS,
    InputError,
    Qrels,
    Ranking,
    Run,
    RunRanking,
    check_id,
    corpus_format,
    read_corpus,
    read_qrels,
    read_rank_llm_json,
    read_run,
    read_topics,
    run_format,
)
from rerank_plugins.trec.jobs import MAX_LISTED, Job, order_ranking, plan, rerank_jobs, rerank_run, score_query
from rerank_plugins.trec.output import (
    RunWriter,
    atomic_write,
    check_tag,
    check_writable,
    default_tag,
    format_ranking,
    stale_temporary_files,
    write_run,
)

__all__ = [
    "DEFAULT_METRICS",
    "LAYOUTS",
    "MAX_LISTED",
    "InputError",
    "Job",
    "Qrels",
    "Ranking",
    "Run",
    "RunRanking",
    "RunWriter",
    "atomic_write",
    "check_id",
    "check_tag",
    "check_writable",
    "corpus_format",
    "default_tag",
    "evaluate",
    "format_ranking",
    "ir_measures_module",
    "order_ranking",
    "plan",
    "read_corpus",
    "read_qrels",
    "read_rank_llm_json",
    "read_run",
    "read_topics",
    "rerank_jobs",
    "rerank_run",
    "run_format",
    "score_query",
    "stale_temporary_files",
    "write_run",
]
