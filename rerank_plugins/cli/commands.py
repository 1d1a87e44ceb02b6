"""The ``rank``, ``tiny-model`` and ``evaluate`` subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rerank_plugins.cli.loading import CommandError, quiet_loading
from rerank_plugins.cli.options import check_window_arguments, load_from_flags, rank_options_from_flags


def cmd_rank(args: argparse.Namespace) -> int:
    check_window_arguments(args)
    model = load_from_flags(args)
    options = rank_options_from_flags(args)
    results = model.rank(args.query, args.documents, top_k=args.top_k, batch_size=args.batch_size, **options)
    if args.json:
        rows = [
            {"rank": r + 1, "index": x["corpus_id"], "score": float(x["score"]), "text": args.documents[x["corpus_id"]]}
            for r, x in enumerate(results)
        ]
        json.dump({"model": args.model, "query": args.query, "results": rows}, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max(len(str(len(args.documents))), 5)
    print(f"{'rank':>4}  {'index':>{width}}  {'score':>12}  text")
    for rank, result in enumerate(results, start=1):
        text = args.documents[result["corpus_id"]].replace("\n", " ")
        print(f"{rank:>4}  {result['corpus_id']:>{width}}  {result['score']:>12.6f}  {text[:80]}")
    return 0


@contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 1 (the tokenizer trainer's blank lines) to /dev/null."""
    fd = 1  # what native code writes to, whatever sys.stdout is
    sys.stdout.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no descriptor 1 (a closed stdout): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from rerank_plugins.testing import FAMILY_BUILDERS, build_tiny_model

    if args.family not in FAMILY_BUILDERS:
        raise CommandError(f"unknown kind {args.family!r} for tiny-model --family; choose from "
                           f"{', '.join(FAMILY_BUILDERS)}")  # fmt: skip
    with _native_stdout_silenced(), quiet_loading(args.verbose):
        path = build_tiny_model(args.family, args.directory, seed=args.seed)
    print(path)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rerank_plugins import trec

    try:
        trec.ir_measures_module()
        qrels = trec.read_qrels(args.qrels)
        results: dict[str, dict[str, Any]] = {}
        for path in args.runs:
            run = trec.read_run(path)
            scores = trec.evaluate(qrels, run, args.metrics, run_queries_only=args.run_queries_only)
            judged = sum(1 for qid in run if qid in qrels)
            results[path] = {**scores, "judged_queries": judged}
            if judged == 0:
                print(f"rerank-plugins: warning: {path} has no query of {args.qrels}", file=sys.stderr)
    except (ImportError, ValueError) as error:  # InputError is a ValueError
        raise CommandError(str(error)) from error
    except OSError as error:
        raise CommandError(f"{error.filename}: {error.strerror}") from error
    if args.json:
        json.dump({"qrels": args.qrels, "judged_queries": len(qrels), "runs": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max(len("run"), *(len(path) for path in results))
    widths = [max(len(metric), 6) for metric in args.metrics]
    header = "  ".join(f"{metric:>{w}}" for metric, w in zip(args.metrics, widths, strict=True))
    print(f"{'run':<{width}}  {header}  queries")
    for path, row in results.items():
        cells = "  ".join(f"{row[metric]:>{w}.4f}" for metric, w in zip(args.metrics, widths, strict=True))
        print(f"{path:<{width}}  {cells}  {row['judged_queries']}/{len(qrels)}")
    return 0


def register_evaluate(commands: Any) -> None:
    from rerank_plugins.trec.evaluation import DEFAULT_METRICS

    parser = commands.add_parser("evaluate", help="evaluate TREC runs with ir-measures")
    parser.add_argument("--qrels", required=True, help="TREC qrels file")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="TREC run file(s)")
    parser.add_argument(
        "--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="M",
        help=f"ir-measures names, e.g. nDCG@10 'RR(rel=2)@10' R@1000 (default: {' '.join(DEFAULT_METRICS)})",
    )  # fmt: skip
    parser.add_argument(
        "--run-queries-only", action="store_true",
        help="average over the judged queries the run has (trec_eval without -c); by default a judged query "
        "the run lacks counts as 0 (trec_eval -c)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=cmd_evaluate)
