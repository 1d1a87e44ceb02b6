"""Model FLOPs of a workload, counted analytically: the work the scoring formula needs, not what a side spends.

Counting rules (a multiply-add is 2 FLOPs; ``n`` = a text's real token count, pads never count):

- a Linear layer of ``p`` weights applied to ``t`` tokens: ``2 p t``;
- attention of ``n`` queries over ``m`` keys with ``h`` hidden units: ``4 n m h`` (``Q K^T`` and ``A V``),
  causal attention counted over the full square like bidirectional attention;
- embeddings, norms, activations and softmax are not counted (they are not matmuls).

Per family, for one (query, passage) pair:

- sequence classification (BERT): ``L (2 P n + 4 n^2 H) + 2 (H^2 + H)`` with ``P = 4 H^2 + 2 H F`` per layer
  (pooler and one-logit head last).
- monoT5 (T5): encoder ``L_e (2 P_e n + 4 n^2 I)`` with ``P_e = 4 D I + 2 D F``; ONE decoder step per layer
  ``2 (4 D I + 2 D I + 2 D F) + 2 (2 D I) n + 4 n I`` (self-attention and feed-forward on one token; cross
  keys/values over the ``n`` encoder states); LM head: 2 rows, ``4 D``.
- query likelihood (BLOOM): ``T = len(context) + len(query) - 1`` tokens through ``L (2 (12 H^2) T + 4 T^2 H)``,
  plus the LM head at the ``q`` query positions only: ``2 H V q`` (the full vocabulary, needed by the softmax).
- Qwen3-Reranker (Qwen3): the prompt's ``t`` tokens through ``L (2 P t + 4 t^2 I)`` with ``P = 2 H I + 2 H K + 3 H F``
  (query and output projections over ``I`` = heads x head_dim, keys and values over ``K`` = key-value heads x
  head_dim, the gated MLP), plus the LM head's two answer rows at the last token: ``4 H``.
- ListConRanker: BERT (as above, no pooler) over the query once per list and every passage alone,
  ``linear_in`` ``2 H D`` per text, the ListTransformer over the ``N = 1 + passages`` rows
  ``L_t (2 (4 D^2 + 2 D F) N + 4 N^2 D)`` and the scoring head ``2 (2 (2 D D) + 2 D)`` per passage.

The same count is the numerator of both sides' "model FLOP/s", so wasted work (pads, full-vocabulary logits at
every position, a 32k-wide LM head) lowers a side's fraction of the machine's matmul throughput.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoTokenizer

from benchmarks.data import Group
from rerank_plugins.scoring.monot5 import MONOT5_TEMPLATE


def _bert_text(n: int, hidden: int, layers: int, intermediate: int) -> float:
    per_layer = 4 * hidden**2 + 2 * hidden * intermediate
    return layers * (2 * per_layer * n + 4 * n * n * hidden)


def sequence_classification(path: str, groups: list[Group], max_length: int = 512) -> float:
    config, tokenizer = AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    h, layers, f = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    total = 0.0
    for query, documents in groups:
        lengths = [len(ids) for ids in tokenizer([query] * len(documents), documents, truncation=True,
                                                 max_length=max_length)["input_ids"]]  # fmt: skip
        total += sum(_bert_text(n, h, layers, f) + 2 * (h * h + h) for n in lengths)
    return total


def monot5(path: str, groups: list[Group], max_length: int = 512) -> float:
    config, tokenizer = AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    d, inner, f = config.d_model, config.num_heads * config.d_kv, config.d_ff
    gated = 3 if config.is_gated_act else 2
    encoder_layer = 4 * d * inner + gated * d * f
    total = 0.0
    for query, documents in groups:
        texts = [MONOT5_TEMPLATE.format(query=query, document=doc) for doc in documents]
        for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]:
            n = len(ids)
            encoder = config.num_layers * (2 * encoder_layer * n + 4 * n * n * inner)
            step = 2 * (4 * d * inner + 2 * d * inner + gated * d * f) + 2 * (2 * d * inner) * n + 4 * n * inner
            total += encoder + config.num_decoder_layers * step + 4 * d
    return total


def query_likelihood(path: str, groups: list[Group], max_length: int = 512) -> float:
    from rerank_plugins.scoring.query_likelihood import RANKING_GPT_TEMPLATE

    config, tokenizer = AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    h, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    prompt = len(tokenizer.encode(RANKING_GPT_TEMPLATE))
    total = 0.0
    for query, documents in groups:
        q = len(tokenizer.encode(query, add_special_tokens=False))
        budget = max(max_length - prompt - len(tokenizer.encode(query)) - 10, 0)
        for document in documents:
            ids = tokenizer.encode(document, add_special_tokens=False)
            if len(ids) > budget:
                document = tokenizer.decode(ids[:budget])
            context = len(tokenizer.encode(RANKING_GPT_TEMPLATE.format(doc=document), add_special_tokens=False))
            t = context + q - 1
            total += layers * (2 * 12 * h * h * t + 4 * t * t * h) + 2 * h * vocab * q
    return total


def listconranker(path: str, groups: list[Group], max_length: int = 512) -> float:
    config, tokenizer = AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    h, layers, f = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    state = torch.load(f"{path}/list_transformer.pt", map_location="cpu", weights_only=True)
    dim = state["query_embedding.query_embedding.weight"].shape[1]
    list_layers = len({key.split(".")[2] for key in state if key.startswith("list_transformer.layers.")})
    list_ff = state["list_transformer.layers.0.linear1.weight"].shape[0]
    total = 0.0
    for query, documents in groups:
        encoded = tokenizer([query, *documents], truncation=True, max_length=max_length)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        total += sum(_bert_text(n, h, layers, f) + 2 * h * dim for n in lengths)
        rows = len(lengths)
        total += list_layers * (2 * (4 * dim * dim + 2 * dim * list_ff) * rows + 4 * rows * rows * dim)
        total += len(documents) * 2 * (2 * (2 * dim * dim) + 2 * dim)
    return total


def qwen3_reranker(path: str, groups: list[Group], max_length: int = 512) -> float:
    from rerank_plugins.scoring.qwen3_reranker import QWEN3_BODY, QWEN3_INSTRUCTION, QWEN3_PREFIX, QWEN3_SUFFIX

    config, tokenizer = AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    h, layers, f = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    inner = config.num_attention_heads * config.head_dim
    linear = 2 * h * inner + 2 * h * config.num_key_value_heads * config.head_dim + 3 * h * f  # q, o; k, v; MLP
    template = len(tokenizer.encode(QWEN3_PREFIX + QWEN3_SUFFIX, add_special_tokens=False))
    total = 0.0
    for query, documents in groups:
        texts = [QWEN3_BODY.format(instruction=QWEN3_INSTRUCTION, query=query, document=d) for d in documents]
        for ids in tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length - template)[
            "input_ids"
        ]:
            t = len(ids) + template
            total += layers * (2 * linear * t + 4 * t * t * inner) + 2 * 2 * h  # the LM head: the two answer rows
    return total


COUNTERS = {
    "sequence-classification": sequence_classification,
    "monot5": monot5,
    "query-likelihood": query_likelihood,
    "listconranker": listconranker,
    "qwen3-reranker": qwen3_reranker,
}


def model_flops(family: str, path: str, groups: list[Group]) -> float:
    """Model FLOPs of scoring every pair of ``groups`` with the ``family`` model at ``path``."""
    return COUNTERS[family](path, groups)
