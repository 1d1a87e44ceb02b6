"""The ``rerank-plugins`` command (also ``python -m rerank_plugins``).

```text
rerank-plugins rank --model M --query Q DOC [DOC ...] [--json]
rerank-plugins rerank-run --model M --run IN [--topics T --corpus C] --output OUT [--depth N] [--resume]
rerank-plugins evaluate --qrels Q RUN [RUN ...] [--metrics M ...] [--json]
rerank-plugins tiny-model --family F DIR
```

Building the parser imports neither torch nor transformers, so that ``--help``, ``--version``, ``evaluate`` and
argument errors answer at once; the model's libraries are imported when a command loads a model. A user's
mistake is one line on stderr and exit status 2, checked before the model loads and before anything is scored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to the hub (or its proxy) before calling it out of reach."""


class CommandError(Exception):
    """An error to print as one line (no traceback), with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line; the usage is one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _family_names() -> tuple[str, ...] | None:
    """The registered family names, from a module that imports no torch; None where this version has none."""
    try:
        from rerank_plugins.families import family_names  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return tuple(family_names())


def _family(text: str) -> str:
    """``--family``: checked here when the names are known without torch, else when the model loads."""
    names = _family_names()
    if names is not None and text not in names:
        raise argparse.ArgumentTypeError(f"unknown family {text!r}; choose from {', '.join(names)}")
    return text


# -- loading a model --------------------------------------------------------------------------------------------
def _hub_unreachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """Why the hub at ``endpoint`` (or the proxy for it) takes no TCP connection, or None when it does."""
    import socket
    import urllib.parse
    import urllib.request

    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or "", proxy_url.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__


def _hub_options(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Hub options for loading ``name`` that fail fast when the hub is out of reach.

    huggingface_hub retries a refused or timed-out connection for more than a minute, one warning per retry, before
    it gives up. One short TCP probe decides instead: out of reach, a cached copy loads with
    ``local_files_only=True`` and anything else is one clear error.
    """
    if os.path.isdir(name) or kwargs.get("local_files_only"):
        return kwargs
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        return kwargs
    reason = _hub_unreachable(constants.ENDPOINT)
    if reason is None:
        return kwargs
    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid hub id
        cached = False
    if cached:
        print(f"rerank-plugins: the hub ({constants.ENDPOINT}) is out of reach ({reason}): using the cached copy "
              f"of {name}", file=sys.stderr)  # fmt: skip
        return {**kwargs, "local_files_only": True}
    raise CommandError(
        f"could not load model {name!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached ({reason}) "
        "and the model is not in the local cache. Pass a local directory (e.g. one made by `rerank-plugins "
        "tiny-model`, or a downloaded copy) and, for a published model, --preset with its hub id"
    )


def _check_model_name(name: str) -> None:
    """A local path must be a model directory; anything else is taken as a hub id."""
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        raise CommandError(f"{name} is a file; --model takes a hub id or a model directory")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise CommandError(
                f"{name} is a directory but not a model: it has no config.json (save one with save_pretrained, "
                "or build a tiny one with `rerank-plugins tiny-model`)"
            )
    elif looks_local:
        raise CommandError(f"{name}: no such model directory")


def _check_device(device: str | None) -> None:
    """``--device`` must name a device that this torch build has."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if parsed.type == "cpu":
        return
    backend = getattr(torch, parsed.type, None) if parsed.type != "mps" else torch.backends.mps
    if backend is None or not getattr(backend, "is_available", lambda: False)():
        build = f"torch {torch.__version__}" + (", a CPU-only build" if parsed.type == "cuda" and not torch.version.cuda
                                                else "")  # fmt: skip
        raise CommandError(f"--device {device}: this machine has no {parsed.type} device ({build}); use --device cpu")
    count = getattr(backend, "device_count", lambda: 1)()
    if parsed.index is not None and parsed.index >= count:
        raise CommandError(f"--device {device}: there are {count} {parsed.type} device(s), numbered from 0")


class _LoadReports(logging.Filter):
    """Drops transformers' load-report tables; keeps the count of weights that were not in the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.random: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
        rows = [[cell.strip() for cell in line.split("|")] for line in plain.splitlines() if "|" in line]
        keys = sorted(row[0] for row in rows if len(row) > 1 and row[1] in ("MISSING", "MISMATCH"))
        if keys:
            source = plain.splitlines()[0].replace(" LOAD REPORT from:", " from")
            self.random.append(f"{source}: {len(keys)} weight(s) not in the checkpoint, initialised at random "
                               f"({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")  # fmt: skip
        return False

    def report(self) -> None:
        for line in self.random:
            print(f"rerank-plugins: warning: {line}; --verbose shows transformers' report", file=sys.stderr)


@contextmanager
def quiet_loading(verbose: bool = False) -> Iterator[None]:
    """Quiet model loading: no transformers progress bars or load-report tables, unless ``verbose``.

    A report that says weights were initialised at random is summarised in one warning line instead.
    """
    if verbose:
        yield
        return
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # transformers' bars and the hub's
    reports = _LoadReports()
    loggers = [logging.getLogger(f"transformers.{name}") for name in ("modeling_utils", "modeling_layers")]
    for each in loggers:
        each.addFilter(reports)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(reports)
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars_off:
            hub_utils.disable_progress_bars()
        else:
            hub_utils.enable_progress_bars()
        reports.report()


def load_model(
    name: str, family: str | None = None, preset: str | None = None, *, verbose: bool = False, **kwargs: Any
) -> Any:
    """Load ``rerank_plugins.CrossEncoder`` quietly; a path that is not a model, or an unreachable hub, is one line."""
    _check_model_name(name)
    _check_device(kwargs.get("device"))
    kwargs = _hub_options(name, kwargs)
    from rerank_plugins import CrossEncoder

    try:
        with quiet_loading(verbose):
            return CrossEncoder(os.path.expanduser(name), family=family, preset=preset, **kwargs)
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
    parser.add_argument("--family", type=_family, help="force a scoring family (e.g. monot5; see docs/cli.md)")
    parser.add_argument("--preset", help="registry id whose settings to apply to a local copy")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: the best available)")
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="inputs per forward pass (default: 32)")
    parser.add_argument("--max-length", type=_positive_int, help="tokens per input (default: the model's)")
    parser.add_argument(
        "--verbose", action="store_true", help="show the libraries' loading output (progress bars, load reports)"
    )


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if args.device:
        kwargs["device"] = args.device
    if args.max_length:
        kwargs["max_length"] = args.max_length
    return kwargs


def _load(args: argparse.Namespace) -> Any:
    return load_model(args.model, args.family, args.preset, verbose=args.verbose, **_model_kwargs(args))


# -- options shared by rank and rerank-run ----------------------------------------------------------------------
def _add_window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window-size", type=_positive_int, help="score long documents in windows of this many tokens")
    parser.add_argument(
        "--window-stride", type=_positive_int, help="tokens between window starts (default: half the size)"
    )
    parser.add_argument(
        "--aggregate", choices=("max", "first", "mean"), default="max", help="window scores -> document score"
    )


def _check_window_arguments(args: argparse.Namespace) -> None:
    """Window flags that cannot work, refused before any file is read (``Window`` itself needs torch)."""
    if args.window_size is None:
        if args.window_stride is not None:
            raise CommandError("--window-stride needs --window-size")
        if args.aggregate != "max":
            raise CommandError("--aggregate needs --window-size")
    elif args.window_stride is not None and args.window_stride > args.window_size:
        raise CommandError(f"--window-stride {args.window_stride} is larger than --window-size {args.window_size}")


def _rank_options(args: argparse.Namespace) -> dict[str, Any]:
    """``rank`` options from the flags: ``iterative`` and the long-document ``window``."""
    options: dict[str, Any] = {"iterative": True} if args.iterative else {}
    if args.window_size:
        from rerank_plugins.windows import Window

        try:
            options["window"] = Window(size=args.window_size, stride=args.window_stride, aggregate=args.aggregate)
        except ValueError as error:
            raise CommandError(str(error)) from error
    return options


# -- rank and tiny-model ----------------------------------------------------------------------------------------
def cmd_rank(args: argparse.Namespace) -> int:
    _check_window_arguments(args)
    model = _load(args)
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


# -- rerank-run -------------------------------------------------------------------------------------------------
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

    model = _load(args)
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
        _load(args)  # raises its one-line message
        raise CommandError(str(error).splitlines()[0]) from error
    if args.iterative and not listwise:
        raise CommandError(f"--iterative is ListConRanker's inference; {args.model} is not listwise")
    if not ray.is_initialized():
        quiet = {} if args.verbose else {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}
        ray.init(address=args.ray_address, include_dashboard=False, runtime_env={"env_vars": quiet})
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
        **rank_kwargs,
    )


def cmd_rerank_run(args: argparse.Namespace) -> int:
    from rerank_plugins import trec

    try:
        _check_window_arguments(args)
        _check_model_name(args.model)
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
            _check_device(args.device)  # a Ray cluster's devices are the workers', not this machine's
        rank_kwargs = _rank_options(args)
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


# -- evaluate ---------------------------------------------------------------------------------------------------
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


# -- the parser -------------------------------------------------------------------------------------------------
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
    parser.add_argument(
        "--depth", type=_positive_int, default=100, help="candidates re-ranked per query (default: 100)"
    )
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
    parser.add_argument("--concurrency", type=_positive_int, default=1, help="ray: model actors (default: 1)")
    parser.add_argument("--num-gpus", type=_non_negative_float, default=0, help="ray: GPUs per actor (default: 0)")
    parser.add_argument("--ray-address", help="ray: cluster to join (default: RAY_ADDRESS, else a local Ray)")
    parser.set_defaults(handler=cmd_rerank_run)


def _register_evaluate(commands: Any) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; building it imports neither torch nor transformers."""
    from rerank_plugins import __version__

    parser = _Parser(prog="rerank-plugins", description="Published rerankers with their exact scores.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    rank = commands.add_parser("rank", help="rank documents for one query")
    _add_model_arguments(rank)
    rank.add_argument("--query", required=True)
    rank.add_argument("documents", nargs="+", metavar="DOC")
    rank.add_argument("--top-k", type=_positive_int, help="print only the best K")
    rank.add_argument("--iterative", action="store_true", help="ListConRanker's iterative inference")
    _add_window_arguments(rank)
    rank.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rank.set_defaults(handler=cmd_rank)

    tiny = commands.add_parser("tiny-model", help="build a tiny random model of a family, offline")
    tiny.add_argument(
        "--family", required=True, metavar="KIND", help="a family, or one of the other kinds of docs/cli.md"
    )
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--verbose", action="store_true", help="show the libraries' output while building")
    tiny.add_argument("directory")
    tiny.set_defaults(handler=cmd_tiny_model)

    _register_rerank_run(commands)
    _register_evaluate(commands)
    for register in EXTRA_COMMANDS:
        register(commands)
    return parser


EXTRA_COMMANDS: list[Any] = []
"""Functions that add more subcommands (``register(subparsers)``): run-file re-ranking, evaluation."""


@contextmanager
def _package_logging(verbose: bool) -> Iterator[None]:
    """With ``--verbose``, this package's INFO messages go to stderr too (warnings always do)."""
    if not verbose:
        yield
        return
    package = logging.getLogger("rerank_plugins")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _package_logging(getattr(args, "verbose", False)):
            return int(args.handler(args))
    except CommandError as error:
        print(f"rerank-plugins: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
