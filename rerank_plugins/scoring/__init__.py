"""The scoring core: one sentence-transformers module per family. Every adapter goes through these."""

from rerank_plugins.scoring.base import ScoringModule
from rerank_plugins.scoring.listconranker import ListConRankerScore, ListTransformer
from rerank_plugins.scoring.monot5 import MonoT5Score
from rerank_plugins.scoring.query_likelihood import QueryLikelihoodScore

SCORING_MODULES: dict[str, type[ScoringModule]] = {
    "monot5": MonoT5Score,
    "query-likelihood": QueryLikelihoodScore,
    "listconranker": ListConRankerScore,
}
"""Family name -> its module; ``sequence-classification`` uses sentence-transformers' own ``Transformer``."""

__all__ = [
    "SCORING_MODULES",
    "ListConRankerScore",
    "ListTransformer",
    "MonoT5Score",
    "QueryLikelihoodScore",
    "ScoringModule",
]
