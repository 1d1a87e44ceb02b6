"""Scoring families: what a family is (:class:`FamilySpec`), the one registry of them, and the one resolver.

A family is one module file that ends with ``FAMILY = FamilySpec(...)``. The four built-in families live in
``rerank_plugins/scoring/``; a package of your own registers more with :func:`register_family` (in-process) or
an entry point in the group ``rerank_plugins.families`` (every process: the CLI, Ray workers), and its family then
works everywhere a built-in one does. Everything that asks "which family, is it listwise, which activation"
asks this module, and :func:`resolve_family` is the only place a checkpoint's family is decided.

Importing this module imports neither torch nor transformers: the CLI lists families without them.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from typing import TYPE_CHECKING, Any

from rerank_plugins.backends.options import split_backend_options
from rerank_plugins.hub import NO_HUB_OPTIONS, HubOptions
from rerank_plugins.registry import BUILTIN_FAMILIES, RegistryEntry, check_preset, lookup

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
    backends: tuple[str, ...] = ("torch",)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip():
            raise ValueError(f"A family name must be a non-empty str without surrounding spaces, got {self.name!r}.")
        if (self.module is None) == (self.build is None):
            raise ValueError(f"Family {self.name!r}: give exactly one of module= and build=.")
        if isinstance(self.activation, str) and self.activation not in ACTIVATIONS:
            raise ValueError(f"Family {self.name!r}: unknown activation {self.activation!r}; use one of {ACTIVATIONS}.")
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


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {point.name: point for point in metadata.entry_points(group=ENTRY_POINT_GROUP)}


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
            spec = point.load()
            if not isinstance(spec, FamilySpec) or spec.name != name:
                raise TypeError(f"Entry point {point.value!r} ({ENTRY_POINT_GROUP}) must name FamilySpec {name!r}.")
        _loaded[name] = spec
        return spec


def all_families() -> list[FamilySpec]:
    """Every family, imported, in :func:`family_names` order."""
    return [get_family(name) for name in family_names()]


def class_ref(cls: type) -> str:
    """``"package.module.Class"``: how ``modules.json`` names a module class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def module_classes() -> dict[str, type[nn.Module]]:
    """``"package.module.Class"`` -> class, for every module class a family's saved models may hold."""
    return {class_ref(cls): cls for spec in all_families() for cls in spec.saved_classes}


def _family_of_class(ref: str) -> str | None:
    """The family whose saved models hold the module class ``ref`` (None: no family's)."""
    for spec in all_families():
        if ref in {class_ref(cls) for cls in spec.saved_classes}:
            return spec.name
    return None


def family_of_modules(modules: Sequence[nn.Module]) -> str | None:
    """The family whose classes the loaded modules are (None: none of ours, e.g. a plain ST model)."""
    if not len(modules):
        return None
    first = type(modules[0])
    from sentence_transformers.base.modules import Transformer

    return _family_of_class(class_ref(first)) or ("sequence-classification" if issubclass(first, Transformer) else None)


# -- resolution -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolution:
    """Which family scores a checkpoint, and why.

    ``source`` is ``"family="``, ``"preset="``, ``"registry"``, ``"checkpoint"`` (recognised from its files),
    ``"saved"`` (a saved sentence-transformers model: its ``modules.json`` decides) or ``"none"`` (no model).
    """

    family: str | None
    entry: RegistryEntry | None
    source: str

    @property
    def spec(self) -> FamilySpec | None:
        return get_family(self.family) if self.family is not None else None

    @property
    def listwise(self) -> bool:
        spec = self.spec
        return spec is not None and spec.listwise


def resolve_family(
    name_or_path: str | None,
    *,
    family: str | None = None,
    preset: str | None = None,
    hub: HubOptions = NO_HUB_OPTIONS,
) -> Resolution:
    """Decide a checkpoint's family, in order: ``family=``, ``preset=``, the registry, the checkpoint itself.

    The checkpoint decides by its files: a saved ``modules.json`` reloads as saved; otherwise each family's
    ``recognize`` is asked (ListConRanker files, T5 -> monoT5, a causal LM -> query likelihood, a trained
    sequence-classification head). A checkpoint none recognises is a ``ValueError`` naming the ``family=`` to
    pass: it is never given a randomly initialised head.
    """
    entry = check_preset(preset) if preset is not None else None
    if family is not None:
        check_family(family)
    if entry is None and name_or_path is not None:
        entry = lookup(name_or_path)
        if entry is not None and family is not None and entry.family != family:
            entry = None  # an explicit family overrides the registry
    if entry is not None and entry.needs_remote_code and not hub.trust_remote_code:
        raise ValueError(
            f"{name_or_path!r} only loads with its authors' remote code. Read that code, then pass "
            "trust_remote_code=True to load it."
        )
    if family is not None:
        return Resolution(family, entry, "family=")
    if entry is not None:
        return Resolution(entry.family, entry, "preset=" if preset is not None else "registry")
    if name_or_path is None:
        return Resolution(None, None, "none")
    info = CheckpointInfo(name_or_path, hub)
    saved = info.read_json("modules.json")
    if saved:
        return Resolution(_saved_family(saved), None, "saved")
    for spec in all_families():
        if spec.recognize is not None and spec.recognize(info):
            return Resolution(spec.name, None, "checkpoint")
    raise ValueError(
        f"{name_or_path!r} ({', '.join(info.architectures) or info.config.model_type}) has no scoring head that "
        f"rerank-plugins recognises, and a random one would score noise. Pass family= one of "
        f"{', '.join(family_names())} (e.g. family='query-likelihood' for a causal LM fine-tuned for query "
        "generation), or fine-tune it as a sequence classifier first."
    )


def fallback_tokenizer(name_or_path: str, entry: RegistryEntry | None, hub: HubOptions) -> str | None:
    """The registry's tokenizer source when the checkpoint ships no tokenizer of its own (DistillRankNET)."""
    if (
        entry is None
        or entry.fallback_tokenizer is None
        or CheckpointInfo(name_or_path, hub).has_file("tokenizer_config.json")
    ):
        return None
    logger.info("%s ships no tokenizer; using %s as its authors do.", name_or_path, entry.fallback_tokenizer)
    return entry.fallback_tokenizer


def _saved_family(modules_json: list[dict[str, Any]]) -> str | None:
    """The family of a saved model, from the class of its first module in ``modules.json``."""
    first = modules_json[0].get("type", "") if modules_json else ""
    return _family_of_class(first) or ("sequence-classification" if first.endswith("Transformer") else None)
