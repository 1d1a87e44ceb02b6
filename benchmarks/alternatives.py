"""What a user would otherwise run, written plainly: the RankingGPT and Qwen3-Reranker cards' code, and a per-query
ListConRanker.

The other two alternatives are installed libraries used as their users do (``runners.py``): plain
``sentence_transformers.CrossEncoder`` and ``inranker.T5Ranker``. These two have no package, so they follow
``../shared/specs/seed-models.md`` line by line, with none of rerank-plugins' code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer


class RankingGPTCardLoop:
    """The RankingGPT model card's scoring: one pair at a time, full-vocabulary logits at every position.

    ``context = encode("Document: {doc} Query:")``, ``cont = encode(query)`` (no special tokens); the model reads
    ``context + cont[:-1]`` and the score is the mean of ``log_softmax(logits)[cont[i]]`` over the query tokens.
    The document is first cut as the authors' ``eval.py`` does (512 - prompt - query - 10 tokens), as ours is.
    """

    def __init__(self, path: str, device: str = "cpu", dtype: torch.dtype = torch.float32, max_length: int = 512):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.device, self.max_length = device, max_length
        self.prompt_length = len(self.tokenizer.encode("Document: {doc} Query:"))

    def cut(self, query: str, document: str) -> str:
        budget = max(self.max_length - self.prompt_length - len(self.tokenizer.encode(query)) - 10, 0)
        ids = self.tokenizer.encode(document, add_special_tokens=False)
        return document if len(ids) <= budget else self.tokenizer.decode(ids[:budget])

    @torch.no_grad()
    def score(self, query: str, document: str) -> float:
        context = self.tokenizer.encode(f"Document: {self.cut(query, document)} Query:", add_special_tokens=False)
        cont = self.tokenizer.encode(query, add_special_tokens=False)
        input_ids = torch.tensor([context + cont[:-1]], device=self.device)
        logits = self.model(input_ids).logits[0].float()  # (length, vocab)
        log_probs = torch.log_softmax(logits, dim=-1)[len(context) - 1 :]  # the positions that predict cont
        return log_probs.gather(1, torch.tensor(cont, device=self.device).unsqueeze(1)).mean().item()

    def get_scores(self, query: str, documents: list[str]) -> list[float]:
        return [self.score(query, document) for document in documents]


class _ListHead(nn.Module):
    """The authors' ListTransformer modules, named as in ``list_transformer.pt`` so that the file loads as is."""

    def __init__(self, dim: int, layers: int, heads: int, feedforward: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=feedforward, batch_first=True, activation=F.gelu)
        self.list_transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.query_embedding = nn.ModuleDict({"query_embedding": nn.Embedding(2, dim), "layerNorm": nn.LayerNorm(dim)})
        self.linear_score1 = nn.Linear(2 * dim, 1)
        self.linear_score2 = nn.Linear(2 * dim, dim)
        self.linear_score3 = nn.Linear(2 * dim, dim)


class PlainListConRanker:
    """ListConRanker per query, straight from the spec: all texts of the list in ONE BERT batch, no chunking."""

    def __init__(self, path: str, device: str = "cpu", dtype: torch.dtype = torch.float32, max_length: int = 512):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.bert = AutoModel.from_pretrained(path, dtype=dtype).to(device).eval()
        linear = torch.load(f"{path}/linear_in_embedding.pt", map_location="cpu", weights_only=True)
        state = torch.load(f"{path}/list_transformer.pt", map_location="cpu", weights_only=True)
        dim = state["query_embedding.query_embedding.weight"].shape[1]
        layers = len({key.split(".")[2] for key in state if key.startswith("list_transformer.layers.")})
        feedforward = state["list_transformer.layers.0.linear1.weight"].shape[0]
        self.linear_in = nn.Linear(linear["weight"].shape[1], dim)
        self.linear_in.load_state_dict(linear)
        self.head = _ListHead(dim, layers, self.bert.config.num_attention_heads, feedforward)
        self.head.load_state_dict({k: v for k, v in state.items() if not k.startswith("list_transformer_layer.")})
        self.linear_in.to(device, dtype).eval()
        self.head.to(device, dtype).eval()
        self.device, self.max_length = device, max_length

    @torch.no_grad()
    def get_scores(self, query: str, documents: list[str]) -> list[float]:
        encoded = self.tokenizer(
            [query, *documents], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.bert(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        features = self.linear_in((hidden * mask).sum(1) / mask.sum(1))  # mean pooling, special tokens included
        n = len(documents)
        head = self.head
        pre = torch.cat([features[:1].expand(n, -1), features[1:]], dim=1)
        tags = torch.zeros(1, n + 1, dtype=torch.long, device=self.device)
        tags[0, 0] = 1
        rows = head.query_embedding["layerNorm"](features.unsqueeze(0) + head.query_embedding["query_embedding"](tags))
        blocked = torch.zeros(n + 1, n + 1, dtype=torch.bool, device=self.device)
        blocked[0, 1:] = True  # the query row attends only to itself
        out = head.list_transformer(rows, mask=blocked)[0]
        post = torch.cat([out[:1].expand(n, -1), out[1:]], dim=1)
        logits = head.linear_score1(
            torch.cat([F.relu(head.linear_score2(pre)), F.relu(head.linear_score3(post))], dim=1)
        )
        return torch.sigmoid(logits.float()).squeeze(-1).tolist()


class Qwen3RerankerCard:
    """The Qwen3-Reranker model card's code: batches of pairs, left padding, the causal LM's full output.

    Per batch: ``format_instruction`` and ``process_inputs`` as the card (the body cut to ``max_length - prefix -
    suffix`` tokens, left padding), ``model(**inputs).logits[:, -1, :]`` (transformers computes the logits of every
    position: ``batch x length x 151,669`` for Qwen3), then ``exp(log_softmax([no, yes])[1])``.
    """

    PREFIX = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    TASK = "Given a web search query, retrieve relevant passages that answer the query"

    def __init__(self, path: str, device: str = "cpu", dtype: torch.dtype = torch.float32, max_length: int = 8192,
                 batch_size: int = 32) -> None:  # fmt: skip
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.device, self.max_length, self.batch_size = device, max_length, batch_size
        self.no_id = self.tokenizer.convert_tokens_to_ids("no")
        self.yes_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.prefix_ids = self.tokenizer.encode(self.PREFIX, add_special_tokens=False)
        self.suffix_ids = self.tokenizer.encode(self.SUFFIX, add_special_tokens=False)

    @torch.no_grad()
    def get_scores(self, query: str, documents: list[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(documents), self.batch_size):
            pairs = [f"<Instruct>: {self.TASK}\n<Query>: {query}\n<Document>: {document}"
                     for document in documents[start : start + self.batch_size]]  # fmt: skip
            inputs = self.tokenizer(
                pairs, padding=False, truncation="longest_first", return_attention_mask=False,
                max_length=self.max_length - len(self.prefix_ids) - len(self.suffix_ids),
            )  # fmt: skip
            inputs["input_ids"] = [self.prefix_ids + ids + self.suffix_ids for ids in inputs["input_ids"]]
            padded = self.tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=self.max_length)
            logits = self.model(**padded.to(self.device)).logits[:, -1, :]
            two = torch.stack([logits[:, self.no_id], logits[:, self.yes_id]], dim=1).float()
            scores += torch.log_softmax(two, dim=1)[:, 1].exp().tolist()
        return scores
