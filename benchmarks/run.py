"""``python -m benchmarks.run``: rerank-plugins against what a user would otherwise run, in the same run.

For every family it scores real TREC DL19 queries and their BM25 passages with our ``CrossEncoder`` and with the
alternative (``benchmarks/runners.py``), and prints pairs per second, the speed ratio, the peak memory each side
adds, the largest score difference (a row FAILs above 1e-5 in fp32), and each side's model FLOP/s as a fraction
of the machine's dense matmul throughput measured in the same run. ``--int8`` adds the opt-in int8 path
(speed against fp32, Spearman correlation and top-10 overlap per query); ``--long-list`` ranks 250 and 1,000
passages for one query with tiny models and reports the peak memory of each. See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks import data, flops
from benchmarks.backends import backend_sides, compare_backends, int8_matmul_ops, print_backends
from benchmarks.measure import MALLOC_ENV, matmul_flops
from benchmarks.models import BENCH, REAL, SMALL_REAL, Shape, ensure_model
from benchmarks.runners import ALTERNATIVES, DTYPES
from rerank_plugins.families import get_family

ROOT = Path(__file__).resolve().parent.parent
# (queries, depth): the card loops are slow (RankingGPT's one pair at a time; Qwen3's 151,669-wide logits at every
# position of a 0.6B-wide model); the rest run 4 x 25.
DEFAULT_SIZE = {"query-likelihood": (2, 25), "qwen3-reranker": (2, 8)}
TOLERANCE = {"fp32": 1e-5, "bf16": 2e-2, "fp16": 1e-2}
LONG_LIST_SIZES = (250, 1000)
LONG_LIST_MAX_LENGTH = 128  # every passage fills it with the tiny tokenizers: all batches have one shape


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=data.DEFAULT_DATA, help="bm25-top100.json (default: %(default)s)")
    parser.add_argument("--families", nargs="+", choices=list(BENCH), default=list(BENCH))
    parser.add_argument("--queries", type=int, help="queries per family (default: 4; query-likelihood 2)")
    parser.add_argument("--depth", type=int, help="passages per query (default: 25)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="pairs per forward of both sides (default: predict()'s own default for ours, which "
        "batches by tokens on an accelerator; 32, the libraries' default, for the alternatives)",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed passes per side, each a fresh process; the best counts"
    )
    parser.add_argument("--warm-up-queries", type=int, default=2, help="other queries each process warms up on")
    parser.add_argument("--threads", type=int, help="torch threads in the workers (default: torch's own)")
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory processes (quicker)")
    parser.add_argument("--int8", action="store_true", help="also benchmark the opt-in int8 path (CPU)")
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=("onnx", "openvino"),
        default=[],
        help="also time these backends (fp32; with --int8 their int8 too; for sequence classification the bare "
        "runtime on the same batches), side by side with torch in the same run (CPU)",
    )
    parser.add_argument(
        "--st-python",
        help="a Python with sentence-transformers[openvino] (optimum-intel): also time sentence-transformers' own "
        "backend='openvino' on our exported file (sequence classification)",
    )
    parser.add_argument("--long-list", action="store_true", help="also measure peak memory on 250 vs 1,000 passages")
    parser.add_argument("--only-long-list", action="store_true", help="run the long-list measurement only")
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "rerank-plugins-bench-models")
    parser.add_argument(
        "--shapes",
        choices=("bench", "real"),
        default="bench",
        help="bench: shapes sized for a CPU run; real: the seeds' own shapes (see benchmarks/models.py)",
    )
    parser.add_argument(
        "--real-models",
        nargs="+",
        choices=sorted(REAL),
        help="with --shapes real: which (default: all on CUDA; on CPU all but the 3B ones)",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.dtype != "fp32" and not args.device.startswith("cuda"):
        parser.error("--dtype bf16/fp16 needs --device cuda (the CPU figures are fp32)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.real_models and args.shapes != "real":
        parser.error("--real-models needs --shapes real")
    return args


def selected(args: argparse.Namespace) -> list[tuple[str, Shape]]:
    """The (row name, model shape) pairs to run, in order."""
    if args.shapes == "bench":
        return [(family, BENCH[family]) for family in args.families]
    names = args.real_models or (list(REAL) if args.device.startswith("cuda") else list(SMALL_REAL))
    return [(name, REAL[name]) for name in names if REAL[name].family in args.families]


def worker(spec: dict[str, Any], *, memory: bool, python: str | None = None) -> dict[str, Any]:
    """Run ``benchmarks.worker`` on ``spec`` in a fresh Python process (``python``, default this one)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if memory:
        env.update(MALLOC_ENV)
    with tempfile.TemporaryDirectory() as scratch:
        spec_path, result_path = Path(scratch) / "spec.json", Path(scratch) / "result.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        done = subprocess.run(
            [python or sys.executable, "-m", "benchmarks.worker", str(spec_path), str(result_path)],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"worker failed ({spec['family']}, {spec['side']}):\n{done.stderr[-4000:]}")
        return json.loads(result_path.read_text(encoding="utf-8"))


def machine(args: argparse.Namespace) -> dict[str, Any]:
    """What the figures were measured on, and the dense matmul throughput of that device in the run's dtype."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU: {cpu}"
    return {
        "device": device,
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": args.dtype,
        "matmul_flops": matmul_flops(args.device, DTYPES[args.dtype]),
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def top_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    k = min(k, len(a))
    return len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k


def family_row(
    name: str,
    shape: Shape,
    path: Path,
    groups: list[data.Group],
    warm: list[data.Group],
    args: argparse.Namespace,
    peak: float,
    int8_peak: float | None = None,
    calibration: list[data.Group] | None = None,
) -> dict:
    """Time each side in fresh processes (alternated), measure each side's memory, compare the scores.

    Every process warms up on ``warm`` (other queries) and then times ``groups``: pairs it has not seen. The
    passes alternate A B B A ... so that both sides see the same machine load; each side keeps its best pass.
    """
    family = shape.family
    int8 = args.int8 and get_family(family).int8_targets is not None and args.device == "cpu"
    base = {"family": family, "path": str(path), "groups": groups, "warm_groups": warm, "device": args.device,
            "dtype": args.dtype, "batch_size": args.batch_size, "threads": args.threads}  # fmt: skip
    sides = ["ours", "alternative", *(["ours-int8"] if int8 else [])]
    extra = backend_sides(family, args.backend, args.int8, args.st_python)
    if extra:
        worker({**base, "mode": "prepare", "side": "ours", "backends": args.backend, "int8": args.int8,
                "calibration": calibration}, memory=False)  # fmt: skip
    sides += extra
    passes: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for repeat in range(args.repeats):
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            python = args.st_python if side == "st-openvino" else None
            passes[side].append(worker({**base, "side": side, "mode": "time"}, memory=False, python=python))
    timed = {side: {"times": [p["seconds"] for p in runs], "cpu_times": [p["cpu_seconds"] for p in runs],
                    "scores": runs[0]["scores"], "mode": runs[0]["mode"]} for side, runs in passes.items()}  # fmt: skip
    # Memory: one query's call (the unit every adapter makes), each side in a fresh process.
    one_query = {**base, "groups": groups[:1], "mode": "memory"}
    memory = {} if args.skip_memory else {side: worker({**one_query, "side": side}, memory=True) for side in sides[:2]}
    pairs = sum(len(docs) for _, docs in groups)
    model_flops = flops.model_flops(family, str(path), groups)
    row: dict[str, Any] = {"name": name, "family": family, "model": shape.description,
                           "alternative_name": ALTERNATIVES[family], "alternative_mode": timed["alternative"]["mode"],
                           "queries": len(groups), "warm_up_queries": len(warm), "pairs": pairs,
                           "model_gflop": model_flops / 1e9}  # fmt: skip
    for side in sides:
        best = min(timed[side]["times"])
        limit = int8_peak if "int8" in side and int8_peak else peak
        row[side] = {"seconds": best, "times": timed[side]["times"], "cpu_times": timed[side]["cpu_times"],
                     "pairs_per_s": pairs / best, "model_tflop_per_s": model_flops / best / 1e12,
                     "flop_fraction": model_flops / best / limit, "scores": timed[side]["scores"]}  # fmt: skip
        if side in memory:
            row[side]["peak_mib"] = memory[side]["peak_mib"]
    row["memory_method"] = memory["ours"]["memory_method"] if memory else "not measured (--skip-memory)"
    ours = np.concatenate([np.asarray(s, dtype=np.float64) for s in timed["ours"]["scores"]])
    alternative = np.concatenate([np.asarray(s, dtype=np.float64) for s in timed["alternative"]["scores"]])
    row["max_abs_diff"] = float(np.abs(ours - alternative).max())
    row["agree"] = row["max_abs_diff"] <= TOLERANCE[args.dtype]
    row["speedup"] = row["ours"]["pairs_per_s"] / row["alternative"]["pairs_per_s"]
    if memory:
        row["memory_ratio"] = row["alternative"]["peak_mib"] / max(row["ours"]["peak_mib"], 1e-9)
    if int8:
        per_query = list(zip(timed["ours"]["scores"], timed["ours-int8"]["scores"], strict=True))
        rho = [spearman(np.asarray(a), np.asarray(b)) for a, b in per_query]
        overlap = [top_overlap(np.asarray(a), np.asarray(b)) for a, b in per_query]
        int8_scores = np.concatenate([np.asarray(s) for s in timed["ours-int8"]["scores"]])
        row["int8"] = {"speedup_vs_fp32": row["ours"]["seconds"] / row["ours-int8"]["seconds"],
                       "spearman_mean": float(np.mean(rho)), "spearman_min": float(np.min(rho)),
                       "top10_overlap_mean": float(np.mean(overlap)), "top10_overlap_min": float(np.min(overlap)),
                       "max_abs_diff": float(np.abs(int8_scores - ours).max())}  # fmt: skip
    if extra:
        row["backends"] = compare_backends(row, extra)
    for side in sides:
        row[side].pop("scores")
    return row


def long_list_rows(run: list[dict], args: argparse.Namespace) -> list[dict]:
    """Peak memory of one query with 250 and 1,000 passages, tiny models, each measurement in a fresh process."""
    from rerank_plugins.testing import build_tiny_model

    tiny_root = args.models_dir / "tiny"
    rows = []
    for family, side in (("listconranker", "ours"), ("listconranker", "alternative"), ("monot5", "ours"),
                         ("query-likelihood", "ours")):  # fmt: skip
        path = tiny_root / family
        if not (path / "config.json").exists():
            build_tiny_model(family, path)
        row: dict[str, Any] = {"family": family, "side": side}
        for size in LONG_LIST_SIZES:
            spec = {"family": family, "path": str(path), "groups": [data.long_list(run, size)], "device": args.device,
                    "dtype": args.dtype, "batch_size": args.batch_size, "threads": args.threads,
                    "side": side, "mode": "memory", "max_length": LONG_LIST_MAX_LENGTH,
                    "warm_up": "full"}  # fmt: skip
            start = time.perf_counter()
            row[str(size)] = worker(spec, memory=True)["peak_mib"]
            row[f"seconds_{size}"] = time.perf_counter() - start
        rows.append(row)
    return rows


def mib(side: dict[str, Any]) -> str:
    return f"{side['peak_mib']:.0f}" if "peak_mib" in side else "-"


def tflops(side: dict[str, Any]) -> str:
    return f"{side['model_tflop_per_s']:.3g} ({side['flop_fraction']:.1%})"


def print_report(info: dict[str, Any], rows: list[dict], long_rows: list[dict]) -> None:
    print(f"\nDevice: {info['device']} | {info['threads']} torch threads of {info['cores']} cores | torch "
          f"{info['torch']} | {info['dtype']} | dense matmul: {info['matmul_flops'] / 1e12:.3f} TFLOP/s")  # fmt: skip
    if rows:
        print("\n| model | pairs | ours pairs/s | alt pairs/s | speed-up | ours peak MiB | alt peak MiB | "
              "memory ratio | max abs diff | ours TFLOP/s (frac) | alt TFLOP/s (frac) |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            ok = "" if r["agree"] else " FAIL"
            print(f"| {r['name']} | {r['pairs']} | {r['ours']['pairs_per_s']:.1f} | "
                  f"{r['alternative']['pairs_per_s']:.1f} | {r['speedup']:.2f}x | {mib(r['ours'])} | "
                  f"{mib(r['alternative'])} | {r.get('memory_ratio', float('nan')):.1f}x | "
                  f"{r['max_abs_diff']:.1e}{ok} | "
                  f"{tflops(r['ours'])} | {tflops(r['alternative'])} |")  # fmt: skip
        print("\nAlternatives: " + "; ".join(f"{r['name']}: {r['alternative_name']} ({r['alternative_mode']})"
                                           for r in rows))  # fmt: skip
        print("Models: " + "; ".join(f"{r['name']}: {r['model']}" for r in rows))
        print(
            f"Timing: each pass a fresh process per side, alternated, warmed up on {rows[0]['warm_up_queries']} "
            "other queries (the timed pairs are unseen); the best pass per side counts."
        )
        print(f"Peak memory: {rows[0]['memory_method']}, growth over the loaded, warmed-up model.")
    int8_rows = [r for r in rows if "int8" in r]
    if int8_rows:
        print("\n| family (int8 vs fp32) | int8 pairs/s | speed-up | Spearman mean / min | top-10 overlap "
              "mean / min | max abs diff |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        for r in int8_rows:
            q = r["int8"]
            print(f"| {r['name']} | {r['ours-int8']['pairs_per_s']:.1f} | {q['speedup_vs_fp32']:.2f}x | "
                  f"{q['spearman_mean']:.3f} / {q['spearman_min']:.3f} | {q['top10_overlap_mean']:.2f} / "
                  f"{q['top10_overlap_min']:.2f} | {q['max_abs_diff']:.1e} |")  # fmt: skip
    if long_rows:
        sizes = " | ".join(f"peak MiB, {n} passages" for n in LONG_LIST_SIZES)
        print(f"\n| long list (tiny models) | side | {sizes} |")
        print("|---|---|" + "---:|" * len(LONG_LIST_SIZES))
        for r in long_rows:
            print(f"| {r['family']} | {r['side']} | " + " | ".join(f"{r[str(n)]:.1f}" for n in LONG_LIST_SIZES) + " |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = data.load_run(args.data)
    info = machine(args)
    if args.backend and args.int8:
        info["int8_matmul_ops"] = int8_matmul_ops()
    rows: list[dict] = []
    if not args.only_long_list:
        corpus = data.corpus(run)
        for name, shape in selected(args):
            queries, depth = DEFAULT_SIZE.get(shape.family, (4, 25))
            groups, warm = data.split(run, args.queries or queries, args.depth or depth, args.warm_up_queries)
            # static int8 calibrates on pairs of queries that are neither timed nor warm-up ones
            skip = (args.queries or queries) + args.warm_up_queries
            calibration = data.groups(run[skip:], 8, 25)
            print(f"{name}: building {shape.description} ...", file=sys.stderr, flush=True)
            path = ensure_model(shape, args.models_dir, corpus, args.device)
            print(f"{name}: {sum(len(d) for _, d in groups)} pairs ...", file=sys.stderr, flush=True)
            row = family_row(name, shape, path, groups, warm, args, info["matmul_flops"], info.get("int8_matmul_ops"),
                             calibration)  # fmt: skip
            rows.append(row)
            print(f"  speed-up {row['speedup']:.2f}x, memory ratio {row.get('memory_ratio', float('nan')):.1f}x, "
                  f"max abs diff {row['max_abs_diff']:.1e}", file=sys.stderr, flush=True)  # fmt: skip
    long_rows = long_list_rows(run, args) if args.long_list or args.only_long_list else []
    # The machine may be shared: the matmul is measured again at the end and the better figure is the limit.
    info["matmul_flops_end"] = matmul_flops(args.device, DTYPES[args.dtype])
    if info["matmul_flops_end"] > info["matmul_flops"]:
        scale = info["matmul_flops"] / info["matmul_flops_end"]
        info["matmul_flops"] = info["matmul_flops_end"]
        for row in rows:
            for side, figures in row.items():
                if isinstance(figures, dict) and "flop_fraction" in figures and "int8" not in side:
                    figures["flop_fraction"] *= scale
    print_report(info, rows, long_rows)
    print_backends(info, rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "families": rows, "long_list": long_rows}, indent=2))
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
