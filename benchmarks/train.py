"""``python -m benchmarks.train``: InRanker distillation steps per second, ours against inranker's own trainer.

Both sides train the same monoT5 model (a copy of the same weights each) on the same distillation rows (real
TREC DL19 queries and BM25 passages, random teacher logits), with the same batch size, steps, optimizer
settings, device and seed, in the same run, alternating:

- ours: ``CrossEncoderTrainer`` + ``rerank_plugins.training.InRankerDistillationLoss`` (pads to the longest row);
- theirs: ``inranker.training.trainer.T5Trainer`` on ``InRankerTrainer.tokenize`` (pads every row to
  ``max_length``). Under transformers 5 their class needs two shims, no change to its loss: its ``__init__``
  reads ``self.tokenizer`` (gone from ``Trainer``), and ``Trainer`` now passes ``num_items_in_batch`` to
  ``compute_loss``.

It prints steps/s of each (best of ``--repeats``), the ratio, and each side's loss at the first step (the same
weights and rows: they agree to float rounding where dropout is off, ``--no-dropout``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/train.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from datasets import Dataset

from benchmarks import data
from benchmarks.models import SHAPES, ensure_model
from rerank_plugins.testing import build_tiny_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=data.DEFAULT_DATA, help="bm25-top100.json (default: %(default)s)")
    parser.add_argument("--shape", choices=("tiny", "small"), default="tiny", help="tiny test T5, or T5-small's shape")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    parser.add_argument("--no-dropout", action="store_true", help="dropout off on both sides (loss parity)")
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "rerank-plugins-bench-models")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser.parse_args(argv)


def distillation_rows(run: list[dict], rows: int, seed: int = 0) -> dict[str, list[Any]]:
    """``rows`` (query, passage) pairs of the run with random teacher ``[false, true]`` logits."""
    pairs = [(record["query"], hit["content"]) for record in run for hit in record["hits"]][:rows]
    teacher = np.random.default_rng(seed).normal(0.0, 3.0, size=(len(pairs), 2)).round(3).tolist()
    return {"query": [q for q, _ in pairs], "document": [d for _, d in pairs], "label": teacher}


def common_arguments(args: argparse.Namespace, output_dir: str) -> dict[str, Any]:
    return {
        "output_dir": output_dir, "max_steps": args.steps, "per_device_train_batch_size": args.batch_size,
        "learning_rate": 7e-5, "lr_scheduler_type": "constant", "report_to": "none", "save_strategy": "no",
        "use_cpu": args.device == "cpu", "disable_tqdm": True, "seed": 0, "dataloader_num_workers": 0,
        "bf16": args.bf16, "logging_steps": 1,
    }  # fmt: skip


def no_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0


def run_ours(path: str, rows: dict[str, list[Any]], args: argparse.Namespace) -> tuple[float, float]:
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from rerank_plugins import CrossEncoder
    from rerank_plugins.training import InRankerDistillationLoss

    model = CrossEncoder(path, device=args.device, max_length=args.max_length)
    if args.no_dropout:
        no_dropout(model)
    with tempfile.TemporaryDirectory() as output:
        trainer = CrossEncoderTrainer(
            model=model,
            args=CrossEncoderTrainingArguments(**common_arguments(args, output)),
            train_dataset=Dataset.from_dict(rows),
            loss=InRankerDistillationLoss(model, max_length=args.max_length),
        )
        return timed_train(trainer)


def run_theirs(path: str, rows: dict[str, list[Any]], args: argparse.Namespace) -> tuple[float, float]:
    from inranker.training.trainer import InRankerTrainer, T5Trainer
    from transformers import AutoTokenizer, T5ForConditionalGeneration, TrainingArguments

    class Shimmed(T5Trainer):  # type: ignore[misc]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super(T5Trainer, self).__init__(*a, **kw)  # Trainer.__init__: theirs reads self.tokenizer, gone in v5
            vocab = self.processing_class.get_vocab()
            self.token_false_id, self.token_true_id = vocab["▁false"], vocab["▁true"]

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, **_: Any) -> Any:
            return super().compute_loss(model, inputs, return_outputs=return_outputs)  # their loss, unchanged

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = T5ForConditionalGeneration.from_pretrained(path).to(args.device)
    if args.no_dropout:
        no_dropout(model)
    centred = [[f - (f + t) / 2, t - (f + t) / 2] for f, t in rows["label"]]  # as their load_custom_dataset
    dataset = Dataset.from_dict({"query": rows["query"], "text": rows["document"], "label": centred})
    dataset.set_transform(lambda batch: InRankerTrainer.tokenize(batch, tokenizer, max_length=args.max_length))
    with tempfile.TemporaryDirectory() as output:
        training_args = TrainingArguments(**common_arguments(args, output), remove_unused_columns=False)
        trainer = Shimmed(model, training_args, train_dataset=dataset, processing_class=tokenizer)
        return timed_train(trainer)


def timed_train(trainer: Any) -> tuple[float, float]:
    """(steps per second of ``trainer.train()``, the loss logged at step 1)."""
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    first = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    return trainer.state.global_step / elapsed, float(first)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = data.load_run(args.data)
    rows = distillation_rows(run, args.steps * args.batch_size)
    if args.shape == "tiny":
        path, shape = build_tiny_model("monot5", Path(tempfile.mkdtemp()) / "tiny-monot5"), "tiny test T5 (d 32)"
    else:
        path, shape = str(ensure_model("monot5", args.models_dir, data.corpus(run))), SHAPES["monot5"]
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "inranker": []}
    for _ in range(args.repeats):  # alternating, so that both sides see the same machine state
        results["ours"].append(run_ours(path, rows, args))
        results["inranker"].append(run_theirs(path, rows, args))
    ours, theirs = (max(speed for speed, _ in results[side]) for side in ("ours", "inranker"))
    report = {
        "model": shape, "device": args.device, "bf16": args.bf16, "batch_size": args.batch_size,
        "max_length": args.max_length, "steps": args.steps, "threads": torch.get_num_threads(),
        "ours_steps_per_s": round(ours, 3), "inranker_steps_per_s": round(theirs, 3), "ratio": round(ours / theirs, 2),
        "first_loss_ours": results["ours"][0][1], "first_loss_inranker": results["inranker"][0][1],
    }  # fmt: skip
    print(f"InRanker distillation, {shape}, {args.device}, batch {args.batch_size}, max_length {args.max_length}:")
    print(f"  ours (CrossEncoderTrainer + InRankerDistillationLoss): {ours:.3g} steps/s")
    print(f"  inranker T5Trainer:                                   {theirs:.3g} steps/s")
    print(
        f"  ratio {ours / theirs:.2f}x; first-step loss {report['first_loss_ours']} vs {report['first_loss_inranker']}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
