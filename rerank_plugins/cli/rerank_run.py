"""The ``rerank-run`` subcommand: re-rank a whole run, locally or on Ray, saving each query as it finishes.

Every input is checked (files, output, options, model path, device) before the model loads.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from rerank_plugins.cli.loading import CommandError, check_device, check_model_source
from rerank_plugins.cli.options import (
    add_model_arguments,
    add_window_arguments,
    check_window_arguments,
    load_from_flags,
    model_kwargs_from_flags,
    non_negative_float,
    positive_int,
    rank_options_from_flags,
)


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
        if not run:
            raise CommandError(f"{args.run}: no query with hits: nothing to re-rank")
    else:
        if not (args.topics and args.corpus):
            raise CommandError(
                "a TREC run needs --topics (qid<TAB>query) and --corpus (JSONL or TSV) for its texts, "
                "or pass a rank_llm-style JSON file (query + hits with content) as --run"
            )
        run = trec.read_run(args.run)
        if not run:
            raise CommandError(f"{args.run}: the run is empty: nothing to re-rank")
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

    model = load_from_flags(args)
    if args.iterative and not model.is_listwise:
        raise CommandError(f"--iterative is ListConRanker's inference; {args.model} is {model.family!r}")
    return trec.rerank_jobs(model, jobs, batch_size=args.batch_size, **rank_kwargs)


def _ray_results(args: argparse.Namespace, jobs: list[Any], rank_kwargs: dict[str, Any]) -> Any:
    try:
        from rerank_plugins import ray as ray_engine

        ray = ray_engine.import_ray()
    except ImportError as error:
        raise CommandError(str(error)) from error
    if args.int8 and args.backend == "torch":
        raise CommandError("--int8 with --engine ray needs --backend onnx or openvino (torch's int8 is in-process)")
    model_kwargs = {"family": args.family, "preset": args.preset, **model_kwargs_from_flags(args)}
    model_kwargs = {key: value for key, value in model_kwargs.items() if value is not None}
    try:
        listwise = ray_engine.is_listwise(args.model, model_kwargs)
    except (OSError, ValueError) as error:
        load_from_flags(args)  # raises its one-line message
        raise CommandError(str(error).splitlines()[0]) from error
    if args.iterative and not listwise:
        raise CommandError(f"--iterative is ListConRanker's inference; {args.model} is not listwise")
    if not ray.is_initialized():
        quiet = {} if args.verbose else {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}
        ray.init(address=args.ray_address, include_dashboard=False, runtime_env={"env_vars": quiet})
    ray.data.DataContext.get_current().enable_progress_bars = False  # one bar: ours, per query
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray_engine.rerank_jobs(
        args.model,
        jobs,
        model_kwargs=model_kwargs,
        batch_size=args.batch_size,  # None: the model's own batching policy
        concurrency=args.concurrency,
        num_gpus=args.num_gpus,
        listwise=listwise,
        rank_kwargs=rank_kwargs,
    )


def cmd_rerank_run(args: argparse.Namespace) -> int:
    from rerank_plugins import trec

    try:
        check_window_arguments(args)
        check_model_source(args.model)
        tag = trec.check_tag(args.tag or trec.default_tag(args.model))
        trec.check_writable(args.output)
        jobs = _read_jobs(args)
        writer = trec.RunWriter(args.output, tag, {job.qid: job.size for job in jobs}, resume=args.resume)
    except trec.InputError as error:
        raise CommandError(str(error)) from error
    except OSError as error:
        raise CommandError(f"{error.filename}: {error.strerror}") from error
    todo = [job for job in jobs if job.qid not in writer.done]
    if todo:
        if args.engine == "local":
            check_device(args.device)  # a Ray cluster's devices are the workers', not this machine's
        rank_kwargs = rank_options_from_flags(args)
        engine = _ray_results if args.engine == "ray" else _local_results
        results = engine(args, todo, rank_kwargs)
        if not _write_results(args, writer, jobs, todo, results):
            return 130
    writer.finish([job.qid for job in jobs])
    resumed = f", {writer.resumed} of them resumed" if args.resume else ""
    print(f"wrote {len(writer.done)} queries to {args.output}{resumed}", file=sys.stderr)
    return 0


def _write_results(args: argparse.Namespace, writer: Any, jobs: list[Any], todo: list[Any], results: Any) -> bool:
    """Save each query as it comes, with a progress bar; False after Ctrl-C, with how to resume."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="query", desc="rerank-run", disable=args.quiet)
    held = _HeldWarnings()
    model_logger = logging.getLogger("rerank_plugins.core.ranking")
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
        return False
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
    return True


def register_rerank_run(commands: Any) -> None:
    parser = commands.add_parser(
        "rerank-run",
        help="re-rank a TREC run (or a rank_llm JSON file) and write a TREC run",
        description="Re-rank the top --depth candidates of every query of a run. Finished queries are saved as "
        "they come (OUT.partial); OUT is written atomically at the end. --resume continues an interrupted run.",
    )
    add_model_arguments(parser)
    parser.add_argument("--run", required=True, metavar="IN", help="TREC run, or rank_llm-style JSON with texts")
    parser.add_argument("--topics", help="TSV qid<TAB>query (for a TREC run)")
    parser.add_argument("--corpus", help="JSONL {docid, text} or TSV docid<TAB>text, optionally .gz (for a TREC run)")
    parser.add_argument("--output", required=True, metavar="OUT", help="the re-ranked TREC run to write")
    parser.add_argument("--depth", type=positive_int, default=100, help="candidates re-ranked per query (default: 100)")
    parser.add_argument(
        "--keep-tail", action="store_true", help="keep candidates below --depth after the re-ranked ones"
    )
    parser.add_argument("--tag", help="run tag (default: the model's name)")
    parser.add_argument("--resume", action="store_true", help="keep the queries already in OUT / OUT.partial")
    parser.add_argument("--skip-missing", action="store_true", help="warn about ids without text instead of failing")
    parser.add_argument("--iterative", action="store_true", help="ListConRanker's iterative inference")
    add_window_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="where to score (default: local)")
    parser.add_argument("--concurrency", type=positive_int, default=1, help="ray: model actors (default: 1)")
    parser.add_argument("--num-gpus", type=non_negative_float, default=0, help="ray: GPUs per actor (default: 0)")
    parser.add_argument("--ray-address", help="ray: cluster to join (default: RAY_ADDRESS, else a local Ray)")
    parser.set_defaults(handler=cmd_rerank_run)
