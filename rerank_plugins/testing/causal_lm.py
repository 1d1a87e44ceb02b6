"""The LLM rerankers' tiny models: Qwen3 (Qwen3-Reranker), Qwen2 (mxbai-rerank-v2), Gemma (bge-reranker-v2-gemma).

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
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    GemmaTokenizer,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from rerank_plugins.testing.builders import BuildSpec, save
from rerank_plugins.testing.corpus import randomize

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


def qwen_tokenizer(corpus: Sequence[str], vocab_size: int, *, reasoning: bool = True) -> PreTrainedTokenizerFast:
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


def gemma_tokenizer(corpus: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
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


def check_round_trip(tokenizer: PreTrainedTokenizerFast, path: Any, texts: Sequence[str]) -> None:
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


def qwen3_causal_lm(spec: BuildSpec) -> None:
    """A ``Qwen3ForCausalLM`` with Qwen3's tokens (``<think>`` included), as Qwen3-Reranker."""
    _causal_lm(spec, Qwen3Config, Qwen3ForCausalLM, qwen_tokenizer(spec.corpus, spec.vocab("bpe"), reasoning=True))


def qwen2_causal_lm(spec: BuildSpec) -> None:
    """A ``Qwen2ForCausalLM`` with Qwen2.5's tokens, as mxbai-rerank-v2."""
    _causal_lm(spec, Qwen2Config, Qwen2ForCausalLM, qwen_tokenizer(spec.corpus, spec.vocab("bpe"), reasoning=False))


def gemma_causal_lm(spec: BuildSpec) -> None:
    """A ``GemmaForCausalLM`` with Gemma's tokens, as bge-reranker-v2-gemma."""
    _causal_lm(spec, GemmaConfig, GemmaForCausalLM, gemma_tokenizer(spec.corpus, spec.vocab("bpe")))


def _causal_lm(spec: BuildSpec, config_class: Any, model_class: Any, tokenizer: PreTrainedTokenizerFast) -> None:
    """Save a random causal LM whose LM head is tied to its embedding (as the real models), and its tokenizer."""
    config = config_class(
        **spec.config(tokenizer),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = model_class(config)
    randomize(model, spec.seed, spec.std)
    if spec.std is None:  # keep the tied LM head's logits of order one: |h| ~ sqrt(hidden) after the final norm
        embedding = model.get_input_embeddings()
        assert isinstance(embedding, torch.nn.Embedding)
        with torch.no_grad():
            embedding.weight.mul_(config.hidden_size**-0.5)
    save(model, tokenizer, spec)
