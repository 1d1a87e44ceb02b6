"""``rerank-plugins serve``: the subcommand's arguments (``register``) and its handler (``cmd_serve``).

Nothing heavy is imported here: torch, FastAPI and uvicorn load inside :func:`cmd_serve`, so that
``rerank-plugins --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

API_KEY_ENV = "RERANK_PLUGINS_API_KEY"
DTYPES = ("auto", "fp32", "bf16", "fp16")


def register(commands: Any) -> None:
    """Add ``serve`` to the subparsers ``commands`` of the ``rerank-plugins`` parser."""
    from rerank_plugins.cli.options import add_backend_arguments

    serve = commands.add_parser(
        "serve",
        help="serve models over HTTP (Cohere, Jina and TEI rerank APIs)",
        description="Serve rerankers behind POST /v1/rerank (Cohere v1, Jina), /v2/rerank (Cohere v2) and /rerank "
        "(TEI), with dynamic batching, /health, /v1/models and /metrics.",
    )
    serve.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]ID",
        help="hub id or local directory, optionally served under NAME (repeat for several; the first is the default)",
    )
    serve.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="[NAME=]FAMILY",
        help="force a scoring family (for every model, or NAME's)",
    )
    serve.add_argument(
        "--preset",
        action="append",
        default=[],
        metavar="[NAME=]ID",
        help="registry id whose settings to apply to a local copy (for every model, or NAME's)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: the best available)")
    serve.add_argument("--dtype", choices=DTYPES, default="auto", help="weights' dtype (default: the checkpoint's)")
    serve.add_argument("--max-length", type=int, help="tokens per input (default: the model's)")
    add_backend_arguments(serve)
    serve.add_argument("--trust-remote-code", action="store_true", help="allow a checkpoint's own Python code")
    serve.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, else no key)",
    )
    limits = serve.add_argument_group("batching and limits")
    limits.add_argument(
        "--batch-size",
        type=int,
        help="pairs per forward pass (default: the model's own: 32 on a CPU, a token budget on a GPU)",
    )
    limits.add_argument("--max-batch-pairs", type=int, default=256, help="pairs per batch across requests")
    limits.add_argument("--max-batch-tokens", type=int, default=32768, help="estimated tokens per batch")
    limits.add_argument(
        "--max-batch-wait-ms",
        type=float,
        default=5.0,
        help="how long a batch waits for more requests (0: no dynamic batching)",
    )
    limits.add_argument("--max-queue-pairs", type=int, default=20000, help="queued pairs per model before 503s")
    limits.add_argument("--max-documents", type=int, default=1000, help="documents per request")
    limits.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="bytes per request body")
    limits.add_argument(
        "--max-pair-chars", type=int, default=64 * 1024 * 1024, help="characters of all pairs of a request (query x N)"
    )
    limits.add_argument("--request-timeout", type=float, default=60.0, help="seconds before a 504")
    scale = serve.add_argument_group("Ray Serve (--engine ray)")
    scale.add_argument(
        "--engine",
        choices=("uvicorn", "ray"),
        default="uvicorn",
        help="uvicorn: one process (the default); ray: replicas behind Ray Serve's proxy",
    )
    scale.add_argument(
        "--replicas",
        type=_replicas,
        default=(1, 1),
        metavar="N|MIN:MAX",
        help="replicas, each with every model: N, or MIN:MAX to autoscale between them (default: 1)",
    )
    scale.add_argument(
        "--target-ongoing-requests",
        type=float,
        default=2.0,
        help="autoscaling: requests in flight per replica that it aims at (default: 2)",
    )
    scale.add_argument(
        "--max-ongoing-requests", type=int, default=64, help="requests in flight per replica (default: 64)"
    )
    scale.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs reserved per replica (default: 1)")
    scale.add_argument(
        "--replica-gpus", type=float, help="GPUs reserved per replica (default: 1 with --device cuda, else 0)"
    )
    scale.add_argument(
        "--ray-address", help="an existing Ray cluster to deploy to (default: $RAY_ADDRESS, else a local one)"
    )
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(handler=cmd_serve)


def _replicas(text: str) -> tuple[int, int]:
    """``"N"`` -> (N, N); ``"MIN:MAX"`` -> (MIN, MAX), 1 <= MIN <= MAX."""
    low, sep, high = text.partition(":")
    try:
        bounds = (int(low), int(high) if sep else int(low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 1 <= MIN <= MAX, got {text!r}")
    return bounds


def _split(value: str) -> tuple[str | None, str]:
    """``"NAME=VALUE"`` -> (NAME, VALUE); ``"VALUE"`` -> (None, VALUE)."""
    name, sep, rest = value.partition("=")
    return (name, rest) if sep and name and rest else (None, value)


def _per_model(values: list[str], names: list[str], flag: str) -> dict[str, str]:
    """``--family``/``--preset`` values by served name: ``NAME=X`` for one model, ``X`` for all."""
    from rerank_plugins.cli import CommandError

    chosen: dict[str, str] = {}
    for value in values:
        name, setting = _split(value)
        if name is None:
            chosen.update(dict.fromkeys(names, setting))
        elif name in names:
            chosen[name] = setting
        else:
            raise CommandError(f"{flag} {value!r}: no --model is served as {name!r} (served: {', '.join(names)})")
    return chosen


def model_specs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(served name, hub id or path, CrossEncoder keyword arguments) of every ``--model``."""
    from rerank_plugins.cli import CommandError

    specs: list[tuple[str, str]] = []
    for value in args.model:
        name, source = _split(value)
        specs.append((name or source, source))
    names = [name for name, _ in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CommandError(f"--model: the name {duplicates[0]!r} is given twice; serve one as NAME=PATH")
    families = _per_model(args.family, names, "--family")
    presets = _per_model(args.preset, names, "--preset")
    common: dict[str, Any] = {"trust_remote_code": bool(args.trust_remote_code)}
    if args.device:
        common["device"] = args.device
    if args.max_length:
        common["max_length"] = args.max_length
    if args.backend != "torch":
        common["backend"] = args.backend
    if args.int8:
        common["int8"] = True
    if args.dtype != "auto":
        import torch

        common["model_kwargs"] = {
            "dtype": {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
        }
    result = []
    for name, source in specs:
        kwargs = dict(common, family=families.get(name), preset=presets.get(name))
        result.append((name, source, kwargs))
    return result


def load_models(specs: list[tuple[str, str, dict[str, Any]]], verbose: bool = False) -> dict[str, Any]:
    """Served name -> loaded ``rerank_plugins.CrossEncoder``, for the :func:`model_specs` of the flags."""
    from rerank_plugins.cli import load_model

    models = {}
    for name, source, kwargs in specs:
        kwargs = dict(kwargs)
        family, preset = kwargs.pop("family"), kwargs.pop("preset")
        models[name] = load_model(source, family, preset, verbose=verbose, **kwargs)
    return models


def build_settings(args: argparse.Namespace) -> Any:
    """:class:`~rerank_plugins.serve.app.ServeSettings` from the flags; a bad value is one clear line."""
    from rerank_plugins.cli import CommandError
    from rerank_plugins.serve.batching import BatchingOptions
    from rerank_plugins.serve.settings import ServeSettings

    try:
        batching = BatchingOptions(
            batch_size=args.batch_size,
            max_batch_pairs=args.max_batch_pairs,
            max_batch_tokens=args.max_batch_tokens,
            max_wait_ms=args.max_batch_wait_ms,
            max_queue_pairs=args.max_queue_pairs,
        )
        return ServeSettings(
            batching=batching,
            max_documents=args.max_documents,
            max_body_bytes=args.max_body_bytes,
            max_pair_chars=args.max_pair_chars,
            request_timeout=args.request_timeout,
            api_key=args.api_key or None,
        )
    except ValueError as error:
        raise CommandError(str(error).replace("_", "-")) from error


def cmd_serve(args: argparse.Namespace) -> int:
    """Load every model (in this thread, before serving), then run uvicorn until SIGINT/SIGTERM."""
    from rerank_plugins.cli import CommandError

    settings = build_settings(args)
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be between 1 and 65535, got {args.port}")
    if args.engine == "ray":
        return run_on_ray(args)
    try:
        import uvicorn

        from rerank_plugins.serve.app import create_app
    except ImportError as error:
        raise CommandError(f"serving needs the [serve] extra: pip install 'rerank-plugins[serve]' ({error})") from error
    models = load_models(model_specs(args))
    app = create_app(models, settings)
    for name, model in models.items():
        print(f"rerank-plugins: serving {name!r} ({model.family}) at http://{args.host}:{args.port}", file=sys.stderr)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=int(settings.request_timeout) + 5,
    )
    uvicorn.Server(config).run()
    return 0


def run_on_ray(args: argparse.Namespace) -> int:
    """Deploy the application to Ray Serve (a local Ray unless ``--ray-address``), print where it listens, and
    keep it up until SIGINT/SIGTERM; then delete the application, which lets each replica drain its requests."""
    import signal
    import threading

    from rerank_plugins.cli import CommandError

    try:
        from rerank_plugins.serve.ray_serve import (
            APPLICATION_NAME,
            DEPLOYMENT_NAME,
            build_application,
            import_serve,
            replica_failure,
        )

        serve = import_serve()
        application = build_application(args)
    except ImportError as error:
        raise CommandError(str(error)) from error
    specs = model_specs(args)
    address = args.ray_address or os.environ.get("RAY_ADDRESS")
    if not address:  # the replicas run on this machine: the mistakes they would find, found now, in a second
        from rerank_plugins.cli.loading import _check_device, _check_model_name

        _check_device(args.device)
        for _, source, _ in specs:
            _check_model_name(source)
    import ray

    level = args.log_level.upper()
    logging.getLogger("ray.serve").setLevel(level)
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=level,
        log_to_driver=args.log_level in ("info", "debug"),
    )
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs a SIGTERM handler of its own
        signal.signal(number, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port}, logging_config={"log_level": level})
        try:
            serve.run(application, name=APPLICATION_NAME, route_prefix="/", logging_config={"log_level": level})
        except RuntimeError as error:  # a replica could not start: its models did not load
            reason = replica_failure(serve) or str(error).splitlines()[0]
            raise CommandError(f"Ray Serve could not start the replicas: {reason}") from error
        status = serve.status().applications[APPLICATION_NAME].deployments[DEPLOYMENT_NAME]
        running = status.replica_states.get("RUNNING", 0)
        low, high = args.replicas
        bounds = f"{low}" if low == high else f"{low}..{high}, autoscaled"
        print(
            f"rerank-plugins: serving {', '.join(name for name, _, _ in specs)} on Ray Serve, "
            f"{running} replica(s) running ({bounds}), at http://{args.host}:{args.port}",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
        print("rerank-plugins: shutting down Ray Serve (replicas drain their requests)", file=sys.stderr, flush=True)
        # Deleting the application stops its replicas the graceful way (no new requests; those in flight finish,
        # up to graceful_shutdown_timeout_s) while the proxy still carries their answers; serve.shutdown() would
        # take the proxy down with the requests in it. Serve itself stays up on a cluster given by address.
        serve.delete(APPLICATION_NAME)
    finally:
        ray.shutdown()
    return 0
