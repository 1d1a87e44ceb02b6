"""The parser's shared pieces: one-line argument errors, value types, and the model and window options.

Nothing here imports torch: ``--family`` is checked against ``rerank_plugins.families.family_names()``, which
imports neither torch nor transformers.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from rerank_plugins.cli.loading import CommandError, load_model


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


def _family(text: str) -> str:
    """``--family``: one of the registered families (built-in, registered or installed entry points; no torch)."""
    from rerank_plugins.families import family_names

    names = family_names()
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown family {text!r}; choose from {', '.join(names)}")
    return text


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id or local directory")
    parser.add_argument("--family", type=_family, help="force a scoring family (e.g. monot5; see docs/cli.md)")
    parser.add_argument("--preset", help="registry id whose settings to apply to a local copy")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: the best available)")
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        help="inputs per forward pass (default: 32 on a CPU; on a GPU, as many as fit a token budget)",
    )
    parser.add_argument("--max-length", type=_positive_int, help="tokens per input (default: the model's)")
    add_backend_arguments(parser)
    parser.add_argument(
        "--verbose", action="store_true", help="show the libraries' loading output (progress bars, load reports)"
    )


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--int8`` (rank, rerank-run and serve)."""
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "openvino"),
        default="torch",
        help="inference backend (onnx, openvino: the exported model beside the checkpoint, else exported at load)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="int8 inference on the CPU: torch dynamic int8, ONNX Runtime dynamic int8, OpenVINO static int8 "
        "(the int8 file beside the checkpoint, else quantized at load; see docs/performance.md)",
    )


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``CrossEncoder`` keyword arguments from the flags (``--int8`` on torch is ``quantize_int8`` after loading)."""
    kwargs: dict[str, Any] = {"backend": args.backend}
    if args.int8 and args.backend != "torch":
        kwargs["model_kwargs"] = {"int8": True}
    if args.device:
        kwargs["device"] = args.device
    if args.max_length:
        kwargs["max_length"] = args.max_length
    return kwargs


def _load(args: argparse.Namespace) -> Any:
    torch_int8 = args.int8 and args.backend == "torch"
    return load_model(
        args.model, args.family, args.preset, verbose=args.verbose, int8=torch_int8, **_model_kwargs(args)
    )


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
