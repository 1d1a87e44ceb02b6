"""A causal LM that no other family recognises, scored as sentence-transformers scores it: its ``LogitScore``.

sentence-transformers 6 builds ``Transformer(transformer_task="text-generation")`` + ``LogitScore(yes, no)`` for any
checkpoint whose first architecture is a ``*ForCausalLM``: its own tokenization of the pair (left padding, the
tokenizer's chat template when it has one), ``logit(yes) - logit(no)`` at the last token, and its default
sigmoid. This family builds exactly those modules, so the drop-in agrees with the library it replaces. It is the
last resort of detection (``FamilySpec.fallback``) and says so in one warning at load: a published causal-LM
reranker is scored as its authors do through its hub id, ``preset=`` or ``family=``.
"""

from __future__ import annotations

from sentence_transformers.base.modules import Transformer
from sentence_transformers.cross_encoder.modules import LogitScore
from torch import nn

from rerank_plugins.families import CheckpointInfo, FamilySpec, LoadRequest, TinyModel
from rerank_plugins.scoring.qwen3_reranker import QWEN3_SIZES


def build_logit_score(request: LoadRequest) -> list[nn.Module]:
    """sentence-transformers' own causal-LM modules; ``family_options`` may name other answer tokens."""
    options = dict(request.options)
    true_token, false_token = options.pop("true_token", "yes"), options.pop("false_token", "no")
    if options:
        raise ValueError(f"Unknown family_options {sorted(options)} for logit-score: use 'true_token', 'false_token'.")
    transformer = Transformer(request.name_or_path, transformer_task="text-generation", **request.transformer_kwargs())
    tokenizer = transformer.tokenizer
    vocabulary = tokenizer.get_vocab() if tokenizer is not None else {}
    missing = [token for token in (true_token, false_token) if token not in vocabulary]
    if missing:  # sentence-transformers would read the unknown-token id here: a score of nothing
        raise ValueError(
            f"{request.name_or_path!r} is a causal LM whose tokenizer has no token {missing[0]!r}, which "
            "sentence-transformers' LogitScore reads. Pass family= (e.g. 'query-likelihood') or preset= for this "
            "model, or family_options={'true_token': ..., 'false_token': ...}."
        )
    return [transformer, LogitScore(true_token_id=vocabulary[true_token], false_token_id=vocabulary[false_token])]


def is_sentence_transformers_causal_lm(info: CheckpointInfo) -> bool:
    """sentence-transformers' own test: the checkpoint's first architecture is a ``*ForCausalLM``."""
    architectures = info.architectures
    return bool(architectures) and architectures[0].endswith("ForCausalLM")


DETECTED_NOTE = (
    "{name} is a causal LM ({architecture}) that no family recognises: it is scored as sentence-transformers "
    "scores one (family 'logit-score': sigmoid of logit('yes') - logit('no') at its last token). To score it as "
    "its authors do, pass preset= (e.g. preset='Qwen/Qwen3-Reranker-0.6B' for a local copy) or family= (e.g. "
    "family='query-likelihood' for a local RankingGPT copy)."
)


FAMILY = FamilySpec(
    "logit-score",
    build=build_logit_score,
    activation=None,  # sentence-transformers' own default: the sigmoid (one score per pair)
    recognize=is_sentence_transformers_causal_lm,
    fallback=True,
    detected_note=DETECTED_NOTE,
    module_classes=(LogitScore,),
    tiny_models=(
        TinyModel(
            "logit-score",
            "Qwen3ForCausalLM loaded without family= (scored as sentence-transformers scores it)",
            "rerank_plugins.testing.causal_lm:qwen3_causal_lm",
            QWEN3_SIZES,
        ),
    ),
)
