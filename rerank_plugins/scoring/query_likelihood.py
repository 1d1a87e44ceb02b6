"""Query likelihood with a causal LM (RankingGPT): the mean log-probability of the query given the document.

The RankingGPT card scores ``context = "Document: {doc} Query:"`` and ``cont = query`` (each tokenized
without special tokens), feeds ``context + cont[:-1]`` and averages ``log p(cont[i])``. The authors compute
full-vocabulary logits at every position (``batch x length x 250,880`` for BLOOM); here the LM head runs
only at the positions that predict a query token, and over the vocabulary in blocks (a running logsumexp), so no
``length x vocab`` tensor exists; the body runs in length-homogeneous chunks of at most ``max_chunk_tokens``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from torch.nn import functional as F
from transformers import AutoModelForCausalLM

from rerank_plugins.families import CheckpointInfo, FamilySpec
from rerank_plugins.scoring.base import Pair, ScoringModule, fp32_scores, single_texts
from rerank_plugins.scoring.batching import length_chunks
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

    def _cut_document(self, query: str, document: str) -> tuple[str, bool]:
        """eval.py's truncation: keep the document's first ``budget`` tokens (decoded back to text); cut or not.

        A query that leaves no room for the document is an error: the authors' budget would cut every document to
        nothing and tie all scores (and a huge query would allocate without bound).
        """
        query_length = len(self.tokenizer.encode(query))
        budget = self.max_length - self.template_length - query_length - 10
        if budget <= 0:
            raise ValueError(
                f"The query {query[:60]!r} has {query_length} tokens, which leaves no room for the document within "
                f"max_length={self.max_length} (the authors' budget: max_length - {self.template_length} template "
                "tokens - query tokens - 10). Pass a larger max_length or a shorter query."
            )
        ids = self.tokenizer.encode(document, add_special_tokens=False)
        if len(ids) <= budget:
            return document, False
        return str(self.tokenizer.decode(ids[:budget])), True

    def preprocess(self, inputs: list[Pair], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        if single_texts(inputs):  # a dataset column, for the model card's statistics
            return self.preprocess_texts(inputs)
        rows, targets, cut = [], [], 0
        for query, document in inputs:
            document, was_cut = self._cut_document(query, document)
            cut += was_cut
            context = self.tokenizer.encode(self.template.format(doc=document), add_special_tokens=False)
            query_ids = self.tokenizer.encode(query, add_special_tokens=False)
            if not query_ids:
                logger.warning("An empty query has no token to score: its score is 0.0 for every document.")
            rows.append(context + query_ids[:-1])
            targets.append((len(context) - 1, query_ids))  # the logit at position p predicts token p + 1
        report_truncated(cut)

        batch, width = len(rows), max(len(row) for row in rows)
        query_width = max(1, max(len(ids) for _, ids in targets))
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.zeros((batch, query_width), dtype=torch.long)
        target_ids = torch.zeros((batch, query_width), dtype=torch.long)
        target_mask = torch.zeros((batch, query_width), dtype=torch.bool)
        for i, (row, (first, query_ids)) in enumerate(zip(rows, targets, strict=True)):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
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

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        body = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.base_model
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


CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def is_causal_lm_checkpoint(info: CheckpointInfo) -> bool:
    """A causal LM (its config's architectures, e.g. ``BloomForCausalLM``) is read as query likelihood."""
    return any(name.endswith(CAUSAL_LM_SUFFIXES) for name in info.architectures)


FAMILY = FamilySpec(
    "query-likelihood",
    module=QueryLikelihoodScore,
    activation="identity",  # the mean log-probability itself is the score (at most 0)
    recognize=is_causal_lm_checkpoint,
)
