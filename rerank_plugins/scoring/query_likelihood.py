"""Query likelihood with a causal LM (RankingGPT): the mean log-probability of the query given the document.

The RankingGPT card scores ``context = "Document: {doc} Query:"`` and ``cont = query`` (each tokenized
without special tokens), feeds ``context + cont[:-1]`` and averages ``log p(cont[i])``. The authors compute
full-vocabulary logits at every position (``batch x length x 250,880`` for BLOOM); here the LM head runs
only at the positions that predict a query token, and over the vocabulary in blocks (a running logsumexp), so no
``length x vocab`` tensor exists; the body runs in length-homogeneous chunks of at most ``max_chunk_tokens``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForCausalLM

from rerank_plugins.backends.graph import Runtime, ScoreGraph
from rerank_plugins.checks import InputError
from rerank_plugins.families import FamilySpec, TinyModel
from rerank_plugins.scoring.base import Encoded, Pair, ScoringModule, fp32_scores
from rerank_plugins.scoring.padding import length_chunks
from rerank_plugins.scoring.truncation import report_truncated

logger = logging.getLogger(__name__)

# The authors' prompt, placeholder name included: their budget counts the tokens of this literal string.
RANKING_GPT_TEMPLATE = "Document: {doc} Query:"


class QueryLikelihoodScore(ScoringModule):
    """Raw score = mean log p(query token | document prompt, earlier query tokens); the activation is identity.

    Args:
        model_name_or_path: a causal LM fine-tuned for query generation (RankingGPT).
        template: the context; ``{doc}`` is replaced by the (possibly cut) document; the query follows it
            with no space added, as in the authors' code.
        max_length: the budget of the authors' ``eval.py``: a document keeps at most
            ``max_length - len(template ids) - len(query ids) - 10`` tokens.
        pad_token_attr: a tokenizer attribute to pad with when it has no pad token (Qwen: ``eod_id``).
    """

    family: ClassVar[str] = "query-likelihood"
    max_chunk_tokens: ClassVar[int] = 2048
    """Tokens per forward of the body: bounds its activations (rows x length x hidden) whatever the batch size."""
    head_block_elements: ClassVar[int] = 2**22
    """Logits the LM head holds at once (4M fp32 = 16 MiB): the vocabulary-wide softmax is taken in blocks."""
    auto_class: ClassVar[Any] = AutoModelForCausalLM
    config_keys: list[str] = ["template", "pad_token_attr"]

    def __init__(
        self,
        model_name_or_path: str,
        *,
        template: str = RANKING_GPT_TEMPLATE,
        pad_token_attr: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name_or_path, **kwargs)
        self.template, self.pad_token_attr = template, pad_token_attr
        self.pad_id = self._pad_token_id()
        # eval.py: prompt_len = len(tokenizer.encode(prompt)), special tokens included.
        self.template_length = len(self.tokenizer.encode(template))

    def _pad_token_id(self) -> int:
        """Pads never reach a score (right padding, causal attention); any valid id will do, as the authors'."""
        tokenizer = self.tokenizer
        candidates = [tokenizer.pad_token_id]
        if self.pad_token_attr:
            candidates.append(getattr(tokenizer, self.pad_token_attr, None))
        candidates += [tokenizer.eos_token_id, 0]
        return next(int(c) for c in candidates if c is not None)

    def _document_budget(self, query: str, query_length: int) -> int:
        """eval.py's room for the document: ``max_length - template - query - 10`` tokens.

        A query that leaves no room for the document is an error: the authors' budget would cut every document to
        nothing and tie all scores (and a huge query would allocate without bound).
        """
        budget = self.max_length - self.template_length - query_length - 10
        if budget <= 0:
            raise InputError(
                f"The query {query[:60]!r} has {query_length} tokens, which leaves no room for the document within "
                f"max_length={self.max_length} (the authors' budget: max_length - {self.template_length} template "
                "tokens - query tokens - 10). Pass a larger max_length or a shorter query.",
                field="query",
            )
        return budget

    def encode(self, rows: Sequence[Pair], prompt: str | None = None) -> list[Encoded]:
        """Per pair: the ids of ``template(doc=cut document) + query[:-1]``, and where each query token is read.

        eval.py's truncation keeps the document's first ``budget`` tokens, decoded back to text. The query and the
        context are tokenized without special tokens, as the card's ``context``/``cont``.
        """
        self.refuse_prompt(prompt)
        queries: dict[str, tuple[list[int], int]] = {}  # query -> (its ids, the document budget)
        encoded, cut = [], 0
        for query, document in rows:
            if query not in queries:
                budget = self._document_budget(query, len(self.tokenizer.encode(query)))
                queries[query] = (self.tokenizer.encode(query, add_special_tokens=False), budget)
                if not queries[query][0]:
                    logger.warning("An empty query has no token to score: its score is 0.0 for every document.")
            query_ids, budget = queries[query]
            document_ids = self.tokenizer.encode(document, add_special_tokens=False)
            if len(document_ids) > budget:
                document, cut = str(self.tokenizer.decode(document_ids[:budget])), cut + 1
            context = self.tokenizer.encode(self.template.format(doc=document), add_special_tokens=False)
            row = context + query_ids[:-1]
            # The logit at position p predicts token p + 1: the query's tokens are read from len(context) - 1 on.
            encoded.append(Encoded(len(row), (row, len(context) - 1, query_ids)))
        report_truncated(cut)
        return encoded

    def collate(self, rows: Sequence[Encoded]) -> dict[str, Any]:
        batch, width = len(rows), max(len(row.data[0]) for row in rows)
        query_width = max(1, max(len(row.data[2]) for row in rows))
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.zeros((batch, query_width), dtype=torch.long)
        target_ids = torch.zeros((batch, query_width), dtype=torch.long)
        target_mask = torch.zeros((batch, query_width), dtype=torch.bool)
        for i, (ids, first, query_ids) in enumerate(row.data for row in rows):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
            n = len(query_ids)
            positions[i, :n] = torch.arange(first, first + n)
            target_ids[i, :n] = torch.tensor(query_ids, dtype=torch.long)
            target_mask[i, :n] = True
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "query_positions": positions,
            "query_ids": target_ids,
            "query_mask": target_mask,
        }

    @property
    def body(self) -> Any:
        """The transformer without its LM head."""
        return self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.base_model

    def score_graph(self) -> ScoreGraph:
        """The body, then the LM head's log-softmax at the query positions only: the mean log-probability per row."""
        inputs = ("input_ids", "attention_mask", "query_positions", "query_ids", "query_mask")
        axes = {name: {0: "batch", 1: "query_length" if name.startswith("query") else "length"} for name in inputs}
        return ScoreGraph(QueryLikelihoodGraph(self), inputs, "scores", {**axes, "scores": {0: "batch"}})

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.runtime is not None:
            features["scores"] = fp32_scores(self.run_exported(self.runtime, features))
            return features
        body = self.body
        input_ids, attention_mask = features["input_ids"], features["attention_mask"]
        query_mask = features["query_mask"]
        totals = torch.zeros(query_mask.shape, dtype=torch.float32, device=input_ids.device)
        # Rows of similar length together, each chunk trimmed to its longest row and capped at max_chunk_tokens.
        for rows, width in length_chunks(attention_mask, max_tokens=self.max_chunk_tokens):
            hidden = body(
                input_ids=input_ids[rows, :width], attention_mask=attention_mask[rows, :width], use_cache=False
            ).last_hidden_state  # (rows, width, hidden): no vocabulary-wide tensor anywhere
            positions = features["query_positions"][rows]
            at_query = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # (rows, q, hidden)
            totals[rows] = self.query_log_probs(at_query, features["query_ids"][rows]) * query_mask[rows]
        count = query_mask.sum(dim=1).clamp(min=1)
        features["scores"] = fp32_scores(totals.sum(dim=1) / count)
        return features

    def run_exported(self, runtime: Runtime, features: dict[str, Any]) -> torch.Tensor:
        """The exported graph over length chunks of at most ``max_chunk_tokens`` tokens and ``head_block_elements``
        logits (the graph holds each chunk's ``(rows, query positions, vocabulary)`` logits at once)."""
        query_width = features["query_ids"].shape[1]
        vocab = self.model.get_output_embeddings().weight.shape[0]
        max_rows = max(1, self.head_block_elements // (query_width * vocab))
        scores = torch.empty(features["input_ids"].shape[0], dtype=torch.float32)
        chunks = length_chunks(
            features["attention_mask"],
            max_tokens=self.max_chunk_tokens,
            max_rows=max_rows,
            overhead=runtime.chunk_overhead,
        )
        for rows, width in chunks:
            inputs = {name: features[name][rows] for name in runtime.input_names}
            inputs["input_ids"], inputs["attention_mask"] = (
                inputs["input_ids"][:, :width],
                inputs["attention_mask"][:, :width],
            )
            scores[rows] = runtime(inputs).float()
        return scores.to(features["input_ids"].device)

    def query_log_probs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``log_softmax(lm_head(hidden))[target]`` at each ``(row, query position)``, in fp32.

        When the ``(rows, q, vocab)`` logits fit in ``head_block_elements`` the LM head runs once; otherwise the
        vocabulary is taken in blocks with a running logsumexp: the same log-probabilities as one full-width
        log-softmax, in memory that grows with neither the batch nor the vocabulary (BLOOM's 250,880 rows).
        """
        head = self.model.get_output_embeddings()
        vocab = head.weight.shape[0]
        if targets.numel() * vocab <= self.head_block_elements:
            logits = head(hidden).float()
            return F.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        flat, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        weight, bias = head.weight, getattr(head, "bias", None)
        log_total = torch.full(flat_targets.shape, -torch.inf, dtype=torch.float32, device=hidden.device)
        target_logits = torch.zeros(flat_targets.shape, dtype=torch.float32, device=hidden.device)
        block = max(1, self.head_block_elements // flat.shape[0])
        for start in range(0, vocab, block):
            stop = min(start + block, vocab)
            logits = F.linear(flat, weight[start:stop], None if bias is None else bias[start:stop]).float()
            log_total = torch.logaddexp(log_total, logits.logsumexp(dim=-1))
            in_block = (flat_targets >= start) & (flat_targets < stop)
            picked = logits.gather(1, (flat_targets - start).clamp(0, stop - start - 1).unsqueeze(1)).squeeze(1)
            target_logits = torch.where(in_block, picked, target_logits)
        return (target_logits - log_total).reshape(targets.shape)


class QueryLikelihoodGraph(nn.Module):
    """The mean log-probability of each row's query tokens, as a module of the collated tensors (for export).

    The LM head runs only at the query positions, over the whole vocabulary at once (the caller bounds the rows).
    """

    def __init__(self, score: QueryLikelihoodScore) -> None:
        super().__init__()
        self.score = score

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        query_positions: torch.Tensor,
        query_ids: torch.Tensor,
        query_mask: torch.Tensor,
    ) -> torch.Tensor:
        hidden = self.score.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        at_query = hidden.gather(1, query_positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        logits = self.score.model.get_output_embeddings()(at_query).float()
        log_probs = F.log_softmax(logits, dim=-1).gather(-1, query_ids.unsqueeze(-1)).squeeze(-1)
        mask = query_mask.to(log_probs.dtype)
        return (log_probs * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


FAMILY = FamilySpec(
    "query-likelihood",
    module=QueryLikelihoodScore,
    activation="identity",  # the mean log-probability itself is the score (at most 0)
    # No recognize: a causal LM is not read as query likelihood unless asked (the RankingGPT hub ids, preset=,
    # family=); one that no family recognises is scored as sentence-transformers scores it (logit-score).
    backends=("torch", "onnx", "openvino"),
    tiny_models=(
        TinyModel(
            "query-likelihood",
            "BloomForCausalLM (RankingGPT-bloom-like)",
            "rerank_plugins.testing.builders:bloom_causal_lm",
            {"hidden_size": 32, "n_layer": 2, "n_head": 4},
            detected=False,
        ),
        TinyModel(
            "llama",
            "LlamaForCausalLM without a pad token (RankingGPT-llama2-like)",
            "rerank_plugins.testing.builders:llama_causal_lm",
            {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            },
            detected=False,
        ),
    ),
)
