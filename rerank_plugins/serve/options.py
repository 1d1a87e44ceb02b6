"""The serve options, in one table: name, value parser, default, help.

The command line's ``rerank-plugins serve`` flags are made from this table (``rerank_plugins.cli.serve``), and
:meth:`~rerank_plugins.serve.config.ServeConfig.from_options` reads a mapping of the same names (the Ray Serve
builder's ``args``: a config file's typed values, or ``serve run``'s ``key=value`` strings) with the same
parsers. So an option means, defaults to and refuses the same thing wherever it is given.

Nothing here imports torch or FastAPI: building the command line's parser stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

API_KEY_ENV = "RERANK_PLUGINS_API_KEY"
"""The environment variable that holds the API key when no ``api_key`` option is given."""
DTYPES = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("torch", "onnx", "openvino")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENGINES = ("uvicorn", "ray")


class OptionError(ValueError):
    """A serve option with a value that cannot be; ``option`` is its name (``max_documents``)."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


# -- value parsers: a str (a flag, ``key=value``) or an already typed value (a config file) -> the value --------
def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a whole number, got {value!r}")


def positive_int(value: Any) -> int:
    number = _whole(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def port_number(value: Any) -> int:
    number = _whole(value)
    if not 0 < number < 65536:
        raise ValueError(f"must be between 1 and 65535, got {number}")
    return number


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def positive_number(value: Any) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return number


def non_negative_number(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {value!r}")
    return number


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"expected true or false, got {value!r}")


def one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    parse.__name__ = "choice"
    return parse


def replicas(value: Any) -> tuple[int, int]:
    """``N`` -> (N, N); ``MIN:MAX`` -> (MIN, MAX), 1 <= MIN <= MAX."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = f"{value[0]}:{value[1]}"
    text = _text(value)
    low, sep, high = text.partition(":")
    try:
        bounds = (int(low), int(high) if sep else int(low))
    except ValueError:
        raise ValueError(f"expected N or MIN:MAX, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise ValueError(f"expected 1 <= MIN <= MAX, got {text!r}")
    return bounds


def named(value: Any) -> tuple[str | None, str]:
    """``"NAME=VALUE"`` -> (NAME, VALUE); ``"VALUE"`` -> (None, VALUE). Neither part may be empty."""
    if isinstance(value, tuple) and len(value) == 2:  # already read (a flag's value, read again)
        value = value[1] if value[0] is None else f"{value[0]}={value[1]}"
    text = _text(value).strip()
    name, sep, rest = text.partition("=")
    if not sep:
        if not text:
            raise ValueError("is empty")
        return None, text
    if not name.strip() or not rest.strip():
        raise ValueError(f"{text!r}: NAME=VALUE needs both a name and a value")
    return name.strip(), rest.strip()


def family_name(value: Any) -> tuple[str | None, str]:
    """``[NAME=]FAMILY``: FAMILY one of the registered families (no torch is imported to check it)."""
    from rerank_plugins.families import family_names

    name, family = named(value)
    families = family_names()
    if family not in families:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(families)}")
    return name, family


def preset_name(value: Any) -> tuple[str | None, str]:
    """``[NAME=]ID``: ID a hub id of the registry (``rerank_plugins.registry``)."""
    from rerank_plugins.registry import check_preset

    name, preset = named(value)
    check_preset(preset)
    return name, preset


@dataclass(frozen=True)
class Option:
    """One serve option: its name (``max_documents``; the flag is ``--max-documents``), how a value is read, its
    default, and what it does."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    group: str
    metavar: str | None = None
    repeated: bool = False
    """Given several times (``--model a --model b``; a list in a config file)."""
    flag: bool = False
    """A bare flag on the command line (``--trust-remote-code``); true or false elsewhere."""
    aliases: tuple[str, ...] = ()
    """Older names, still read."""


OPTIONS: tuple[Option, ...] = (
    # models
    Option(
        "model",
        named,
        (),
        "hub id or local directory, optionally served under NAME (repeat for several; the first is the default)",
        "models",
        "[NAME=]ID",
        repeated=True,
    ),
    Option(
        "family",
        family_name,
        (),
        "force a scoring family (for every model, or NAME's)",
        "models",
        "[NAME=]FAMILY",
        repeated=True,
    ),
    Option(
        "preset",
        preset_name,
        (),
        "registry id whose settings to apply to a local copy (for every model, or NAME's)",
        "models",
        "[NAME=]ID",
        repeated=True,
    ),
    Option("device", _text, None, "cpu, cuda, cuda:1, mps ... (default: the best available)", "models"),
    Option(
        "dtype",
        one_of(*DTYPES),
        "auto",
        "weights' dtype (default: the checkpoint's)",
        "models",
        "{" + ",".join(DTYPES) + "}",
    ),
    Option("max_length", positive_int, None, "tokens per input (default: the model's)", "models"),
    Option("trust_remote_code", boolean, False, "allow a checkpoint's own Python code", "models", flag=True),
    Option(
        "backend",
        one_of(*BACKENDS),
        "torch",
        "inference backend (onnx, openvino: the exported model beside the checkpoint, else exported at load)",
        "models",
        "{" + ",".join(BACKENDS) + "}",
    ),
    Option(
        "int8",
        boolean,
        False,
        "int8 inference on the CPU: torch dynamic int8, ONNX Runtime dynamic int8, OpenVINO static int8",
        "models",
        flag=True,
    ),
    # the server
    Option("host", _text, "127.0.0.1", "address to listen on (default: 127.0.0.1, this machine)", "server"),
    Option("port", port_number, 8000, "port to listen on (default: 8000)", "server"),
    Option(
        "api_key", _text, None, f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, else no key)", "server"
    ),
    Option(
        "log_level", one_of(*LOG_LEVELS), "info", "the server's log level", "server", "{" + ",".join(LOG_LEVELS) + "}"
    ),
    # limits
    Option("max_documents", positive_int, 1000, "documents per request", "limits"),
    Option("max_body_bytes", positive_int, 8 * 1024 * 1024, "bytes per request body", "limits"),
    Option(
        "max_pair_chars", positive_int, 64 * 1024 * 1024, "characters of all pairs of a request (query x N)", "limits"
    ),
    Option("request_timeout", positive_number, 60.0, "seconds a request may wait for its scores, then 504", "limits"),
    Option(
        "read_timeout",
        positive_number,
        30.0,
        "seconds to receive a request's headers, and its body, then 408",
        "limits",
    ),
    Option(
        "max_connections",
        positive_int,
        None,
        "open connections, at most; past it, 503 before anything else "
        "(default: what the process's open-file limit allows)",
        "limits",
    ),
    # the queue and the forward batches
    Option(
        "max_call_pairs",
        positive_int,
        256,
        "pairs of concurrent requests that share one scoring call",
        "queue",
        aliases=("max_batch_pairs",),
    ),
    Option(
        "max_wait_ms",
        non_negative_number,
        5.0,
        "how long a call waits for more requests (0: each request alone)",
        "queue",
        aliases=("max_batch_wait_ms",),
    ),
    Option("max_queue_pairs", positive_int, 20000, "pairs queued per model before 503s", "queue"),
    Option(
        "batch_size",
        positive_int,
        None,
        "pairs per forward pass (default: the model's own batching: 32 on a CPU, a token budget on an accelerator)",
        "queue",
    ),
    Option(
        "max_batch_tokens",
        positive_int,
        32768,
        "padded tokens per forward pass on an accelerator, when --batch-size is not given",
        "queue",
    ),
    # Ray Serve
    Option(
        "engine",
        one_of(*ENGINES),
        "uvicorn",
        "what runs the server: uvicorn, one process (the default); ray, replicas behind Ray Serve's proxy",
        "ray",
        "{" + ",".join(ENGINES) + "}",
    ),
    Option(
        "replicas",
        replicas,
        (1, 1),
        "replicas, each with every model: N, or MIN:MAX to autoscale between them (default: 1)",
        "ray",
        "N|MIN:MAX",
    ),
    Option(
        "target_ongoing_requests",
        positive_number,
        2.0,
        "autoscaling: requests in flight per replica that it aims at (default: 2)",
        "ray",
    ),
    Option("max_ongoing_requests", positive_int, 64, "requests in flight per replica (default: 64)", "ray"),
    Option("replica_cpus", non_negative_number, 1.0, "CPUs reserved per replica (default: 1)", "ray"),
    Option(
        "replica_gpus",
        non_negative_number,
        None,
        "GPUs reserved per replica (default: 1 with --device cuda, else 0)",
        "ray",
    ),
    Option(
        "ray_address",
        _text,
        None,
        "an existing Ray cluster to deploy to (default: $RAY_ADDRESS, else a local one)",
        "ray",
    ),
)

OPTION_NAMES: dict[str, Option] = {alias: option for option in OPTIONS for alias in (option.name, *option.aliases)}
"""Every name an option is read under (its aliases too) -> the option."""


def read_options(values: dict[str, Any]) -> dict[str, Any]:
    """The given options parsed, by canonical name; aliases resolved; an unknown name or a bad value is an
    :class:`OptionError` naming it."""
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        option = OPTION_NAMES.get(name)
        if option is None:
            raise OptionError(name, f"not a serve option (the options: {', '.join(o.name for o in OPTIONS)})")
        if option.name in parsed:
            raise OptionError(option.name, f"given twice (also as {name})")
        items = list(value) if isinstance(value, (list, tuple)) and option.repeated else value
        try:
            if option.repeated:
                parsed[option.name] = tuple(
                    option.parse(item) for item in (items if isinstance(items, list) else [items])
                )
            else:
                if isinstance(value, list):
                    raise ValueError(f"takes one value, got a list ({value!r})")
                parsed[option.name] = None if value is None else option.parse(value)
        except ValueError as error:
            raise OptionError(option.name, str(error)) from None
    return parsed
