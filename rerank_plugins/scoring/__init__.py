"""The scoring core: one module file per family, each ending with its ``FAMILY = FamilySpec(...)``.

Every adapter goes through these, by way of ``rerank_plugins.CrossEncoder``; ``rerank_plugins.families`` is the
registry that finds them.
"""

from rerank_plugins.scoring.base import ScoringModule
from rerank_plugins.scoring.listconranker import ListConRankerScore, ListTransformer, iterative_scores
from rerank_plugins.scoring.monot5 import MonoT5Score
from rerank_plugins.scoring.query_likelihood import QueryLikelihoodScore
from rerank_plugins.scoring.sequence_classification import LabelMargin

SCORING_MODULES: dict[str, type[ScoringModule]] = {
    "monot5": MonoT5Score,
    "query-likelihood": QueryLikelihoodScore,
    "listconranker": ListConRankerScore,
}
"""Family name -> its module class, for the built-in families built from one ``ScoringModule``."""

__all__ = [
    "SCORING_MODULES",
    "LabelMargin",
    "ListConRankerScore",
    "ListTransformer",
    "MonoT5Score",
    "QueryLikelihoodScore",
    "ScoringModule",
    "iterative_scores",
]
