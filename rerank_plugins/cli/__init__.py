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

The subcommands live in ``commands`` (rank, tiny-model, evaluate), ``rerank_run`` and ``serve``; ``loading`` loads
models and ``options`` holds the shared arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rerank_plugins.cli.commands import cmd_evaluate, cmd_rank, cmd_tiny_model, register_evaluate
from rerank_plugins.cli.loading import CommandError, load_model, quiet_loading
from rerank_plugins.cli.options import CommandParser, add_model_arguments, add_window_arguments, positive_int
from rerank_plugins.cli.rerank_run import cmd_rerank_run, register_rerank_run
from rerank_plugins.cli.serve import register as register_serve

__all__ = [
    "EXTRA_COMMANDS",
    "CommandError",
    "build_parser",
    "cmd_evaluate",
    "cmd_rank",
    "cmd_rerank_run",
    "cmd_tiny_model",
    "load_model",
    "main",
    "quiet_loading",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; building it imports neither torch nor transformers."""
    from rerank_plugins import __version__

    parser = CommandParser(prog="rerank-plugins", description="Published rerankers with their exact scores.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    rank = commands.add_parser("rank", help="rank documents for one query")
    add_model_arguments(rank)
    rank.add_argument("--query", required=True)
    rank.add_argument("documents", nargs="+", metavar="DOC")
    rank.add_argument("--top-k", type=positive_int, help="print only the best K")
    rank.add_argument("--iterative", action="store_true", help="ListConRanker's iterative inference")
    add_window_arguments(rank)
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

    register_rerank_run(commands)
    register_evaluate(commands)
    register_serve(commands)  # no torch or FastAPI until `serve` runs
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or an argument mistake (already printed on one line)
        return done.code if isinstance(done.code, int) else 2
    try:
        with _package_logging(getattr(args, "verbose", False)):
            return int(args.handler(args))
    except CommandError as error:
        print(f"rerank-plugins: error: {error}", file=sys.stderr)
        return 2
