"""The ``rerank-plugins`` command (also ``python -m rerank_plugins``).

```text
rerank-plugins rank --model M --query Q DOC [DOC ...] [--json]
rerank-plugins rerank-run --model M --run IN [--topics T --corpus C] --output OUT [--depth N] [--resume]
rerank-plugins evaluate --qrels Q RUN [RUN ...] [--metrics M ...] [--json]
rerank-plugins tiny-model --family F DIR
```
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from rerank_plugins.registry import FAMILIES


class CommandError(Exception):
    """An error to print as one line (no traceback), with exit status 2."""


def load_model(name: str, family: str | None = None, preset: str | None = None, **kwargs: Any) -> Any:
    """Load ``rerank_plugins.CrossEncoder``; turn an unreachable hub id into one clear line."""
    from rerank_plugins import CrossEncoder

    try:
        return CrossEncoder(name, family=family, preset=preset, **kwargs)
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError) and ("family" in str(error) or "preset" in str(error)):
            raise CommandError(str(error).splitlines()[0]) from error
        reason = str(error).splitlines()[0].rstrip(". ") if str(error) else type(error).__name__
        raise CommandError(
            f"could not load model {name!r}: {reason}. "
            "If the hub is out of reach, pass a local directory (e.g. one made by `rerank-plugins tiny-model`, "
            "or a downloaded copy) and, for a published model, --preset with its hub id."
        ) from error


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id or local directory")
    parser.add_argument("--family", choices=FAMILIES, help="force a scoring family")
    parser.add_argument("--preset", help="registry id whose settings to apply to a local copy")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: the best available)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, help="tokens per input (default: the model's)")


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if args.device:
        kwargs["device"] = args.device
    if args.max_length:
        kwargs["max_length"] = args.max_length
    return kwargs


def _rank_options(args: argparse.Namespace) -> dict[str, Any]:
    """``rank`` options from the flags: ``iterative`` and the long-document ``window``."""
    from rerank_plugins.windows import Window

    options: dict[str, Any] = {"iterative": True} if args.iterative else {}
    if args.window_size:
        try:
            options["window"] = Window(size=args.window_size, stride=args.window_stride, aggregate=args.aggregate)
        except ValueError as error:
            raise CommandError(str(error)) from error
    return options


def _add_window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window-size", type=int, help="score long documents in windows of this many tokens")
    parser.add_argument("--window-stride", type=int, help="tokens between window starts (default: half the size)")
    parser.add_argument(
        "--aggregate", choices=("max", "first", "mean"), default="max", help="window scores -> document score"
    )


def cmd_rank(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.family, args.preset, **_model_kwargs(args))
    options = _rank_options(args)
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


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from rerank_plugins.testing import build_tiny_model

    path = build_tiny_model(args.family, args.directory, seed=args.seed)
    print(path)
    return 0


class _HeldWarnings(logging.Filter):
    """Holds the model's warnings (one per scored query, e.g. truncation) so that they do not break the progress bar."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.records.append(record)
            return False
        return True

    def report(self) -> None:
        if self.records:
            print(
                f"rerank-plugins: warning: the model warned {len(self.records)} time(s) during the run; the first: "
                f"{self.records[0].getMessage()}",
                file=sys.stderr,
            )


def _read_jobs(args: argparse.Namespace) -> list[Any]:
    """Read the run and its texts, check that they fit together, and plan one job per query."""
    from rerank_plugins import trec

    if trec.run_format(args.run) == "rank_llm":
        if args.topics or args.corpus:
            raise CommandError(
                f"{args.run} is a rank_llm-style JSON file with its own texts: leave out --topics/--corpus"
            )
        topics, run, corpus = trec.read_rank_llm_json(args.run)
        topics_name = corpus_name = str(args.run)
    else:
        if not (args.topics and args.corpus):
            raise CommandError(
                "a TREC run needs --topics (qid<TAB>query) and --corpus (JSONL or TSV) for its texts, "
                "or pass a rank_llm-style JSON file (query + hits with content) as --run"
            )
        run = trec.read_run(args.run)
        topics = trec.read_topics(args.topics)
        wanted = {docid for ranking in run.values() for docid, _ in ranking[: args.depth]}
        corpus = trec.read_corpus(args.corpus, wanted)
        topics_name, corpus_name = str(args.topics), str(args.corpus)
    return trec.plan(
        run, topics, corpus, depth=args.depth, keep_tail=args.keep_tail, skip_missing=args.skip_missing,
        topics_name=topics_name, corpus_name=corpus_name,
    )  # fmt: skip


def _local_results(args: argparse.Namespace, jobs: list[Any], rank_kwargs: dict[str, Any]) -> Any:
    from rerank_plugins import trec

    model = load_model(args.model, args.family, args.preset, **_model_kwargs(args))
    if args.iterative and not model.is_listwise:
        raise CommandError(f"--iterative is ListConRanker's inference; {args.model} is {model.family!r}")
    return trec.rerank_jobs(model, jobs, batch_size=args.batch_size, **rank_kwargs)


def _ray_results(args: argparse.Namespace, jobs: list[Any], rank_kwargs: dict[str, Any]) -> Any:
    try:
        from rerank_plugins import ray as ray_engine

        ray = ray_engine.import_ray()
    except ImportError as error:
        raise CommandError(str(error)) from error
    model_kwargs = {"family": args.family, "preset": args.preset, **_model_kwargs(args)}
    model_kwargs = {key: value for key, value in model_kwargs.items() if value is not None}
    try:
        listwise = ray_engine.is_listwise(args.model, model_kwargs)
    except (OSError, ValueError) as error:
        load_model(args.model, args.family, args.preset, **_model_kwargs(args))  # raises its one-line message
        raise CommandError(str(error).splitlines()[0]) from error
    if args.iterative and not listwise:
        raise CommandError(f"--iterative is ListConRanker's inference; {args.model} is not listwise")
    if not ray.is_initialized():
        ray.init(address=args.ray_address, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # one bar: ours, per query
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray_engine.rerank_jobs(
        jobs,
        args.model,
        model_kwargs=model_kwargs,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        num_gpus=args.num_gpus,
        listwise=listwise,
        rank_kwargs=rank_kwargs,
    )


def cmd_rerank_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rerank_plugins import trec

    try:
        tag = trec.check_tag(args.tag or trec.default_tag(args.model))
        jobs = _read_jobs(args)
        writer = trec.RunWriter(args.output, tag, {job.qid: job.size for job in jobs}, resume=args.resume)
    except trec.InputError as error:
        raise CommandError(str(error)) from error
    except OSError as error:
        raise CommandError(f"{error.filename}: {error.strerror}") from error
    todo = [job for job in jobs if job.qid not in writer.done]
    if todo:
        rank_kwargs = _rank_options(args)
        engine = _ray_results if args.engine == "ray" else _local_results
        results = engine(args, todo, rank_kwargs)
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="query", desc="rerank-run", disable=args.quiet)
        held = _HeldWarnings()
        model_logger = logging.getLogger("rerank_plugins.cross_encoder")
        model_logger.addFilter(held)
        try:
            for qid, ranking in results:
                writer.add(qid, ranking)
                bar.update()
        except KeyboardInterrupt:
            bar.close()
            print(
                f"rerank-plugins: interrupted; {len(writer.done)} of {len(jobs)} queries are saved "
                f"({writer.partial}): run the same command with --resume to finish",
                file=sys.stderr,
            )
            return 130
        except Exception:
            bar.close()
            print(
                f"rerank-plugins: stopped by the error below; {len(writer.done)} of {len(jobs)} queries are saved "
                f"({writer.partial}): once it is fixed, run the same command with --resume",
                file=sys.stderr,
            )
            raise
        finally:
            bar.close()
            model_logger.removeFilter(held)
            held.report()
    writer.finish([job.qid for job in jobs])
    resumed = f", {writer.resumed} of them resumed" if args.resume else ""
    print(f"wrote {len(writer.done)} queries to {args.output}{resumed}", file=sys.stderr)
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


def _register_rerank_run(commands: Any) -> None:
    parser = commands.add_parser(
        "rerank-run",
        help="re-rank a TREC run (or a rank_llm JSON file) and write a TREC run",
        description="Re-rank the top --depth candidates of every query of a run. Finished queries are saved as "
        "they come (OUT.partial); OUT is written atomically at the end. --resume continues an interrupted run.",
    )
    _add_model_arguments(parser)
    parser.add_argument("--run", required=True, metavar="IN", help="TREC run, or rank_llm-style JSON with texts")
    parser.add_argument("--topics", help="TSV qid<TAB>query (for a TREC run)")
    parser.add_argument("--corpus", help="JSONL {docid, text} or TSV docid<TAB>text, optionally .gz (for a TREC run)")
    parser.add_argument("--output", required=True, metavar="OUT", help="the re-ranked TREC run to write")
    parser.add_argument("--depth", type=int, default=100, help="candidates re-ranked per query (default: 100)")
    parser.add_argument(
        "--keep-tail", action="store_true", help="keep candidates below --depth after the re-ranked ones"
    )
    parser.add_argument("--tag", help="run tag (default: the model's name)")
    parser.add_argument("--resume", action="store_true", help="keep the queries already in OUT / OUT.partial")
    parser.add_argument("--skip-missing", action="store_true", help="warn about ids without text instead of failing")
    parser.add_argument("--iterative", action="store_true", help="ListConRanker's iterative inference")
    _add_window_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="where to score (default: local)")
    parser.add_argument("--concurrency", type=int, default=1, help="ray: model actors (default: 1)")
    parser.add_argument("--num-gpus", type=float, default=0, help="ray: GPUs per actor (default: 0)")
    parser.add_argument("--ray-address", help="ray: cluster to join (default: RAY_ADDRESS, else a local Ray)")
    parser.set_defaults(handler=cmd_rerank_run)


def _register_evaluate(commands: Any) -> None:
    from rerank_plugins.trec import DEFAULT_METRICS

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


def build_parser() -> argparse.ArgumentParser:
    from rerank_plugins import __version__
    from rerank_plugins.testing import FAMILY_BUILDERS

    parser = argparse.ArgumentParser(prog="rerank-plugins", description="Published rerankers with their exact scores.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    rank = commands.add_parser("rank", help="rank documents for one query")
    _add_model_arguments(rank)
    rank.add_argument("--query", required=True)
    rank.add_argument("documents", nargs="+", metavar="DOC")
    rank.add_argument("--top-k", type=int)
    rank.add_argument("--iterative", action="store_true", help="ListConRanker's iterative inference")
    _add_window_arguments(rank)
    rank.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rank.set_defaults(handler=cmd_rank)

    tiny = commands.add_parser("tiny-model", help="build a tiny random model of a family, offline")
    tiny.add_argument("--family", required=True, choices=list(FAMILY_BUILDERS), help="family or architecture")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("directory")
    tiny.set_defaults(handler=cmd_tiny_model)

    _register_rerank_run(commands)
    _register_evaluate(commands)
    from rerank_plugins.serve.cli import register as register_serve  # no torch/FastAPI until `serve` runs

    register_serve(commands)
    for register in EXTRA_COMMANDS:
        register(commands)
    return parser


EXTRA_COMMANDS: list[Any] = []
"""Functions that add more subcommands (``register(subparsers)``): run-file re-ranking, evaluation."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except CommandError as error:
        print(f"rerank-plugins: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
