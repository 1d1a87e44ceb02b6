"""ByteDance/ListConRanker, natively: BERT features of each text alone, then a ListTransformer over the list.

Per query list ``[q, p1..pn]``: every text is encoded ALONE by BERT, mean-pooled (special tokens included)
and projected by ``linear_in_embedding``. The ListTransformer sees the rows ``[q, p1..pn]`` tagged query /
passage; the query row attends only to itself, passages attend to everything. Each passage's logit reads its
``[q; p]`` features before the ListTransformer and after it. A passage's score depends on the rest of its
list by design, so a list must always be scored whole (``CrossEncoder.predict`` groups pairs by query).

Checkpoint layout (the authors'): ``config.json`` + ``model.safetensors`` (BertModel), ``linear_in_embedding.pt``
and ``list_transformer.pt`` (loaded with ``weights_only=True``; ``.safetensors`` twins are preferred if present).
Sizes are read from the weight shapes, so smaller checkpoints of the same layout load too.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sentence_transformers.util import load_file_path
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel

from rerank_plugins.backends.graph import EXAMPLE_PAIRS, ScoreGraph
from rerank_plugins.core.requests import ListRow
from rerank_plugins.families import CheckpointInfo, FamilySpec, TinyModel
from rerank_plugins.hub import HubOptions
from rerank_plugins.resolution import FamilyMismatchError
from rerank_plugins.scoring.base import (
    Encoded,
    ScoringModule,
    checkpoint_architecture,
    fp32_scores,
    single_texts,
)
from rerank_plugins.scoring.padding import length_chunks, run_chunks

LINEAR_IN_FILE = "linear_in_embedding"
LIST_TRANSFORMER_FILE = "list_transformer"
TOKENIZE_SLICE = 128  # texts tokenized at once: bounds the tokenizer's memory on long lists
WEIGHT_ENDS = ("safetensors", "pt")  # the head's weight files: ours, and the authors' torch.save files
ITERATIVE_KEEP = 20  # the authors' iterative inference stops filtering at 20 passages


class QueryEmbedding(nn.Module):
    """Adds a learned type tag (1 = the query row, 0 = a passage row), then LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query_embedding = nn.Embedding(2, dim)
        self.layerNorm = nn.LayerNorm(dim)  # the authors' attribute name, kept so their weights load

    def forward(self, rows: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        return self.layerNorm(rows + self.query_embedding(tags))


class ListTransformer(nn.Module):
    """The listwise head of ListConRanker over one list's features ``(1 + n, dim)`` -> ``n`` logits."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, feedforward: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, dim_feedforward=feedforward, batch_first=True, activation=F.gelu
        )
        self.list_transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.query_embedding = QueryEmbedding(dim)
        self.linear_score3 = nn.Linear(2 * dim, dim)  # on [q; p] after the ListTransformer
        self.linear_score2 = nn.Linear(2 * dim, dim)  # on [q; p] straight from linear_in_embedding
        self.linear_score1 = nn.Linear(2 * dim, 1)  # the final head

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], num_heads: int) -> ListTransformer:
        """Build with the sizes that the weights have; the authors' unused template layer is dropped."""
        dim = state["query_embedding.query_embedding.weight"].shape[1]
        layers = {key.split(".")[2] for key in state if key.startswith("list_transformer.layers.")}
        feedforward = state["list_transformer.layers.0.linear1.weight"].shape[0]
        head = cls(dim, len(layers), num_heads, feedforward)
        head.load_state_dict({k: v for k, v in state.items() if not k.startswith("list_transformer_layer.")})
        return head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        query, passages = features[:1], features[1:]
        n = passages.shape[0]
        before = torch.cat([query.expand(n, -1), passages], dim=1)  # (n, 2*dim)
        tags = torch.zeros(1, n + 1, dtype=torch.long, device=features.device)
        tags[0, 0] = 1
        rows = self.query_embedding(features.unsqueeze(0), tags)
        if self.training:  # PyTorch's own layers (dropout included), with ListAttention as a mask
            # True = may NOT attend. The query row sees only itself; passages see every row.
            blocked = torch.zeros(n + 1, n + 1, dtype=torch.bool, device=features.device)
            blocked[0, 1:] = True
            out = self.list_transformer(rows, mask=blocked)[0]  # (1 + n, dim)
        else:
            out = rows[0]
            for layer in self.list_transformer.layers:
                out = list_attention_layer(layer, out)
        after = torch.cat([out[:1].expand(n, -1), out[1:]], dim=1)
        joined = torch.cat([F.relu(self.linear_score2(before)), F.relu(self.linear_score3(after))], dim=1)
        return self.linear_score1(joined).squeeze(-1)  # (n,) logits; sigmoid gives the authors' score


def list_attention_layer(layer: nn.TransformerEncoderLayer, rows: torch.Tensor) -> torch.Tensor:
    """One post-norm ``TransformerEncoderLayer`` (eval mode) over one list's rows ``(1 + n, dim)``, ListAttention.

    The query row attends only to itself, so its attention output is exactly its own value vector; the passages
    attend to every row, which needs no mask. Written this way, attention runs through
    ``scaled_dot_product_attention`` (a flash kernel on CPU) and never holds the ``heads x (1 + n)^2`` weights
    that a masked ``nn.MultiheadAttention`` does: memory grows linearly with the list (1,000 passages included).
    """
    attention = layer.self_attn
    width, dim = rows.shape
    heads = attention.num_heads
    query, key, value = F.linear(rows, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)

    def split(tensor: torch.Tensor) -> torch.Tensor:  # (rows, dim) -> (1, heads, rows, dim / heads)
        return tensor.reshape(1, tensor.shape[0], heads, dim // heads).transpose(1, 2)  # 4-D: the flash kernel

    passages = F.scaled_dot_product_attention(split(query[1:]), split(key), split(value))[0]
    mixed = torch.cat([value[:1], passages.transpose(0, 1).reshape(width - 1, dim)])
    hidden = layer.norm1(rows + attention.out_proj(mixed))
    return layer.norm2(hidden + layer.linear2(layer.activation(layer.linear1(hidden))))


class ListConRankerScore(ScoringModule):
    """Raw score = the ListTransformer's logit per passage; the activation (sigmoid) gives the authors' score.

    Args:
        model_name_or_path: a directory or hub id in the ListConRanker layout.
        max_length: tokens kept per text (each text is tokenized alone, as the authors do).
        encode_batch_size: texts per BERT forward when ``forward`` is not given ``chunk_rows`` (the request core
            passes its own); memory is bounded by this, not by the list length.
    """

    family: ClassVar[str] = "listconranker"
    auto_class: ClassVar[Any] = AutoModel
    config_keys: list[str] = ["encode_batch_size"]
    forward_kwargs: set[str] = {"chunk_rows", "chunk_tokens"}  # how the request core bounds one encoder forward

    def __init__(self, model_name_or_path: str, *, encode_batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(model_name_or_path, **kwargs)
        self.encode_batch_size = encode_batch_size
        hub = (kwargs.get("hub") or HubOptions.from_kwargs(kwargs)).file_kwargs()
        linear = _load_weights(model_name_or_path, LINEAR_IN_FILE, hub)
        self.linear_in_embedding = nn.Linear(linear["weight"].shape[1], linear["weight"].shape[0])
        self.linear_in_embedding.load_state_dict(linear)
        self.list_transformer = ListTransformer.from_state_dict(
            _load_weights(model_name_or_path, LIST_TRANSFORMER_FILE, hub),
            self.model.config.num_attention_heads,
        )
        dtype = next(self.model.parameters()).dtype
        self.linear_in_embedding.to(dtype)
        self.list_transformer.to(dtype)

    def load_backbone(self, model_name_or_path: str, kwargs: dict[str, Any]) -> Any:
        # Scores read mean-pooled token states, never BERT's pooler. It is built when the checkpoint has its weights
        # (the authors' does): they then load where they belong, with no "UNEXPECTED" load report, and a saved copy
        # keeps the authors' layout. A checkpoint without them (saved by an earlier version) loads without it.
        files = file_options(kwargs)
        if not any(
            load_file_path(model_name_or_path, f"{LIST_TRANSFORMER_FILE}.{end}", **files) for end in WEIGHT_ENDS
        ):
            raise FamilyMismatchError(
                self.family, model_name_or_path, checkpoint_architecture(model_name_or_path, kwargs),
                f": it has no ListTransformer weights ({LIST_TRANSFORMER_FILE}.safetensors or .pt)",
            )  # fmt: skip
        pooler = has_pooler_weights(model_name_or_path, files)
        return super().load_backbone(model_name_or_path, {**kwargs, "add_pooling_layer": pooler})

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        super().save(output_path, safe_serialization=safe_serialization)
        for name, module in (
            (LINEAR_IN_FILE, self.linear_in_embedding),
            (LIST_TRANSFORMER_FILE, self.list_transformer),
        ):
            state = {k: v.contiguous() for k, v in module.state_dict().items()}
            if safe_serialization:
                save_file(state, os.path.join(output_path, f"{name}.safetensors"))
            else:
                torch.save(state, os.path.join(output_path, f"{name}.pt"))

    def encode(self, rows: Sequence[ListRow], prompt: str | None = None) -> list[Encoded]:  # type: ignore[override]
        """Each list's texts (its query, then its documents), each tokenized alone as the authors do."""
        self.refuse_prompt(prompt)
        texts = [text for row in rows for text in (row.query, *row.documents)]
        # In slices: the tokenizer's per-text state (tokens, offsets, overflow) for a 1,000-passage list would
        # otherwise be alive all at once; only the ids are kept.
        ids = [
            row
            for i in range(0, len(texts), TOKENIZE_SLICE)
            for row in self.tokenize_texts(texts[i : i + TOKENIZE_SLICE])
        ]
        encoded, start = [], 0
        for row in rows:
            texts_ids = ids[start : start + 1 + len(row.documents)]
            start += len(texts_ids)
            encoded.append(Encoded(sum(len(text) for text in texts_ids), texts_ids))
        return encoded

    def collate(self, rows: Sequence[Encoded]) -> dict[str, Any]:
        """Every text of the lists padded together: the lists' queries first, then their documents, with
        ``list_ids`` naming each document's list."""
        queries = [row.data[0] for row in rows]
        documents = [text for row in rows for text in row.data[1:]]
        input_ids, attention_mask = self.pad(queries + documents)
        list_ids = [index for index, row in enumerate(rows) for _ in row.data[1:]]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "list_ids": torch.tensor(list_ids, dtype=torch.long),
            "num_queries": len(rows),
        }

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """sentence-transformers' entry, which knows only pairs: the pairs that share a query are one list.

        The request core never comes here: it scores :class:`ListRow` s, one per request, through ``encode``.
        """
        if single_texts(inputs):
            return self.preprocess_texts(inputs)
        lists: dict[str, list[str]] = {}
        places = []  # each pair's position among the collated documents, which come list by list
        for query, document in inputs:
            members = lists.setdefault(query, [])
            places.append((query, len(members)))
            members.append(document)
        starts, start = {}, 0
        for query, members in lists.items():
            starts[query], start = start, start + len(members)
        features = self.collate(self.encode([ListRow(query, documents) for query, documents in lists.items()], prompt))
        features["pair_order"] = torch.tensor([starts[query] + slot for query, slot in places], dtype=torch.long)
        return features

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``linear_in_embedding(mean_pool(BERT(text)))`` of padded texts ``(rows, length)`` -> ``(rows, dim)``."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # mean over real tokens, [CLS]/[SEP] too
        return self.linear_in_embedding(pooled)

    def score_graph(self) -> ScoreGraph:
        """BERT, mean pooling and ``linear_in_embedding`` per text; the ListTransformer over a list's few rows stays
        in PyTorch (it is a small share of the work)."""
        axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
        inputs = ("input_ids", "attention_mask")
        return ScoreGraph(TextFeatures(self), inputs, "features", {**axes, "features": {0: "batch"}})

    def example_rows(self) -> Sequence[Any]:
        return [
            ListRow(query, (document, "a second, longer passage of the same list"))
            for query, document in EXAMPLE_PAIRS[:1]
        ]

    def encode_texts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk_size: int, chunk_tokens: int | None = None
    ) -> torch.Tensor:
        """``linear_in_embedding(mean_pool(BERT(text)))`` per row, in length-sorted chunks of at most ``chunk_size``
        rows, each trimmed to its longest row (``padding.length_chunks``: fewer pad tokens than fixed chunks)."""
        runtime = self.runtime
        overhead = runtime.chunk_overhead if runtime is not None else None
        chunks = length_chunks(attention_mask, max_rows=chunk_size, max_tokens=chunk_tokens, overhead=overhead)

        def chunk_features(rows: torch.Tensor, width: int) -> torch.Tensor:
            ids, mask = input_ids[rows, :width], attention_mask[rows, :width]
            if runtime is not None:  # the exported encoder + pooling + linear_in
                return runtime({"input_ids": ids, "attention_mask": mask}).to(ids.device)
            return self.text_features(ids, mask)

        return run_chunks(chunks, chunk_features)

    def forward(
        self, features: dict[str, Any], chunk_rows: int | None = None, chunk_tokens: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Scores of whole lists; ``chunk_rows`` texts (or ``chunk_tokens`` padded tokens) per encoder forward."""
        encoded = self.encode_texts(
            features["input_ids"], features["attention_mask"], chunk_rows or self.encode_batch_size, chunk_tokens
        )
        num_queries, list_ids = features["num_queries"], features["list_ids"]
        query_rows, document_rows = encoded[:num_queries], encoded[num_queries:]
        scores = torch.empty(len(list_ids), dtype=torch.float32, device=encoded.device)
        for slot in range(num_queries):
            members = (list_ids == slot).nonzero().flatten()
            rows = torch.cat([query_rows[slot : slot + 1], document_rows[members]])
            scores[members] = self.list_transformer(rows).float()
        if "pair_order" in features:  # preprocess's pairs, back in the order they were given
            scores = scores[features["pair_order"].to(scores.device)]
        features["scores"] = fp32_scores(scores)
        return features


def file_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``load_file_path``'s hub options from ``from_pretrained``'s (``cache_dir`` -> ``cache_folder``)."""
    return {
        "token": kwargs.get("token"),
        "revision": kwargs.get("revision"),
        "cache_folder": kwargs.get("cache_dir"),
        "local_files_only": bool(kwargs.get("local_files_only", False)),
    }


def has_pooler_weights(model_name_or_path: str, hub: dict[str, Any]) -> bool:
    """True when the checkpoint's BERT weights include the pooler's (read from the safetensors header or index)."""
    index = load_file_path(model_name_or_path, "model.safetensors.index.json", **hub)
    if index is not None:
        with open(index, encoding="utf-8") as handle:
            keys: Any = json.load(handle)["weight_map"]
    else:
        weights = load_file_path(model_name_or_path, "model.safetensors", **hub)
        if weights is None:
            return True  # a pytorch_model.bin: BertModel's own layout, pooler included
        with safe_open(weights, framework="pt") as handle:
            keys = list(handle.keys())
    return any(key.startswith("pooler.") or ".pooler." in key for key in keys)


class TextFeatures(nn.Module):
    """:meth:`ListConRankerScore.text_features` as a module, for export."""

    def __init__(self, score: ListConRankerScore) -> None:
        super().__init__()
        self.score = score

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.score.text_features(input_ids, attention_mask)


def _load_weights(model_name_or_path: str, name: str, hub: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``name.safetensors`` if the checkpoint has it, else the authors' ``name.pt`` with ``weights_only=True``."""
    path = load_file_path(model_name_or_path, f"{name}.safetensors", **hub)
    if path is not None:
        return load_file(path)
    path = load_file_path(model_name_or_path, f"{name}.pt", **hub)
    if path is None:
        raise FileNotFoundError(f"{model_name_or_path!r} has neither {name}.safetensors nor {name}.pt.")
    return torch.load(path, map_location="cpu", weights_only=True)


def iterative_scores(score_list: Callable[[list[int]], Sequence[float]], count: int) -> list[float]:
    """The authors' iterative inference over ``count`` passages: one final score per passage, by index.

    ``score_list(indices)`` scores the passages ``indices`` as one list. While more than 20 remain, the lowest
    ``max(ceil(0.2 n), 10)`` (and exact ties of the last of them) are dropped with ``score + round``, and the rest
    are scored again as a new list, in ascending score order as the authors keep them; the last 20 or fewer get
    ``score + final round``. Scores of later rounds are therefore above earlier ones, and can exceed 1.
    """
    remaining = list(range(count))
    final = [0.0] * count
    round_ = 0
    while len(remaining) > ITERATIVE_KEEP:
        scores = np.asarray(score_list(remaining), dtype=np.float64)
        order = np.argsort(scores, kind="stable")  # ascending: the lowest are dropped first
        cut = max(math.ceil(0.2 * len(remaining)), 10)
        while cut < len(order) and scores[order[cut - 1]] == scores[order[cut]]:
            cut += 1  # exact ties of the last dropped passage go with it
        for j in order[:cut]:
            final[remaining[j]] = float(scores[j]) + round_
        remaining = [remaining[j] for j in order[cut:]]
        round_ += 1
    if remaining:
        for index, score in zip(remaining, score_list(remaining), strict=True):
            final[index] = float(score) + round_
    return final


def is_listconranker_checkpoint(info: CheckpointInfo) -> bool:
    """ListConRanker's layout: a BERT checkpoint plus the ListTransformer's weight file."""
    return any(info.has_file(f"{LIST_TRANSFORMER_FILE}.{end}") for end in WEIGHT_ENDS)


FAMILY = FamilySpec(
    "listconranker",
    module=ListConRankerScore,
    activation="sigmoid",  # the authors' score is sigmoid of the ListTransformer's logit
    listwise=True,
    recognize=is_listconranker_checkpoint,
    modes={"iterative": iterative_scores},  # rank(..., iterative=True): the authors' iterative inference
    backends=("torch", "onnx", "openvino"),
    tiny_models=(
        TinyModel(
            "listconranker",
            "BertModel + linear_in_embedding.pt + list_transformer.pt (ListConRanker layout)",
            "rerank_plugins.testing.builders:bert_listconranker",
            {
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 64,
                "list_dim": 48,
                "list_layers": 2,
                "list_heads": 4,
                "list_feedforward": 64,
            },
        ),
    ),
)
