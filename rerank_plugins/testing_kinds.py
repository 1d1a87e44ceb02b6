"""The kinds of tiny model that ``rerank_plugins.testing`` builds, readable without importing it (it imports torch
and transformers): ``rerank-plugins tiny-model --family bert`` is refused in a fraction of a second."""

from __future__ import annotations

FAMILY_BUILDERS: dict[str, str] = {
    "monot5": "T5ForConditionalGeneration with the pieces ▁true/▁false",
    "sequence-classification": "BertForSequenceClassification, 1 label (R*-like)",
    "sequence-classification-2": "BertForSequenceClassification, 2 labels",
    "deberta": "DebertaV2ForSequenceClassification, 1 label (DistillRankNET-like)",
    "query-likelihood": "BloomForCausalLM (RankingGPT-bloom-like)",
    "llama": "LlamaForCausalLM without a pad token (RankingGPT-llama2-like)",
    "listconranker": "BertModel + linear_in_embedding.pt + list_transformer.pt (ListConRanker layout)",
}
"""What ``build_tiny_model(kind, ...)`` builds for each kind."""
