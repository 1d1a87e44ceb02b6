"""The ``rerank-plugins`` command (also ``python -m rerank_plugins``).

rerank-plugins rank --model M --query Q DOC [DOC ...] [--json]
rerank-plugins tiny-model --family F DIR
"""

from __future__ import annotations

import argparse
import json
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
        raise CommandError(
            f"could not load model {name!r}: {str(error).splitlines()[0] if str(error) else type(error).__name__}. "
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


def cmd_rank(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.family, args.preset, **_model_kwargs(args))
    options: dict[str, Any] = {"iterative": True} if args.iterative else {}
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
    rank.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rank.set_defaults(handler=cmd_rank)

    tiny = commands.add_parser("tiny-model", help="build a tiny random model of a family, offline")
    tiny.add_argument("--family", required=True, choices=list(FAMILY_BUILDERS), help="family or architecture")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("directory")
    tiny.set_defaults(handler=cmd_tiny_model)

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
