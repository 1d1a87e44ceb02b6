"""The parser's shared pieces: one-line argument errors, value types, and the model and window options.

Nothing here imports torch: ``--family`` is checked against ``rerank_plugins.families.family_names()``, which
imports neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any, NoReturn

from rerank_plugins.cli.loading import CommandError, load_model


class CommandParser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one ``--help`` away), unknown options reported first.

    argparse checks the required options before it looks at the ones it does not know, so a misspelt
    ``--modle x`` would be reported as "``--model`` is required". Here a first pass with nothing required finds
    the unknown options and reports them (with the closest known spelling); the real parse follows.
    """

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        required = [action for action in self._actions if action.required]
        for action in required:
            action.required = False
        try:
            _, extras = super().parse_known_args(args, argparse.Namespace())
        finally:
            for action in required:
                action.required = True
        unknown = [arg for arg in extras if arg.startswith("-") and len(arg) > 1 and not arg[1:2].isdigit()]
        if unknown:
            known = [option for action in self._actions for option in action.option_strings]
            close = difflib.get_close_matches(unknown[0].split("=")[0], known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
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


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id or local directory")
    parser.add_argument("--family", type=_family, help="force a scoring family (e.g. monot5; see docs/cli.md)")
    parser.add_argument("--preset", help="registry id whose settings to apply to a local copy")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: the best available)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="inputs per forward pass (default: 32 on a CPU; on a GPU, as many as fit a token budget)",
    )
    parser.add_argument("--max-length", type=positive_int, help="tokens per input (default: the model's)")
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


def model_kwargs_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """``CrossEncoder`` keyword arguments from the flags (``--int8`` on torch is ``quantize_int8`` after loading)."""
    kwargs: dict[str, Any] = {"backend": args.backend}
    if args.int8 and args.backend != "torch":
        kwargs["model_kwargs"] = {"int8": True}
    if args.device:
        kwargs["device"] = args.device
    if args.max_length:
        kwargs["max_length"] = args.max_length
    return kwargs


def load_from_flags(args: argparse.Namespace) -> Any:
    torch_int8 = args.int8 and args.backend == "torch"
    return load_model(
        args.model, args.family, args.preset, verbose=args.verbose, int8=torch_int8, **model_kwargs_from_flags(args)
    )


# -- options shared by rank and rerank-run ----------------------------------------------------------------------
def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window-size", type=positive_int, help="score long documents in windows of this many tokens")
    parser.add_argument(
        "--window-stride", type=positive_int, help="tokens between window starts (default: half the size)"
    )
    parser.add_argument(
        "--aggregate", choices=("max", "first", "mean"), default="max", help="window scores -> document score"
    )


def check_window_arguments(args: argparse.Namespace) -> None:
    """Window flags that cannot work, refused before any file is read (``Window`` itself needs torch)."""
    if args.window_size is None:
        if args.window_stride is not None:
            raise CommandError("--window-stride needs --window-size")
        if args.aggregate != "max":
            raise CommandError("--aggregate needs --window-size")
    elif args.window_stride is not None and args.window_stride > args.window_size:
        raise CommandError(f"--window-stride {args.window_stride} is larger than --window-size {args.window_size}")


def rank_options_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """``rank`` options from the flags: ``iterative`` and the long-document ``window``."""
    options: dict[str, Any] = {"iterative": True} if args.iterative else {}
    if args.window_size:
        from rerank_plugins.windows import Window

        try:
            options["window"] = Window(size=args.window_size, stride=args.window_stride, aggregate=args.aggregate)
        except ValueError as error:
            raise CommandError(str(error)) from error
    return options
