"""Independent reference scorers, written from ../shared/specs/seed-models.md with plain transformers calls.

Each scores ONE pair (or one list) at a time with the full Hugging Face model, the way the authors' code
does: full-vocabulary logits, no shortcuts. The package must match these to 1e-5.
"""

from __future__ import annotations

import math

import torch
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)


@torch.no_grad()
def monot5_first_step(path: str, pairs: list[tuple[str, str]], max_length: int = 512) -> list[tuple[float, float]]:
    """castorini's monoT5 input, one pair at a time: (logit of ``▁false``, logit of ``▁true``) at the first decoder
    step, read from the full vocabulary's logits as the authors' code does."""
    model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab = tokenizer.get_vocab()
    false_id, true_id = vocab["▁false"], vocab["▁true"]
    logits_of_pairs = []
    for query, document in pairs:
        enc = tokenizer(
            [f"Query: {query} Document: {document} Relevant:"],
            truncation="longest_first",
            max_length=max_length,
            return_tensors="pt",
        )
        start = torch.full((1, 1), model.config.decoder_start_token_id, dtype=torch.long)
        logits = model(**enc, decoder_input_ids=start).logits[0, 0]  # all 32k (here: tiny) columns
        logits_of_pairs.append((float(logits[false_id]), float(logits[true_id])))
    return logits_of_pairs


def monot5_scores(path: str, pairs: list[tuple[str, str]], max_length: int = 512) -> list[float]:
    """InRanker: exp(log_softmax(logits[false, true])[1]) at the first decoder step."""
    scores = []
    for false, true in monot5_first_step(path, pairs, max_length):
        two = torch.log_softmax(torch.tensor([false, true]), dim=-1)
        scores.append(float(torch.exp(two[1])))
    return scores


def monot5_logits(path: str, pairs: list[tuple[str, str]], max_length: int = 512) -> list[float]:
    """monoT5's raw score: logit(true) - logit(false) at the first decoder step (its sigmoid is P(true))."""
    return [true - false for false, true in monot5_first_step(path, pairs, max_length)]


@torch.no_grad()
def sequence_classification_scores(
    path: str, pairs: list[tuple[str, str]], activation: str, max_length: int = 512
) -> list[float]:
    """``[CLS] q [SEP] d [SEP]`` -> logits; raw, sigmoid (1 label) or softmax[:, 1] (2 labels)."""
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    scores = []
    for query, document in pairs:
        # A batch of one pair: a bare tokenizer(q, "") would drop an empty document and its [SEP].
        enc = tokenizer([query], [document], truncation=True, max_length=max_length, return_tensors="pt")
        logits = model(**enc).logits[0]
        if activation == "identity":
            scores.append(float(logits[0]))
        elif activation == "sigmoid":
            scores.append(float(torch.sigmoid(logits[0])))
        else:  # "softmax1"
            scores.append(float(torch.softmax(logits, dim=-1)[1]))
    return scores


@torch.no_grad()
def query_likelihood_scores(path: str, pairs: list[tuple[str, str]], max_length: int = 512) -> list[float]:
    """RankingGPT card: mean log p(query token) given "Document: {doc} Query:", eval.py's document budget."""
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = "Document: {doc} Query:"
    prompt_len = len(tokenizer.encode(prompt))
    scores = []
    for query, document in pairs:
        budget = max_length - prompt_len - len(tokenizer.encode(query)) - 10
        doc_ids = tokenizer.encode(document, add_special_tokens=False)
        if len(doc_ids) > budget:
            document = tokenizer.decode(doc_ids[:budget])
        context = tokenizer.encode(prompt.format(doc=document), add_special_tokens=False)
        cont = tokenizer.encode(query, add_special_tokens=False)
        logits = model(torch.tensor([context + cont[:-1]])).logits[0]  # full vocabulary at every position
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        picked = [log_probs[len(context) - 1 + i, token] for i, token in enumerate(cont)]
        scores.append(float(torch.stack(picked).mean()))
    return scores


def _state(path: str, name: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(f"{path}/{name}.safetensors")
    except FileNotFoundError:
        return torch.load(f"{path}/{name}.pt", map_location="cpu", weights_only=True)


@torch.no_grad()
def listconranker_scores(path: str, query: str, passages: list[str], max_length: int = 512) -> list[float]:
    """ListConRanker from the spec, with hand-written attention (no nn.TransformerEncoder)."""
    bert = AutoModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    linear = _state(path, "linear_in_embedding")
    head = _state(path, "list_transformer")
    heads = bert.config.num_attention_heads

    feats = []
    for text in [query, *passages]:  # each text ALONE, no padding: mean over its tokens, specials included
        enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        pooled = bert(**enc).last_hidden_state[0].mean(dim=0)
        feats.append(pooled @ linear["weight"].T + linear["bias"])
    x = torch.stack(feats)  # (1 + n, dim)
    n, dim = len(passages), x.shape[1]
    pre = torch.cat([x[0].expand(n, dim), x[1:]], dim=1)

    tags = torch.zeros(n + 1, dtype=torch.long)
    tags[0] = 1
    h = x + head["query_embedding.query_embedding.weight"][tags]
    h = F.layer_norm(h, (dim,), head["query_embedding.layerNorm.weight"], head["query_embedding.layerNorm.bias"])
    allowed = torch.ones(n + 1, n + 1, dtype=torch.bool)
    allowed[0, 1:] = False  # the query row attends only to itself
    layers = sorted({int(k.split(".")[2]) for k in head if k.startswith("list_transformer.layers.")})
    for i in layers:
        p = {
            k.split(f"list_transformer.layers.{i}.")[1]: v
            for k, v in head.items()
            if k.startswith(f"list_transformer.layers.{i}.")
        }
        qkv = h @ p["self_attn.in_proj_weight"].T + p["self_attn.in_proj_bias"]
        q, k, v = (t.reshape(n + 1, heads, dim // heads).transpose(0, 1) for t in qkv.split(dim, dim=1))
        att = (q @ k.transpose(1, 2)) / math.sqrt(dim // heads)
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        ctx = (att @ v).transpose(0, 1).reshape(n + 1, dim)
        ctx = ctx @ p["self_attn.out_proj.weight"].T + p["self_attn.out_proj.bias"]
        h = F.layer_norm(h + ctx, (dim,), p["norm1.weight"], p["norm1.bias"], eps=1e-5)  # post-norm
        ff = F.gelu(h @ p["linear1.weight"].T + p["linear1.bias"]) @ p["linear2.weight"].T + p["linear2.bias"]
        h = F.layer_norm(h + ff, (dim,), p["norm2.weight"], p["norm2.bias"], eps=1e-5)
    post = torch.cat([h[0].expand(n, dim), h[1:]], dim=1)
    a = F.relu(pre @ head["linear_score2.weight"].T + head["linear_score2.bias"])
    b = F.relu(post @ head["linear_score3.weight"].T + head["linear_score3.bias"])
    logit = torch.cat([a, b], dim=1) @ head["linear_score1.weight"].T + head["linear_score1.bias"]
    return torch.sigmoid(logit[:, 0]).tolist()


def iterative_reference(
    path: str, query: str, passages: list[str], max_length: int = 512
) -> tuple[list[float], list[int]]:
    """ListConRanker's iterative inference as its authors run it (seed-models.md), every round's list scored by
    :func:`listconranker_scores`; the final score of each passage (by index) and the count removed per round.

    While more than 20 passages remain: score them all as one list; remove every passage scoring at or below the
    k-th lowest score, k = max(ceil(0.2 n), 10) (the k lowest plus exact ties of the k-th); a removed passage gets
    its score + the round number. The last 20 or fewer are scored once more and get score + the last round.
    The authors key their results by passage text; these are kept by index, as the spec says.
    """
    final: dict[int, float] = {}
    remaining = list(range(len(passages)))
    removed_per_round: list[int] = []
    round_number = 0
    while len(remaining) > 20:
        scores = listconranker_scores(path, query, [passages[i] for i in remaining], max_length)
        k = max(math.ceil(0.2 * len(remaining)), 10)
        threshold = sorted(scores)[k - 1]
        removed = [(i, score) for i, score in zip(remaining, scores, strict=True) if score <= threshold]
        final.update({i: score + round_number for i, score in removed})
        removed_per_round.append(len(removed))
        remaining = [i for i, score in zip(remaining, scores, strict=True) if score > threshold]
        round_number += 1
    last = listconranker_scores(path, query, [passages[i] for i in remaining], max_length)
    final.update({i: score + round_number for i, score in zip(remaining, last, strict=True)})
    return [final[i] for i in range(len(passages))], removed_per_round


@torch.no_grad()
def xpmir_cross_encoder_scores(path: str, pairs: list[tuple[str, str]], max_length: int = 512) -> list[float]:
    """xpmir's HFQueryDocTokenizer: ``[CLS] q [SEP] d [SEP]``, query capped at max_length // 2, document cut first."""
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    scores = []
    for query, document in pairs:
        q_ids = tokenizer(query, add_special_tokens=False)["input_ids"][: max_length // 2]
        d_ids = tokenizer(document, add_special_tokens=False)["input_ids"]
        overflow = len(q_ids) + len(d_ids) - (max_length - 3)
        if overflow > 0:
            d_ids = d_ids[: max(0, len(d_ids) - overflow)]
        ids = [tokenizer.cls_token_id, *q_ids, tokenizer.sep_token_id, *d_ids, tokenizer.sep_token_id]
        types = [0] * (len(q_ids) + 2) + [1] * (len(d_ids) + 1)
        logits = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits
        scores.append(float(logits[0, 0]))  # the raw logit
    return scores


# -- the causal-LM rerankers: the authors' code, one pair at a time, full-vocabulary logits ----------------------
def _only_second(first: list[int], second: list[int], max_length: int) -> list[int]:
    """``tokenizer.prepare_for_model(first, second, truncation="only_second", max_length=...)``'s second sequence:
    the end of ``second`` goes when the pair is too long (left as is when it cannot absorb the whole excess)."""
    excess = len(first) + len(second) - max_length
    if excess <= 0 or len(second) <= excess:
        return second
    return second[:-excess]


def _last_logits(model, ids: list[int]) -> torch.Tensor:
    """The model's full-vocabulary logits at the last position of one unpadded input."""
    return model(torch.tensor([ids])).logits[0, -1].float()


def qwen3_reranker_inputs(
    tokenizer, pairs: list[tuple[str, str]], instruction: str | None = None, max_length: int = 8192
) -> list[list[int]]:
    """The Qwen3-Reranker card's ``process_inputs``, one pair at a time: prefix + the cut body + suffix."""
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_ids = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_ids = tokenizer.encode(suffix, add_special_tokens=False)
    if instruction is None:
        instruction = "Given a web search query, retrieve relevant passages that answer the query"
    inputs = []
    for query, document in pairs:
        text = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
        body = tokenizer(
            [text], padding=False, truncation="longest_first", return_attention_mask=False,
            max_length=max_length - len(prefix_ids) - len(suffix_ids),
        )["input_ids"][0]  # fmt: skip
        inputs.append(prefix_ids + body + suffix_ids)
    return inputs


@torch.no_grad()
def qwen3_reranker_scores(
    path: str, pairs: list[tuple[str, str]], instruction: str | None = None, max_length: int = 8192, raw: bool = False
) -> list[float]:
    """The Qwen3-Reranker card: P(yes) = exp(log_softmax([no, yes])[1]) at the last token (``raw``: the margin)."""
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    no_id, yes_id = tokenizer.convert_tokens_to_ids("no"), tokenizer.convert_tokens_to_ids("yes")
    scores = []
    for ids in qwen3_reranker_inputs(tokenizer, pairs, instruction, max_length):
        logits = _last_logits(model, ids)
        if raw:
            scores.append(float(logits[yes_id] - logits[no_id]))
        else:
            scores.append(float(torch.log_softmax(logits[[no_id, yes_id]], dim=-1)[1].exp()))
    return scores


def mxbai_rerank_v2_inputs(
    tokenizer, pairs: list[tuple[str, str]], positions: int, instruction: str | None = None, max_length: int = 8192
) -> list[list[int]]:
    """mxbai-rerank 0.1.6 ``MxbaiRerankV2.prepare_inputs``, one pair at a time (``positions``: the config's
    max_position_embeddings, the package's model_max_length)."""

    def ids(text: str, **kwargs) -> list[int]:
        return tokenizer(text, return_tensors=None, add_special_tokens=False, **kwargs)["input_ids"]

    sep = ids("\n")
    task = ids(
        "You are a search relevance expert who evaluates how well documents match search queries. For each "
        "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
        "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
    )
    prefix = ids(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n"
    )
    suffix = ids("<|im_end|>\n<|im_start|>assistant\n")
    predefined = len(prefix) + len(task) + len(suffix) + len(sep)
    if max_length + predefined > positions:
        max_length = positions - predefined
    inputs = []
    for query, document in pairs:
        query_text = f"query: {query}"
        if instruction:
            query_text = f"instruction: {instruction}\n{query_text}"
        query_ids = ids(query_text, max_length=max_length * 3 // 4, truncation=True)
        document_max = min(positions - len(query_ids) - predefined, max_length)
        document_ids = ids(f"document: {document}", max_length=document_max, truncation=True)
        second = _only_second(query_ids, sep + document_ids, max_length)
        inputs.append(prefix + query_ids + second + sep + task + suffix)
    return inputs


@torch.no_grad()
def mxbai_rerank_v2_scores(
    path: str, pairs: list[tuple[str, str]], instruction: str | None = None, max_length: int = 8192
) -> list[float]:
    """mxbai-rerank 0.1.6 ``MxbaiRerankV2.predict``: logit("1") - logit("0") at the last token, raw."""
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    yes_id = tokenizer("1", add_special_tokens=False)["input_ids"][0]
    no_id = tokenizer("0", add_special_tokens=False)["input_ids"][0]
    positions = model.config.max_position_embeddings
    scores = []
    for ids in mxbai_rerank_v2_inputs(tokenizer, pairs, positions, instruction, max_length):
        logits = _last_logits(model, ids)
        scores.append(float(logits[yes_id] - logits[no_id]))
    return scores


def bge_llm_reranker_inputs(
    tokenizer, pairs: list[tuple[str, str]], prompt: str | None = None, max_length: int = 512
) -> list[list[int]]:
    """FlagEmbedding 1.4.2 ``FlagLLMReranker.compute_score_single_gpu``'s inputs, one pair at a time."""
    if prompt is None:
        prompt = (
            "Given a query A and a passage B, determine whether the passage contains an answer to the query by "
            "providing a prediction of either 'Yes' or 'No'."
        )
    prompt_ids = tokenizer(prompt, return_tensors=None, add_special_tokens=False)["input_ids"]
    sep = tokenizer("\n", return_tensors=None, add_special_tokens=False)["input_ids"]
    encode_max_length = max_length + len(sep) + len(prompt_ids)
    bos = tokenizer.bos_token_id
    inputs = []
    for query, passage in pairs:
        query_ids = tokenizer(
            "A: " + query, return_tensors=None, add_special_tokens=False, max_length=max_length * 3 // 4,
            truncation=True,
        )["input_ids"]  # fmt: skip
        passage_ids = tokenizer(
            "B: " + passage, return_tensors=None, add_special_tokens=False, max_length=max_length, truncation=True
        )["input_ids"]
        first = [bos, *query_ids] if bos is not None and bos != tokenizer.pad_token_id else query_ids
        second = _only_second(first, sep + passage_ids, encode_max_length)
        inputs.append(first + second + sep + prompt_ids)
    return inputs


@torch.no_grad()
def bge_llm_reranker_scores(
    path: str, pairs: list[tuple[str, str]], prompt: str | None = None, max_length: int = 512
) -> list[float]:
    """FlagEmbedding 1.4.2 ``FlagLLMReranker.compute_score``: the logit of "Yes" at the last token, raw."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    yes_id = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    return [
        float(_last_logits(model, ids)[yes_id]) for ids in bge_llm_reranker_inputs(tokenizer, pairs, prompt, max_length)
    ]


def llm_raw_scores(family: str, path: str, pairs: list[tuple[str, str]], **options) -> list[float]:
    """The raw score (before any activation) of an LLM reranker family, from its authors' code above."""
    if family == "qwen3-reranker":
        return qwen3_reranker_scores(path, pairs, raw=True, **options)
    if family == "mxbai-rerank-v2":
        return mxbai_rerank_v2_scores(path, pairs, **options)
    if family == "bge-llm-reranker":
        options = {"prompt" if key == "instruction" else key: value for key, value in options.items()}
        return bge_llm_reranker_scores(path, pairs, **options)
    raise ValueError(f"no LLM reference for {family!r}")
