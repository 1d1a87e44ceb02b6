"""One table: which scoring family each published reranker belongs to, and with which settings.

Every entry is read from the authors' own code or model card (see ``docs/models/``). A hub id found
here is scored the way its authors score it; ``preset=`` applies an entry to a local copy. This module is data
only: what a family is and how one is chosen live in ``rerank_plugins.families``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Activation = Literal["sigmoid", "identity", "log-sigmoid"]

BUILTIN_FAMILIES: Mapping[str, str] = {
    "monot5": "rerank_plugins.scoring.monot5",
    "sequence-classification": "rerank_plugins.scoring.sequence_classification",
    "query-likelihood": "rerank_plugins.scoring.query_likelihood",
    "listconranker": "rerank_plugins.scoring.listconranker",
}
"""The built-in families: name -> the module whose ``FAMILY`` describes it (imported on first use). A new built-in
family is one file in ``rerank_plugins/scoring/`` plus one entry here (``docs/families.md``); every other list of
family names is derived from the families themselves (``families.family_names()``)."""

FAMILIES: tuple[str, ...] = tuple(BUILTIN_FAMILIES)
"""The built-in family names, in the order the docs present them (``families.family_names()`` adds yours)."""


@dataclass(frozen=True)
class RegistryEntry:
    """How one published checkpoint scores.

    Attributes:
        family: the scoring family (one module of ``rerank_plugins.scoring``).
        activation: applied by ``predict`` to the module's raw score; ``None`` keeps the family default
            (sigmoid for monoT5, ListConRanker and one-logit classifiers; identity for query likelihood).
        options: keyword arguments for the family's scoring module (token pieces, templates, lengths).
        fallback_tokenizer: where to take the tokenizer from when the checkpoint ships none.
        needs_remote_code: the checkpoint only loads with the authors' remote code
            (``trust_remote_code=True`` must then be passed explicitly).
    """

    family: str
    activation: Activation | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fallback_tokenizer: str | None = None
    needs_remote_code: bool = False


_MONOT5 = RegistryEntry("monot5")  # P(true) = sigmoid(logit(true) - logit(false)), InRanker's value
_RANKING_GPT = RegistryEntry("query-likelihood", activation="identity")

REGISTRY: dict[str, RegistryEntry] = {
    # monoT5 lineage: "Query: q Document: d Relevant:", one decoder step, ▁true vs ▁false.
    "unicamp-dl/InRanker-small": _MONOT5,
    "unicamp-dl/InRanker-base": _MONOT5,
    "unicamp-dl/InRanker-3B": _MONOT5,
    "castorini/monot5-base-msmarco": _MONOT5,
    "castorini/monot5-large-msmarco": _MONOT5,
    "castorini/monot5-3b-msmarco": _MONOT5,
    # DeBERTa-v3 cross-encoder: the raw logit is the ranking score (no activation). xpmir cuts the document
    # first ("only_second"); a query longer than half of max_length is capped there.
    "xpmir/cross-encoder-DeBERTav3-DistillRankNET": RegistryEntry(
        "sequence-classification",
        activation="identity",
        options={"truncation": "only_second"},
        fallback_tokenizer="microsoft/deberta-v3-base",
    ),
    # R*: a small BERT trained for binary relevance; sigmoid (1 label) or softmax[:, 1] (2 labels),
    # decided from the checkpoint's config at load time.
    "jaspercatapang/R-star": RegistryEntry("sequence-classification", activation="sigmoid"),
    # RankingGPT: mean log-probability of the query tokens given "Document: {doc} Query:".
    "zyznull/RankingGPT-bloom-560m": _RANKING_GPT,
    "zyznull/RankingGPT-bloom-1b1": _RANKING_GPT,
    "zyznull/RankingGPT-bloom-3b": _RANKING_GPT,
    "zyznull/RankingGPT-bloom-7b": _RANKING_GPT,
    "zyznull/RankingGPT-llama2-7b": _RANKING_GPT,
    "zyznull/RankingGPT-baichuan2-7b": RegistryEntry("query-likelihood", activation="identity", needs_remote_code=True),
    # Qwen-7b (v1) has no pad token: its authors pad with the tokenizer's eod id.
    "zyznull/RankingGPT-qwen-7b": RegistryEntry(
        "query-likelihood",
        activation="identity",
        options={"pad_token_attr": "eod_id"},
        needs_remote_code=True,
    ),
    # ListConRanker: listwise; sigmoid of the ListTransformer's logit.
    "ByteDance/ListConRanker": RegistryEntry("listconranker"),
}


def lookup(name: str) -> RegistryEntry | None:
    """The entry for a hub id, matched case-insensitively (the hub treats ids that way)."""
    if name in REGISTRY:
        return REGISTRY[name]
    lowered = {key.lower(): value for key, value in REGISTRY.items()}
    return lowered.get(name.lower())


def check_preset(preset: str) -> RegistryEntry:
    """Return the registry entry for ``preset``, else raise a ``ValueError`` that lists the presets."""
    entry = lookup(preset)
    if entry is None:
        raise ValueError(f"Unknown preset {preset!r}. Valid presets: {', '.join(sorted(REGISTRY))}.")
    return entry
