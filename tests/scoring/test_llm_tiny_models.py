"""The tiny causal-LM rerankers hold the real special tokens and survive save and reload (transformers 5 rebuilds
``Qwen2Tokenizer`` / ``GemmaTokenizer`` from vocabulary + merges on load)."""

from __future__ import annotations

from collections import Counter

import pytest
from support import DOCUMENTS
from transformers import AutoConfig, AutoTokenizer

from rerank_plugins.scoring.bge_llm_reranker import BGE_PROMPT
from rerank_plugins.scoring.mxbai_rerank import MXBAI_PREFIX, MXBAI_SUFFIX, MXBAI_TASK
from rerank_plugins.scoring.qwen3_reranker import QWEN3_PREFIX, QWEN3_SUFFIX
from rerank_plugins.testing import CORPUS
from rerank_plugins.testing.causal_lm import check_round_trip, gemma_tokenizer, learn_merges, qwen_tokenizer

PROMPTS = [QWEN3_PREFIX + "<Instruct>: x\n<Query>: q\n<Document>: ünïcödé 🙂" + QWEN3_SUFFIX, MXBAI_PREFIX + MXBAI_TASK
           + MXBAI_SUFFIX, "A: how do vaccines work\nB: " + DOCUMENTS[2] + "\n" + BGE_PROMPT, *DOCUMENTS]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "architecture", "tokenizer_class"),
    [("qwen3-reranker", "Qwen3ForCausalLM", "Qwen2Tokenizer"),
     ("mxbai-rerank-v2", "Qwen2ForCausalLM", "Qwen2Tokenizer"),
     ("bge-llm-reranker", "GemmaForCausalLM", "GemmaTokenizer")],
)  # fmt: skip
def test_the_saved_tiny_models_are_the_real_architectures(tiny_paths, kind, architecture, tokenizer_class):
    assert AutoConfig.from_pretrained(tiny_paths[kind]).architectures == [architecture]
    tokenizer = AutoTokenizer.from_pretrained(tiny_paths[kind])
    assert type(tokenizer).__name__ == tokenizer_class
    # The same tokenizer in every process: the merges are deterministic.
    if kind == "bge-llm-reranker":
        rebuilt = gemma_tokenizer(CORPUS, 500)
    else:
        rebuilt = qwen_tokenizer(CORPUS, 500, reasoning=kind == "qwen3-reranker")
    for text in PROMPTS:
        assert tokenizer(text)["input_ids"] == rebuilt(text)["input_ids"]


def test_qwen_tokens_are_the_real_ones(tiny_paths, tmp_path):
    tokenizer = qwen_tokenizer(CORPUS, 500)
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "yes", "no", "0", "1"):
        assert tokenizer.convert_ids_to_tokens(tokenizer(token, add_special_tokens=False)["input_ids"]) == [token]
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.bos_token is None and tokenizer("a")["input_ids"] == tokenizer("a", add_special_tokens=False)[
        "input_ids"]  # fmt: skip
    special = {token.content: token.special for token in tokenizer.added_tokens_decoder.values()}
    assert special["<|im_start|>"] and not special["<think>"]  # Qwen3 adds <think> as a plain added token
    tokenizer.save_pretrained(tmp_path)
    check_round_trip(tokenizer, tmp_path, PROMPTS)
    assert "<think>" not in qwen_tokenizer(CORPUS, 500, reasoning=False).get_vocab()  # Qwen2.5 has none


def test_gemma_tokens_are_the_real_ones(tmp_path):
    tokenizer = gemma_tokenizer(CORPUS, 500)
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in ("<pad>", "<eos>", "<bos>", "<unk>")] == [0, 1, 2, 3]  # as in Gemma's vocabulary
    assert tokenizer("Yes", add_special_tokens=False)["input_ids"] == [vocab["Yes"]]
    assert tokenizer("hi")["input_ids"][0] == vocab["<bos>"]  # add_bos_token, as Gemma's
    assert tokenizer.convert_ids_to_tokens(tokenizer("\n", add_special_tokens=False)["input_ids"]) == ["\n"]
    assert "<0xF0>" in tokenizer.convert_ids_to_tokens(tokenizer("🙂", add_special_tokens=False)["input_ids"])
    tokenizer.save_pretrained(tmp_path)
    check_round_trip(tokenizer, tmp_path, PROMPTS)


def test_learned_merges_spell_the_required_tokens_first():
    words = {("a", "b", "c"): 5, ("y", "e", "s"): 1, ("a", "b"): 3}
    merges = learn_merges(Counter(words), 10, required=["yes"])
    assert merges[:2] == [("y", "e"), ("ye", "s")]
    assert merges[2] == ("a", "b")  # then the most frequent pair (8 occurrences)
    assert merges == learn_merges(Counter(dict(reversed(words.items()))), 10, ["yes"])
