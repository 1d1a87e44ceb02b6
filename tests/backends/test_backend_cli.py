"""``--backend`` and ``--int8`` on the command line, and int8 at load (``model_kwargs={"int8": True}``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from rerank_plugins import CrossEncoder
from rerank_plugins.backends.options import int8_file
from rerank_plugins.cli import main

DOCS = [
    "Paris is the capital of France.",
    "The stock market fell on Monday.",
    "Berlin has many museums.",
    "France's capital city is Paris, on the Seine.",
]


def ranked(output: str) -> list[tuple[int, float]]:
    return [(int(row.split()[1]), float(row.split()[2])) for row in output.splitlines()[1:]]


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_rank_with_a_backend_gives_the_torch_ranking(tiny_paths, load_tiny, capsys, backend) -> None:
    argv = ["rank", "--model", tiny_paths["monot5"], "--backend", backend, "--query", "capital of france", *DOCS]
    assert main(argv) == 0
    expected = load_tiny("monot5").rank("capital of france", DOCS)
    rows = ranked(capsys.readouterr().out)
    assert [index for index, _ in rows] == [result["corpus_id"] for result in expected]
    assert [score for _, score in rows] == pytest.approx([result["score"] for result in expected], abs=1e-5)


def test_int8_is_one_line_error_where_a_family_cannot(tiny_paths, capsys) -> None:
    argv = ["rank", "--model", tiny_paths["query-likelihood"], "--family", "query-likelihood", "--int8", "--query", "q"]
    assert main([*argv, "a document"]) == 2
    error = capsys.readouterr().err
    assert "int8 quantization supports" in error and error.count("\n") == 1


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_int8_at_load_quantizes_once_and_saves_beside_the_model(tiny_paths, load_tiny, tmp_path, backend) -> None:
    path = tmp_path / "model"
    shutil.copytree(tiny_paths["sequence-classification"], path)
    pairs = [("capital of france", document) for document in DOCS] + [("museums in berlin", d) for d in DOCS]
    model = CrossEncoder(str(path), backend=backend, model_kwargs={"int8": True})
    assert model[0].runtime.exported.relative == int8_file(backend)
    scores = model.predict(pairs, activation_fn=torch.nn.Identity())
    fp32 = load_tiny("sequence-classification").predict(pairs, activation_fn=torch.nn.Identity())
    assert not np.allclose(scores, fp32, atol=1e-6) and spearmanr(scores, fp32).statistic > 0.5
    model.save_pretrained(str(path))
    assert (Path(path) / int8_file(backend)).is_file()
    reloaded = CrossEncoder(str(path), backend=backend, model_kwargs={"int8": True})
    assert reloaded[0].runtime.exported.root == path  # the saved file, not a new quantization
    np.testing.assert_allclose(reloaded.predict(pairs, activation_fn=torch.nn.Identity()), scores, atol=1e-6)


def test_serve_passes_the_backend_flags_to_every_model(tiny_paths, monkeypatch) -> None:
    from rerank_plugins.cli import build_parser
    from rerank_plugins.cli.serve import config_from_flags

    argv = ["serve", "--model", "a", "--model", "b=c", "--backend", "openvino", "--int8"]
    config = config_from_flags(build_parser().parse_args(argv))
    assert [(model.backend, model.int8) for model in config.models] == [("openvino", True)] * 2
    assert config.models[0].crossencoder_kwargs()["backend"] == "openvino"
    # and the served model loads on that backend, int8
    served = type(config.models[0])("t", tiny_paths["monot5"], family="monot5", device="cpu", backend="onnx", int8=True)
    model = served.load()
    assert model.backend == "onnx" and model[0].runtime.options.int8
