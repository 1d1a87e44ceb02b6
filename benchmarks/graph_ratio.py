"""``python -m benchmarks.graph_ratio``: how much faster a family's exported score graph runs than the same graph in
PyTorch, on this CPU, call for call.

The whole-pipeline speed-ups of ``benchmarks.run --backend`` include what stays the same on both paths (tokenizing,
batching, ListConRanker's ListTransformer) and move with the load of a shared machine between its fresh-process
passes. This measures the part a backend changes, with both sides in the same rounds: the runtime's own calls
are recorded while it scores the timed pairs (after warming up on other queries), then replayed, round after round
in rotated order, on PyTorch (the family's ``score_graph()`` module, the very computation that was exported), ONNX
Runtime fp32 and ONNX Runtime int8 (the file ``int8=True`` loads on this CPU). A pipeline cannot gain more over its
PyTorch path than this ratio, except where the PyTorch pipeline does more work than its score graph does. The
machine's dense fp32 and int8 matmul peaks are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks import data
from benchmarks.backends import backend_kwargs, int8_matmul_ops, prepare
from benchmarks.measure import matmul_flops
from benchmarks.models import BENCH, ensure_model
from benchmarks.run import DEFAULT_SIZE

SIDES = ("torch", "ours-onnx", "ours-onnx-int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.graph_ratio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=data.DEFAULT_DATA, help="bm25-top100.json (default: %(default)s)")
    parser.add_argument("--families", nargs="+", choices=list(BENCH), default=list(BENCH))
    parser.add_argument("--rounds", type=int, default=7, help="replays of the recorded calls per side")
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's own)")
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "rerank-plugins-bench-models")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    return parser.parse_args(argv)


class Recording:
    """A runtime that keeps a copy of the inputs of every call, and otherwise is the runtime."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.calls: list[dict[str, np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runtime, name)

    def __call__(self, inputs: Any) -> torch.Tensor:
        self.calls.append({name: array.copy() for name, array in self.runtime.feeds(inputs).items()})
        return self.runtime(inputs)


def recorded_calls(model: Any, groups: list[data.Group], warm: list[data.Group]) -> list[dict[str, np.ndarray]]:
    """The inputs of every runtime call made while ``model`` scores ``groups`` (one query at a time)."""
    for query, documents in warm:
        model.predict([(query, document) for document in documents])
    module = model[0]
    module.runtime = recording = Recording(module.runtime)
    try:
        for query, documents in groups:
            model.predict([(query, document) for document in documents])
    finally:
        module.runtime = recording.runtime
    return recording.calls


def family_ratios(
    family: str, path: Path, groups: list[data.Group], warm: list[data.Group], rounds: int
) -> dict[str, Any]:
    from rerank_plugins import CrossEncoder

    family_arg = None if family == "sequence-classification" else family
    prepare(family, str(path), ["onnx"], True, [])
    models = {side: CrossEncoder(str(path), family=family_arg, **backend_kwargs(side)) for side in SIDES[1:]}
    calls = recorded_calls(models["ours-onnx-int8"], groups, warm)
    scoring: Any = CrossEncoder(str(path), family=family_arg)[0]  # the family module, on PyTorch
    graph = scoring.score_graph()
    module: torch.nn.Module = graph.module.eval()

    def on_torch(feeds: dict[str, np.ndarray]) -> Any:
        with torch.inference_mode():
            return module(*[torch.from_numpy(feeds[name]) for name in graph.inputs])

    def on_runtime(runtime: Any) -> Callable[[dict[str, np.ndarray]], Any]:
        return lambda feeds: runtime({name: torch.from_numpy(array) for name, array in feeds.items()})

    replay = {"torch": on_torch, **{side: on_runtime(models[side][0].runtime) for side in SIDES[1:]}}
    seconds: dict[str, list[float]] = {side: [] for side in SIDES}
    for side in SIDES:  # warm-up: one replay each
        for feeds in calls:
            replay[side](feeds)
    for index in range(rounds):
        for side in SIDES[index % len(SIDES) :] + SIDES[: index % len(SIDES)]:
            start = time.perf_counter()
            for feeds in calls:
                replay[side](feeds)
            seconds[side].append(time.perf_counter() - start)
    tokens = sum(int(feeds["attention_mask"].size) for feeds in calls)
    result: dict[str, Any] = {"calls": len(calls), "padded_tokens": tokens, "seconds": seconds}
    for side in SIDES[1:]:
        per_round = [t / s for t, s in zip(seconds["torch"], seconds[side], strict=True)]
        result[side] = {
            "us_per_token": min(seconds[side]) / tokens * 1e6,
            "vs_torch_median": statistics.median(per_round),
            "vs_torch_range": [min(per_round), max(per_round)],
        }
    result["torch"] = {"us_per_token": min(seconds["torch"]) / tokens * 1e6}
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = data.load_run(args.data)
    info = {"threads": torch.get_num_threads(), "matmul_flops": matmul_flops(), "int8_matmul_ops": int8_matmul_ops()}
    print(f"peaks: fp32 {info['matmul_flops'] / 1e12:.3f} TFLOP/s, int8 {info['int8_matmul_ops'] / 1e12:.3f} TOP/s "
          f"({info['int8_matmul_ops'] / info['matmul_flops']:.2f}x), {info['threads']} threads")  # fmt: skip
    rows = {}
    for family in args.families:
        queries, depth = DEFAULT_SIZE.get(family, (4, 25))
        groups, warm = data.split(run, queries, depth, 2)
        path = ensure_model(BENCH[family], args.models_dir, data.corpus(run))
        rows[family] = row = family_ratios(family, path, groups, warm, args.rounds)
        print(f"{family}: {row['calls']} calls, {row['padded_tokens']} tokens; us/token torch "
              f"{row['torch']['us_per_token']:.1f}, " + ", ".join(
                  f"{side} {row[side]['us_per_token']:.1f} ({row[side]['vs_torch_median']:.2f}x, "
                  f"{row[side]['vs_torch_range'][0]:.2f}-{row[side]['vs_torch_range'][1]:.2f})" for side in SIDES[1:]
              ), flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "families": rows}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
