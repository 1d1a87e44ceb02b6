"""Tiny causal-LM rerankers built offline: Qwen3 (Qwen3-Reranker), Qwen2 (mxbai-rerank-v2), Gemma (bge-gemma).

Their tokenizers are transformers' own classes (``Qwen2Tokenizer``, ``GemmaTokenizer``) built from an explicit
vocabulary and merges, because transformers 5 rebuilds those classes from vocabulary + merges on load: a tokenizer
assembled any other way may not survive ``save_pretrained`` / ``from_pretrained``. The merges are learned from the
corpus by a small deterministic BPE (ties broken by the pair itself, so every process builds the same model), and
they hold what the authors' prompts need as the real tokenizers do: ``<|im_start|>``, ``<|im_end|>``,
``<|endoftext|>`` (special), ``<think>`` / ``</think>`` (added, not special) and the answer words ``yes``, ``no``,
``0``, ``1`` as single tokens (Qwen); ``<bos>``, ``<pad>``, ``<eos>`` and ``Yes`` as single tokens (Gemma).
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers
from transformers import GemmaTokenizer, PreTrainedTokenizerBase, Qwen2Tokenizer

QWEN_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""Qwen2's pre-tokenizer pattern (as in ``transformers``' ``Qwen2Tokenizer``): words, single digits, punctuation."""
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_ADDED = ("<think>", "</think>")  # Qwen3's reasoning markers: added tokens, not special ones
QWEN_WORDS = ("yes", "no", "Yes", "No")  # single tokens in the real vocabulary (digits are single by the pattern)
GEMMA_SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")  # ids 0-4, as the real Gemma vocabulary
GEMMA_TURNS = ("<start_of_turn>", "<end_of_turn>")
GEMMA_WORDS = ("Yes", "No", "▁Yes", "▁No", "▁yes", "▁no")


def learn_merges(words: Counter[tuple[str, ...]], merges: int, required: Iterable[str] = ()) -> list[tuple[str, str]]:
    """BPE merges: first those that spell each ``required`` token left to right, then the most frequent pairs.

    ``words`` maps each word (a tuple of symbols) to its count. Ties go to the smallest pair, so the result is the
    same in every process. A required token's merges come first (the lowest ranks), so that the token comes out
    whole wherever it stands alone, as in the real vocabularies.
    """
    learned: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for token in required:
        symbol = token[0]
        for character in token[1:]:
            pair = (symbol, character)
            if pair not in seen:
                seen.add(pair)
                learned.append(pair)
            symbol += character
    table = [list(word) for word in words]
    counts = list(words.values())
    for pair in learned:  # spell the required tokens in the corpus too
        for symbols in table:
            _merge_in(symbols, pair)
    pairs: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for index, symbols in enumerate(table):
        for pair in itertools.pairwise(symbols):
            pairs[pair] += counts[index]
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in pairs.items()]
    heapq.heapify(heap)
    while len(learned) < merges and heap:
        negative, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -negative:
            continue  # a stale entry: the pair's count changed since it was pushed
        if -negative < 2:
            break
        if pair not in seen:
            seen.add(pair)
            learned.append(pair)
        touched: set[tuple[str, str]] = set()
        for index in sorted(where.pop(pair, ())):
            symbols = table[index]
            for old in itertools.pairwise(symbols):
                pairs[old] -= counts[index]
                touched.add(old)
            _merge_in(symbols, pair)
            for new in itertools.pairwise(symbols):
                pairs[new] += counts[index]
                where[new].add(index)
                touched.add(new)
        pairs.pop(pair, None)
        for changed in touched:
            if pairs.get(changed, 0) > 0:
                heapq.heappush(heap, (-pairs[changed], changed))
    return learned


def _merge_in(symbols: list[str], pair: tuple[str, str]) -> None:
    """Merge every occurrence of ``pair`` in ``symbols``, left to right, in place."""
    i = 0
    while i < len(symbols) - 1:
        if symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
            symbols[i : i + 2] = [pair[0] + pair[1]]
        else:
            i += 1


def _vocabulary(first: Sequence[str], merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    tokens = list(dict.fromkeys([*first, *(a + b for a, b in merges)]))
    return {token: i for i, token in enumerate(tokens)}


def qwen_tokenizer(corpus: Sequence[str], vocab_size: int, *, reasoning: bool = True) -> PreTrainedTokenizerBase:
    """A byte-level BPE ``Qwen2Tokenizer`` as Qwen2.5 / Qwen3 ship it (``reasoning``: with ``<think>``/``</think>``).

    The pad token is ``<|endoftext|>`` and the eos ``<|im_end|>``, as in Qwen3-Reranker; there is no bos.
    """
    normalizer = normalizers.NFC()
    splitter = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    words: Counter[tuple[str, ...]] = Counter()
    for text in [*corpus, *QWEN_WORDS]:
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)):
            words[tuple(word)] += 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = learn_merges(words, max(0, vocab_size - len(alphabet)), required=QWEN_WORDS)
    no_unknown: dict[str, Any] = {"unk_token": None}  # Qwen's byte-level vocabulary spells any text
    tokenizer = Qwen2Tokenizer(
        vocab=_vocabulary(alphabet, merges),
        merges=cast(Any, merges),  # pairs, as tokenizers' BPE takes them (the annotation says strings)
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        **no_unknown,
    )
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in QWEN_SPECIAL])
    if reasoning:
        tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in QWEN_ADDED])
    return tokenizer


def gemma_tokenizer(corpus: Sequence[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """A SentencePiece-style BPE ``GemmaTokenizer`` (spaces as ``▁``, byte fallback) that prepends ``<bos>``."""
    words: Counter[tuple[str, ...]] = Counter()
    for text in [*corpus, "Yes No yes no"]:
        for word in re.findall(r"▁?[^▁]+|▁+", text.replace(" ", "▁")):
            words[tuple(word)] += 1
    characters = sorted({character for word in words for character in word} | {"\n", "▁"})
    first = [*GEMMA_SPECIAL, *GEMMA_TURNS, *(f"<0x{byte:02X}>" for byte in range(256)), *characters]
    merges = learn_merges(words, max(0, vocab_size - len(first)), required=GEMMA_WORDS)
    return GemmaTokenizer(
        vocab=_vocabulary(first, merges),
        merges=cast(Any, merges),  # pairs, as tokenizers' BPE takes them (the annotation says strings)
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=8192,
    )


def check_round_trip(tokenizer: PreTrainedTokenizerBase, path: Any, texts: Sequence[str]) -> None:
    """Raise if ``tokenizer`` saved to ``path`` and loaded back tokenizes ``texts`` otherwise (its special ids too)."""
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(path)
    for text in texts:
        for special in (True, False):
            before = tokenizer(text, add_special_tokens=special)["input_ids"]
            after = reloaded(text, add_special_tokens=special)["input_ids"]
            if before != after:
                raise AssertionError(f"{type(tokenizer).__name__} changed on reload: {text!r} {before} != {after}")
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name) != getattr(reloaded, name):
            raise AssertionError(f"{name} changed on reload: {getattr(tokenizer, name)} != {getattr(reloaded, name)}")


CAUSAL_KINDS: dict[str, str] = {
    "qwen3-reranker": "Qwen3ForCausalLM + Qwen3's tokenizer tokens (Qwen3-Reranker-like)",
    "mxbai-rerank-v2": "Qwen2ForCausalLM + Qwen2.5's tokenizer tokens (mxbai-rerank-v2-like)",
    "bge-llm-reranker": "GemmaForCausalLM + Gemma's tokenizer tokens (bge-reranker-v2-gemma-like)",
}
"""The causal-LM kinds that :func:`build_causal_lm` builds (``rerank_plugins.testing.build_model`` kinds too)."""

CAUSAL_SIZES: dict[str, dict[str, Any]] = {
    "qwen3-reranker": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 40960},
    "mxbai-rerank-v2": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "max_position_embeddings": 32768},
    "bge-llm-reranker": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                         "num_key_value_heads": 1, "head_dim": 8, "max_position_embeddings": 8192},
}  # fmt: skip
"""Tiny sizes of each causal kind (config keys); the real models tie the LM head to the embedding, as these do."""


def build_causal_lm(
    kind: str,
    path: Any,
    *,
    corpus: Sequence[str],
    tokenizer_vocab: int,
    sizes: dict[str, Any],
    std: float | None,
    seed: int,
    dtype: Any = None,
) -> None:
    """Save a random causal LM of ``kind`` (see :data:`CAUSAL_KINDS`) and its tokenizer in ``path``."""
    from transformers import GemmaConfig, GemmaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from rerank_plugins.testing import randomize

    classes: dict[str, tuple[Any, Any]] = {
        "qwen3-reranker": (Qwen3Config, Qwen3ForCausalLM),
        "mxbai-rerank-v2": (Qwen2Config, Qwen2ForCausalLM),
        "bge-llm-reranker": (GemmaConfig, GemmaForCausalLM),
    }
    config_class, model_class = classes[kind]
    if kind == "bge-llm-reranker":
        tokenizer = gemma_tokenizer(corpus, tokenizer_vocab)
    else:
        tokenizer = qwen_tokenizer(corpus, tokenizer_vocab, reasoning=kind == "qwen3-reranker")
    settings = {**sizes, "vocab_size": max(int(sizes.get("vocab_size", 0)), len(tokenizer))}
    config = config_class(
        **settings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = model_class(config)
    randomize(model, seed, std)
    if std is None:  # keep the tied LM head's logits of order one: |h| ~ sqrt(hidden) after the final norm
        embedding = model.get_input_embeddings()
        assert isinstance(embedding, torch.nn.Embedding)
        with torch.no_grad():
            embedding.weight.mul_(config.hidden_size**-0.5)
    if dtype is not None:
        model.to(dtype)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
