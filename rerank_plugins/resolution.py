"""Which family scores a checkpoint: :func:`resolve_family`, the only place that decides it, and its errors.

In order: ``family=``, ``preset=``, the registry (hub ids), then the checkpoint itself (a saved model reloads as
saved; otherwise each family's ``recognize``). A checkpoint that no family can score without a randomly
initialised head (a bare encoder, a sentence-transformers embedding model) is refused with an error naming
``family=``; a preset or family that does not fit the checkpoint's architecture is a
:class:`FamilyMismatchError` naming both. Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rerank_plugins.families import (
    CheckpointInfo,
    FamilySpec,
    all_families,
    check_family,
    family_names,
    get_family,
)
from rerank_plugins.hub import NO_HUB_OPTIONS, HubOptions
from rerank_plugins.registry import RegistryEntry, check_preset, lookup

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)


# -- which family a loaded or saved model's modules belong to ------------------------------------------------
def class_ref(cls: type) -> str:
    """``"package.module.Class"``: how ``modules.json`` names a module class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def module_classes() -> dict[str, type[nn.Module]]:
    """``"package.module.Class"`` -> class, for every module class a family's saved models may hold."""
    return {class_ref(cls): cls for spec in all_families() for cls in spec.saved_classes}


def family_of_class(ref: str) -> str | None:
    """The family whose saved models hold the module class ``ref`` (None: no family's)."""
    for spec in all_families():
        if ref in {class_ref(cls) for cls in spec.saved_classes}:
            return spec.name
    return None


def family_of_modules(modules: Sequence[nn.Module]) -> str | None:
    """The family whose classes the loaded modules are (None: none of ours, e.g. a plain ST model).

    sentence-transformers' own ``Transformer`` is a causal LM's (``logit-score``) when a ``LogitScore`` reads its
    logits, else a sequence classifier's.
    """
    if not len(modules):
        return None
    first = type(modules[0])
    from sentence_transformers.base.modules import Transformer

    found = family_of_class(class_ref(first))
    if found is None and issubclass(first, Transformer):  # sentence-transformers' own modules
        return family_of_saved_types([class_ref(type(module)) for module in modules])
    return found


LOGIT_SCORE_CLASS = "LogitScore"
"""sentence-transformers' causal-LM head module: a saved model holding it is a ``logit-score`` model."""


def family_of_saved_types(types: Sequence[str]) -> str:
    """The family of a model made of sentence-transformers' own modules (their class paths, in order)."""
    if any(ref.rsplit(".", 1)[-1] == LOGIT_SCORE_CLASS for ref in types):
        return "logit-score"
    return "sequence-classification"


# -- resolution -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """Which family scores a checkpoint, and why.

    ``source`` is ``"family="``, ``"preset="``, ``"registry"``, ``"checkpoint"`` (recognised from its files),
    ``"saved"`` (a saved sentence-transformers model: its ``modules.json`` decides) or ``"none"`` (no model).
    ``note`` is the family's ``detected_note`` when recognition alone chose it (logged once at load).
    """

    family: str | None
    entry: RegistryEntry | None
    source: str
    preset: str | None = None  # the preset= given, when it decided
    note: str | None = None

    @property
    def chosen_by(self) -> str:
        """How the family was chosen, for messages: "preset 'x' (family 'y')", "family='y'", ..."""
        if self.source == "preset=":
            return f"preset {self.preset!r} (family {self.family!r})"
        if self.source == "family=":
            return f"family={self.family!r}"
        if self.source == "registry":
            return f"the registry's family {self.family!r}"
        return f"the family {self.family!r}"

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
    ``recognize`` is asked (ListConRanker files, T5 -> monoT5, a trained sequence-classification head), the
    fallbacks last (any other causal LM -> ``logit-score``, as sentence-transformers scores it). A checkpoint none
    recognises is a ``ValueError`` naming the ``family=`` to pass: it is never given a randomly initialised head.
    """
    entry = check_preset(preset) if preset is not None else None
    if family is not None:
        check_family(family)
    if entry is None and name_or_path is not None:
        entry = lookup(name_or_path)
        if entry is not None and family is not None and entry.family != family:
            entry = None  # an explicit family overrides the registry
    if entry is not None and entry.refusal is not None:
        raise ValueError(entry.refusal)
    if entry is not None and entry.needs_remote_code and not hub.trust_remote_code:
        raise ValueError(
            f"{name_or_path!r} only loads with its authors' remote code. Read that code, then pass "
            "trust_remote_code=True to load it."
        )
    if family is not None:
        return Resolution(family, entry, "family=")
    if entry is not None:
        if preset is not None:
            resolution = Resolution(entry.family, entry, "preset=", preset)
            if name_or_path is not None:
                check_preset_fits(resolution, CheckpointInfo(name_or_path, hub))
            return resolution
        return Resolution(entry.family, entry, "registry")
    if name_or_path is None:
        return Resolution(None, None, "none")
    info = CheckpointInfo(name_or_path, hub)
    saved = info.read_json("modules.json")
    if saved:
        if is_embedding_model(saved, info):
            raise no_scoring_head(name_or_path, info, "a sentence-transformers embedding model (bi-encoder)")
        return Resolution(saved_family(saved), None, "saved")
    families = all_families()
    for spec in [spec for spec in families if not spec.fallback] + [spec for spec in families if spec.fallback]:
        if spec.recognize is not None and spec.recognize(info):
            note = spec.detected_note
            if note is not None:
                note = note.format(name=name_or_path, architecture=", ".join(info.architectures) or "?")
            return Resolution(spec.name, None, "checkpoint", note=note)
    raise no_scoring_head(name_or_path, info)


def is_embedding_model(modules_json: list[dict[str, Any]], info: CheckpointInfo) -> bool:
    """A saved sentence-transformers bi-encoder: a pooling module, or a plain ``Transformer`` without a head.

    Saved cross-encoders hold a ``Transformer`` whose checkpoint has a classification head (or one of our
    families' modules); an embedding model's ``Transformer`` is a bare encoder, followed by ``Pooling``.
    """
    types = [str(module.get("type", "")) for module in modules_json]
    if any(name.endswith("Pooling") for name in types):
        return True
    first = types[0] if types else ""
    if family_of_class(first) is not None or not first.endswith("Transformer"):
        return False
    if family_of_saved_types(types) != "sequence-classification":  # a causal LM read by LogitScore
        return False
    recognize = get_family("sequence-classification").recognize
    return recognize is not None and not recognize(info)


def no_scoring_head(name_or_path: str, info: CheckpointInfo, what: str = "") -> ValueError:
    """The refusal of a checkpoint that no family can score without a randomly initialised head."""
    kind = f"{what}, " if what else ""
    return ValueError(
        f"{name_or_path!r} ({kind}{', '.join(info.architectures) or info.config.model_type}) has no scoring head "
        f"that rerank-plugins recognises, and a random one would score noise. Pass family= one of "
        f"{', '.join(family_names())}, or fine-tune it as a sequence classifier first."
    )


class FamilyMismatchError(ValueError):
    """A family's module cannot load a checkpoint of another architecture (raised while the modules load)."""

    def __init__(
        self, family: str, name_or_path: str, architecture: str, detail: str = "", chosen_by: str = ""
    ) -> None:
        self.family, self.name_or_path, self.architecture, self.detail = family, name_or_path, architecture, detail
        chosen_by = chosen_by or f"The family {family!r}"
        super().__init__(
            f"{chosen_by} does not fit the model {name_or_path!r}: its architecture is {architecture}, which the "
            f"{family!r} family cannot load{detail}. Pass the preset or family= that fits this checkpoint "
            f"(families: {', '.join(family_names())})."
        )

    def chosen(self, resolution: Resolution) -> FamilyMismatchError:
        """The same error, saying how the family was chosen (``preset=``, ``family=``, the registry)."""
        return FamilyMismatchError(self.family, self.name_or_path, self.architecture, self.detail, resolution.chosen_by)


def check_preset_fits(resolution: Resolution, info: CheckpointInfo) -> None:
    """A preset names a published checkpoint: a local copy of it has that family's architecture (its ``recognize``
    says so), else :class:`FamilyMismatchError` before anything loads (a headless encoder would get a random head).
    """
    spec = resolution.spec
    if spec is None or spec.recognize is None:
        return
    try:
        fits = spec.recognize(info)
        architecture = f"{', '.join(info.architectures) or '?'} ({info.config.model_type})"
    except (OSError, ValueError):  # no readable config: the load itself says what is wrong
        return
    if not fits:
        raise FamilyMismatchError(spec.name, info.name_or_path, architecture, chosen_by=resolution.chosen_by)


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


def saved_family(modules_json: list[dict[str, Any]]) -> str | None:
    """The family of a saved model, from the classes of its modules in ``modules.json``."""
    types = [str(module.get("type", "")) for module in modules_json]
    first = types[0] if types else ""
    found = family_of_class(first)
    if found is None and first.endswith("Transformer"):  # sentence-transformers' own modules
        return family_of_saved_types(types)
    return found


def check_backend(resolution: Resolution, backend: Any) -> None:
    """``backend=`` checked against the family before anything loads: an error, never PyTorch in its place."""
    spec = resolution.spec
    if spec is not None:
        spec.check_backend(backend)
    elif resolution.source == "saved" and backend != "torch":
        raise ValueError(
            f"backend={backend!r} needs a model of a known family; this saved model's modules belong to none. "
            "Load it with backend='torch'."
        )
