"""The scoring maths: one module file per family, each ending with its ``FAMILY = FamilySpec(...)``.

Every frontend reaches these through the request core (``rerank_plugins.core``); ``rerank_plugins.families`` is
the registry that finds them. ``base`` holds what the family modules share, ``padding`` how a batch is cut so
that pad tokens are not computed, ``truncation`` how a call counts what it cut.
"""

from rerank_plugins.scoring.base import ScoringModule
from rerank_plugins.scoring.listconranker import ListConRankerScore, ListTransformer, iterative_scores
from rerank_plugins.scoring.monot5 import MonoT5Score
from rerank_plugins.scoring.query_likelihood import QueryLikelihoodScore
from rerank_plugins.scoring.sequence_classification import LabelMargin

__all__ = [
    "LabelMargin",
    "ListConRankerScore",
    "ListTransformer",
    "MonoT5Score",
    "QueryLikelihoodScore",
    "ScoringModule",
    "iterative_scores",
]
