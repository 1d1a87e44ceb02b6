"""``rerank-plugins serve``: the flags (made from the table of ``rerank_plugins.serve.options``) become a
:class:`~rerank_plugins.serve.ServeConfig`, which ``rerank_plugins.serve`` runs.

Nothing heavy is imported to build the parser or to check the flags: a mistake that needs no model (an unknown
family or preset, a bad number, a port in use) is one line at once, before torch, FastAPI or a model loads.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from rerank_plugins.cli.loading import CommandError
from rerank_plugins.serve.options import OPTIONS, Option, OptionError

GROUPS = {
    "models": None,
    "server": None,
    "limits": "limits",
    "queue": "the queue and the forward batches",
    "ray": "Ray Serve (--engine ray)",
}


def flag(name: str) -> str:
    """The flag of an option: ``max_documents`` -> ``--max-documents``."""
    return "--" + name.replace("_", "-")


def _argument_type(option: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = option.name
    return parse


def register(commands: Any) -> None:
    """Add ``serve`` to the subparsers ``commands`` of the ``rerank-plugins`` parser."""
    parser = commands.add_parser(
        "serve",
        help="serve models over HTTP (Cohere, Jina, TEI and vLLM APIs)",
        description="Serve rerankers behind POST /v1/rerank (Cohere v1, Jina), /v2/rerank (Cohere v2), /rerank "
        "(TEI) and /score (vLLM), with /health, /v1/models and /metrics.",
    )
    groups = {name: parser.add_argument_group(title) if title else parser for name, title in GROUPS.items()}
    for option in OPTIONS:
        names = [flag(option.name), *(flag(alias) for alias in option.aliases)]
        default = None if option.default in ((), None, False) else option.default
        help_text = (
            option.help if default is None or "default" in option.help else f"{option.help} (default: {default})"
        )
        if option.aliases:
            help_text += f"; also {', '.join(names[1:])}, its older name"
        kwargs: dict[str, Any] = {"dest": option.name, "help": help_text}
        if option.flag:
            kwargs.update(action="store_true", default=None)
        else:
            kwargs.update(type=_argument_type(option), metavar=option.metavar, default=None)
            if option.repeated:
                kwargs["action"] = "append"
        if option.name == "model":
            kwargs["required"] = True
        groups[option.group].add_argument(*names, **kwargs)
    parser.set_defaults(handler=cmd_serve)


def config_from_flags(args: argparse.Namespace) -> Any:
    """The :class:`~rerank_plugins.serve.ServeConfig` of the parsed flags; a mistake is one :class:`CommandError`
    line naming the flag."""
    from rerank_plugins.serve.config import ServeConfig

    values = {option.name: getattr(args, option.name, None) for option in OPTIONS}
    try:
        return ServeConfig.from_options({name: value for name, value in values.items() if value is not None})
    except OptionError as error:
        raise CommandError(f"{flag(error.option)}: {error.problem}") from error


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the flags and the port, load every model, then serve until SIGINT/SIGTERM."""
    from rerank_plugins.loading import ModelSourceError

    config = config_from_flags(args)
    try:
        if config.engine == "ray":
            return _serve_on_ray(config)
        return _serve_with_uvicorn(config)
    except ModelSourceError as error:
        raise CommandError(str(error)) from error


def _serve_with_uvicorn(config: Any) -> int:
    try:
        import fastapi  # noqa: F401  (the [serve] extra: checked before anything loads)

        from rerank_plugins.serve import server
    except ImportError as error:
        raise CommandError(f"serving needs the [serve] extra: pip install 'rerank-plugins[serve]' ({error})") from error
    from rerank_plugins.loading import check_model_source

    for model in config.models:  # a path that is not a model is one line before torch loads
        check_model_source(model.source)
    try:  # taken before the models load (seconds), and kept: nobody can take it meanwhile
        sock = server.bind(config.host, config.port)
    except OSError as error:
        raise CommandError(_port_taken(config, error)) from None
    try:
        from rerank_plugins.serve.app import create_app

        app = create_app(config)
        for name, model in app.state.service.models.items():
            print(f"rerank-plugins: serving {name!r} ({model.family}) at http://{config.host}:{config.port}",
                  file=sys.stderr)  # fmt: skip
        server.run(app, sock)
    finally:
        sock.close()
    return 0


def _serve_on_ray(config: Any) -> int:
    from rerank_plugins.serve import ray_serve

    if not (config.ray.address or os.environ.get("RAY_ADDRESS")):  # a local Ray: its proxy will listen here
        _check_port(config)
    try:
        ray_serve.run(config)
    except (ImportError, ray_serve.RayServeError) as error:
        raise CommandError(str(error)) from error
    return 0


def _check_port(config: Any) -> None:
    """A one-line error when nothing can listen on the config's host and port (a port in use)."""
    import socket

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.host, config.port))
        except OSError as error:
            raise CommandError(_port_taken(config, error)) from None


def _port_taken(config: Any, error: OSError) -> str:
    return f"--port {config.port}: cannot listen on {config.host}:{config.port} ({error.strerror or error})"
