"""Scoring families: what a family is (:class:`FamilySpec`) and the one registry of them.

A family is one module file that ends with ``FAMILY = FamilySpec(...)``. The four built-in families live in
``rerank_plugins/scoring/``; a package of your own registers more with :func:`register_family` (in-process) or
an entry point in the group ``rerank_plugins.families`` (every process: the CLI, Ray workers), and its family then
works everywhere a built-in one does. Everything that asks "which family, is it listwise, which activation"
asks this module; ``rerank_plugins.resolution.resolve_family`` is the only place a checkpoint's family is decided.

Importing this module imports neither torch nor transformers: the CLI lists families without them.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from typing import TYPE_CHECKING, Any

from rerank_plugins.backends.options import split_backend_options
from rerank_plugins.hub import NO_HUB_OPTIONS, HubOptions
from rerank_plugins.registry import BUILTIN_FAMILIES

if TYPE_CHECKING:
    from torch import nn
    from transformers import PretrainedConfig

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "rerank_plugins.families"
"""Entry points of this group name a ``FamilySpec`` object (``"my_package.module:FAMILY"``)."""

BACKENDS = ("torch", "onnx", "openvino")
"""What ``CrossEncoder(..., backend=...)`` takes, as in sentence-transformers."""

ACTIVATIONS = {"sigmoid": "Sigmoid", "identity": "Identity", "log-sigmoid": "LogSigmoid"}
"""Activation names a family or registry entry may use -> the ``torch.nn`` class."""


@dataclass(frozen=True)
class LoadRequest:
    """Everything a family's builder needs to build its modules for one checkpoint."""

    name_or_path: str
    hub: HubOptions = NO_HUB_OPTIONS
    options: Mapping[str, Any] = field(default_factory=dict)  # family_options over the registry's options
    tokenizer_name_or_path: str | None = None  # when the checkpoint ships no tokenizer
    model_kwargs: dict[str, Any] | None = None
    processor_kwargs: dict[str, Any] | None = None
    config_kwargs: dict[str, Any] | None = None
    backend: str = "torch"

    def transformer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of sentence-transformers' ``Transformer`` for this checkpoint: it takes ``cache_dir``
        itself, and every other hub option goes to each of its ``from_pretrained`` calls."""
        shared = {key: value for key, value in self.hub.pretrained_kwargs().items() if key != "cache_dir"}
        return {
            "cache_dir": self.hub.cache_folder,
            "model_kwargs": {**shared, **(self.model_kwargs or {})},
            "processor_kwargs": {**shared, **(self.processor_kwargs or {})},
            "config_kwargs": {**shared, **(self.config_kwargs or {})},
            "backend": self.backend,
            "tokenizer_name_or_path": self.tokenizer_name_or_path,
        }


class CheckpointInfo:
    """What a recogniser may look at: the checkpoint's files and its Hugging Face config (read once, lazily)."""

    def __init__(self, name_or_path: str, hub: HubOptions = NO_HUB_OPTIONS) -> None:
        self.name_or_path, self.hub = name_or_path, hub

    def has_file(self, filename: str) -> bool:
        from sentence_transformers.util import load_file_path

        return load_file_path(self.name_or_path, filename, **self.hub.file_kwargs()) is not None

    def read_json(self, filename: str) -> Any:
        """A JSON file of the checkpoint, or None when it has none."""
        from sentence_transformers.util import load_file_path

        path = load_file_path(self.name_or_path, filename, **self.hub.file_kwargs())
        if path is None:
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    @cached_property
    def config(self) -> PretrainedConfig:
        """The ``config.json`` as ``transformers`` reads it (an ``OSError`` if there is none)."""
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.name_or_path, **self.hub.pretrained_kwargs())

    @property
    def architectures(self) -> list[str]:
        return list(getattr(self.config, "architectures", None) or [])


@dataclass(frozen=True)
class TinyModel:
    """A tiny random model of a family, built offline for tests (``rerank_plugins.testing.build_tiny_model(kind)``).

    Attributes:
        kind: its name for ``build_tiny_model`` and ``rerank-plugins tiny-model --family``.
        description: what it is, in a few words (the architecture, what it stands for).
        builder: ``"package.module:function"`` building it from a ``rerank_plugins.testing.BuildSpec``; imported
            only when a model is built, so that loading a family never imports test code.
        sizes: its tiny sizes (config keys); ``build_model(kind, sizes=...)`` overrides them.
        detected: it loads without ``family=`` (its checkpoint is recognised); else tests pass the family.
        options: further builder options (e.g. ``{"num_labels": 2}``).
    """

    kind: str
    description: str
    builder: str
    sizes: Mapping[str, Any] = field(default_factory=dict)
    detected: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


InferenceMode = Callable[[Callable[[list[int]], Sequence[float]], int], list[float]]
"""A family's inference over one request: ``mode(score_list, count)`` -> one final score per document."""


@dataclass(frozen=True)
class FamilySpec:
    """One scoring family.

    Attributes:
        name: what ``family=`` takes, e.g. ``"monot5"``.
        module: a :class:`~rerank_plugins.scoring.base.ScoringModule` subclass, built as
            ``module(path, **options, tokenizer_name_or_path=..., model_kwargs=..., ..., hub=HubOptions)``.
        build: instead of ``module``: a function from a :class:`LoadRequest` to the list of modules.
        activation: what ``predict`` applies to the raw score by default: a name of :data:`ACTIVATIONS`, a
            zero-argument factory of a module, or None for sentence-transformers' own default.
        listwise: a document's score depends on the other documents of its list: ``predict`` then scores each
            query's documents as one list (never cut into batches, threads or workers).
        recognize: ``recognize(CheckpointInfo) -> bool``: this family's checkpoints, for detection without
            ``family=`` (built-in families are tried first).
        int8_targets: ``int8_targets(model) -> [nn.Module]``: the sub-modules whose Linear layers
            ``quantize_int8`` may touch; None when int8 is not supported.
        module_classes: further module classes that saved models of this family contain (they reload without
            ``trust_remote_code``).
        tiny_models: the tiny offline models that stand for this family in tests (:class:`TinyModel`).
        modes: the family's own inference modes, by name (``rank(..., iterative=True)`` asks for ``"iterative"``):
            ``mode(score_list, count) -> scores``, where ``score_list(indices)`` scores those documents of the
            request as one list; the request core calls it in place of scoring the request once.
        fallback: ``recognize`` is asked only after every other family (entry points included) declined: a
            catch-all such as ``logit-score`` for any causal LM.
        detected_note: a warning logged once at load when recognition alone chose this family (no ``family=``,
            ``preset=`` or registry entry); ``{name}`` and ``{architecture}`` are filled in.
        backends: the inference backends its module can run (``CrossEncoder(..., backend=...)``): ``"torch"``,
            and ``"onnx"`` / ``"openvino"`` for a module that exports its score graph (``rerank_plugins.backends``).
            Any other backend is refused when the model loads.
    """

    name: str
    module: type[nn.Module] | None = None
    build: Callable[[LoadRequest], Sequence[nn.Module]] | None = None
    activation: str | Callable[[], nn.Module] | None = "sigmoid"
    listwise: bool = False
    recognize: Callable[[CheckpointInfo], bool] | None = None
    int8_targets: Callable[[Any], list[nn.Module]] | None = None
    module_classes: tuple[type[nn.Module], ...] = ()
    modes: Mapping[str, InferenceMode] = field(default_factory=dict)
    tiny_models: tuple[TinyModel, ...] = ()
    fallback: bool = False
    detected_note: str | None = None
    backends: tuple[str, ...] = ("torch",)

    def __post_init__(self) -> None:
        """Every field checked now, so that a wrong spec fails where it is written, not at the first load."""
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip():
            raise ValueError(f"A family name must be a non-empty str without surrounding spaces, got {self.name!r}.")
        if (self.module is None) == (self.build is None):
            raise ValueError(f"Family {self.name!r}: give exactly one of module= and build=.")
        if self.module is not None and not is_module_class(self.module):
            raise TypeError(
                f"Family {self.name!r}: module= must be an nn.Module subclass (a ScoringModule), got {self.module!r}."
            )
        for name in ("build", "recognize", "int8_targets"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"Family {self.name!r}: {name}= must be a function, got {value!r}.")
        if isinstance(self.activation, str):
            if self.activation not in ACTIVATIONS:
                raise ValueError(
                    f"Family {self.name!r}: unknown activation {self.activation!r}; use one of {ACTIVATIONS}."
                )
        elif self.activation is not None and not callable(self.activation):
            raise TypeError(
                f"Family {self.name!r}: activation= must be a name, a factory or None, got {self.activation!r}."
            )
        if not isinstance(self.listwise, bool):
            raise TypeError(f"Family {self.name!r}: listwise= must be True or False, got {self.listwise!r}.")
        if not isinstance(self.fallback, bool):
            raise TypeError(f"Family {self.name!r}: fallback= must be True or False, got {self.fallback!r}.")
        if self.detected_note is not None and not isinstance(self.detected_note, str):
            raise TypeError(f"Family {self.name!r}: detected_note= must be a str or None, got {self.detected_note!r}.")
        if not isinstance(self.module_classes, tuple) or not all(map(is_module_class, self.module_classes)):
            raise TypeError(f"Family {self.name!r}: module_classes= must be a tuple of nn.Module subclasses.")
        if not isinstance(self.modes, Mapping) or not all(map(callable, self.modes.values())):
            raise TypeError(f"Family {self.name!r}: modes= must map names to functions.")
        if not isinstance(self.tiny_models, tuple) or not all(isinstance(t, TinyModel) for t in self.tiny_models):
            raise TypeError(f"Family {self.name!r}: tiny_models= must be a tuple of TinyModel.")
        unknown = [backend for backend in self.backends if backend not in BACKENDS]
        if unknown or "torch" not in self.backends:
            raise ValueError(f"Family {self.name!r}: backends must include 'torch' and be among {BACKENDS}.")

    def check_backend(self, backend: Any) -> None:
        """A ``ValueError`` at load for a backend this family cannot run: never a silent fallback to PyTorch."""
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; use one of {', '.join(map(repr, BACKENDS))}.")
        if backend not in self.backends:
            raise ValueError(
                f"The {self.name} family cannot run on backend={backend!r} (its backends: "
                f"{', '.join(self.backends)}); load it with backend='torch'."
            )

    def build_modules(self, request: LoadRequest) -> list[nn.Module]:
        if self.build is not None:
            return list(self.build(request))
        assert self.module is not None
        backend, model_kwargs = split_backend_options(request.backend, request.model_kwargs)
        module = self.module(
            request.name_or_path,
            **dict(request.options),
            tokenizer_name_or_path=request.tokenizer_name_or_path,
            model_kwargs=model_kwargs,
            processor_kwargs=request.processor_kwargs,
            config_kwargs=request.config_kwargs,
            hub=request.hub,
        )
        if backend.backend != "torch":  # the module exports (or finds) its score graph: ScoringModule.start_backend
            module.start_backend(request.name_or_path, backend, request.hub)  # type: ignore[attr-defined,operator]
        return [module]

    def make_activation(self) -> nn.Module | None:
        """The default activation module, or None for sentence-transformers' own default."""
        return None if self.activation is None else make_activation(self.activation)

    @property
    def saved_classes(self) -> tuple[type[nn.Module], ...]:
        """The module classes that this family's saved models hold."""
        return ((self.module,) if self.module is not None else ()) + self.module_classes


def is_module_class(value: Any) -> bool:
    """True for a subclass of ``torch.nn.Module`` (torch is imported here: whoever makes a spec has it)."""
    from torch import nn

    return isinstance(value, type) and issubclass(value, nn.Module)


def make_activation(activation: str | Callable[[], nn.Module]) -> nn.Module:
    """An activation module from a name of :data:`ACTIVATIONS` or a factory."""
    if callable(activation):
        return activation()
    from torch import nn

    return getattr(nn, ACTIVATIONS[activation])()


# -- the registry ---------------------------------------------------------------------------------------------
_registered: dict[str, FamilySpec] = {}
_loaded: dict[str, FamilySpec] = {}  # built-in and entry-point families, imported on first use
_lock = threading.RLock()


def register_family(spec: FamilySpec, *, replace: bool = False) -> FamilySpec:
    """Make ``spec`` available as ``family=spec.name`` in this process; returns it.

    A name already taken (built-in or registered) is a ``ValueError`` unless ``replace=True`` (built-in
    names can never be replaced).
    """
    if not isinstance(spec, FamilySpec):
        raise TypeError(f"register_family takes a FamilySpec, got {type(spec).__name__}.")
    with _lock:
        if spec.name in BUILTIN_FAMILIES:
            raise ValueError(f"{spec.name!r} is a built-in family; choose another name.")
        if spec.name in _registered and not replace and _registered[spec.name] is not spec:
            raise ValueError(f"A family {spec.name!r} is already registered; pass replace=True to replace it.")
        _registered[spec.name] = spec
    return spec


def unregister_family(name: str) -> None:
    """Remove a family registered with :func:`register_family` (built-in ones stay)."""
    with _lock:
        _registered.pop(name, None)
        _loaded.pop(name, None)


_broken: dict[str, str] = {}  # entry-point name -> why it failed to load (warned about once, then skipped)
_shadowing: set[str] = set()  # entry points named like a built-in family, warned about once


def describe_entry_point(point: metadata.EntryPoint) -> str:
    """``"name = module:attr" (group, from distribution)``: what a user can find in their environment."""
    dist = getattr(point, "dist", None)
    source = f", from {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {point.name} = {point.value} ({ENTRY_POINT_GROUP}{source})"


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed entry points of the group, but those named like a built-in family (warned about, ignored)."""
    points = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name in BUILTIN_FAMILIES:
            key = f"{point.name}={point.value}"
            if key not in _shadowing:
                _shadowing.add(key)
                warnings.warn(
                    f"Ignoring the {describe_entry_point(point)}: {point.name!r} is a built-in family, which an "
                    "entry point cannot replace. Rename the entry point to use that family.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            continue
        points[point.name] = point
    return points


def load_entry_point(point: metadata.EntryPoint) -> FamilySpec:
    """The ``FamilySpec`` an entry point names; an ``ImportError`` naming the entry point if it cannot be had."""
    try:
        spec = point.load()
    except Exception as error:
        raise ImportError(
            f"The family {point.name!r} could not be loaded from its {describe_entry_point(point)}: "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(spec, FamilySpec) or spec.name != point.name:
        raise ImportError(
            f"The {describe_entry_point(point)} must name a FamilySpec called {point.name!r}, got {spec!r:.80}."
        )
    return spec


def family_names() -> tuple[str, ...]:
    """Every family name: built-in first, then registered, then installed entry points (nothing is imported)."""
    names = [*BUILTIN_FAMILIES, *_registered, *_entry_points()]
    return tuple(dict.fromkeys(names))


def check_family(name: Any) -> str:
    """Return ``name`` if it names a family, else raise a ``ValueError`` that lists them."""
    if not isinstance(name, str) or name not in family_names():
        raise ValueError(f"Unknown family {name!r}. Valid families: {', '.join(family_names())}.")
    return name


def get_family(name: str) -> FamilySpec:
    """The ``FamilySpec`` of ``name`` (imports a built-in or entry-point family on first use)."""
    with _lock:
        if name in _registered:
            return _registered[name]
        if name in _loaded:
            return _loaded[name]
        if name in BUILTIN_FAMILIES:
            spec = importlib.import_module(BUILTIN_FAMILIES[name]).FAMILY
        else:
            point = _entry_points().get(name)
            if point is None:
                check_family(name)  # raises, listing the valid names
                raise AssertionError  # pragma: no cover
            spec = load_entry_point(point)
        _loaded[name] = spec
        return spec


def all_families() -> list[FamilySpec]:
    """Every family that loads, in :func:`family_names` order.

    A third-party entry point that fails to load (an import error in its package, a wrong object) is skipped
    with one warning naming it and the error: one broken plugin must not stop every other model from loading.
    Asking for that family by name (``family=``) still raises the error.
    """
    specs = []
    for name in family_names():
        if name in _broken:
            continue
        try:
            specs.append(get_family(name))
        except ImportError as error:
            if name in BUILTIN_FAMILIES or name in _registered:
                raise
            with _lock:
                _broken[name] = str(error)
            warnings.warn(f"{error} (skipped: every other family still works)", RuntimeWarning, stacklevel=2)
    return specs


_MOVED_TO_RESOLUTION = ("Resolution", "resolve_family", "fallback_tokenizer", "class_ref", "module_classes",
                        "family_of_class", "family_of_modules")  # fmt: skip


def __getattr__(name: str) -> Any:
    """``rerank_plugins.families.resolve_family`` and ``Resolution``: deprecated aliases of their new home,
    :mod:`rerank_plugins.resolution` (imported by name: that module imports this one)."""
    if name in _MOVED_TO_RESOLUTION:
        moved = f"rerank_plugins.families.{name} moved to rerank_plugins.resolution.{name}"
        warnings.warn(moved, DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("rerank_plugins.resolution"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
