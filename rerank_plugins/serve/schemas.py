"""Request and response bodies of the HTTP APIs that rerank clients already speak.

- ``POST /v1/rerank``: Cohere's v1 rerank API, which Jina's rerank API shares (``documents`` as strings or
  ``{"text": ...}`` objects, ``top_n``, ``return_documents``).
- ``POST /v2/rerank``: Cohere's v2 rerank API (``documents`` as strings, ``max_tokens_per_doc``).
- ``POST /rerank``: text-embeddings-inference's rerank API (``texts``, ``raw_scores``, ``return_text``).
- ``POST /score``, ``/v1/score``: vLLM's score API (``text_1`` a query, ``text_2`` one text or a list).

Fields are checked strictly (no ``"3"`` for an integer, no ``"true"`` for a boolean), so that a wrong type is a
422 that names the field instead of a silent guess. Fields the providers define but this server cannot honour
are listed in ``docs/serving.md``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _unicode(text: str) -> str:
    """Reject lone surrogates (``"\\ud800"`` is valid JSON but no tokenizer can encode it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"must be valid Unicode text; found a lone surrogate at character {error.start}") from None
    return text


def _not_empty(text: str) -> str:
    if not text:
        raise ValueError("must not be empty: there is nothing to rank the documents by")
    return text


def _lone_surrogate(value: Any, where: str) -> str | None:
    """Where in a JSON value (nested objects and lists, keys too) a string has a lone surrogate, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return f"{where}: must be valid Unicode text; found a lone surrogate at character {error.start}"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key, f"{where} (a key)") or _lone_surrogate(item, f"{where}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{where}[{index}]")
            if found:
                return found
    return None


Text = Annotated[str, AfterValidator(_unicode)]
"""A string that every tokenizer can encode."""
Query = Annotated[str, AfterValidator(_unicode), AfterValidator(_not_empty)]
"""A query: a non-empty :data:`Text`."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextDocument(BaseModel):
    """A document object: its ``text`` is ranked; other fields come back with ``return_documents``."""

    model_config = ConfigDict(strict=True, extra="allow")
    text: Text

    @model_validator(mode="after")
    def _echoable(self) -> TextDocument:
        """Every other field comes back with ``return_documents``: each must be valid Unicode too."""
        for key, value in (self.__pydantic_extra__ or {}).items():
            found = _lone_surrogate(key, "a field name") or _lone_surrogate(value, key)
            if found:
                raise ValueError(found)
        return self


# -- Cohere v1 and Jina: POST /v1/rerank ---------------------------------------------------------------------
class RerankRequest(_Strict):
    """Cohere v1 / Jina rerank request."""

    model: str | None = Field(None, description="Served model name (see GET /v1/models); default: the first.")
    query: Query
    documents: list[Text | TextDocument] = Field(min_length=1, description="Strings or objects with a `text`.")
    top_n: int | None = Field(None, ge=1, description="Return the best `top_n` results (default: all).")
    return_documents: bool = Field(False, description="Echo each ranked document in `results[].document`.")
    rank_fields: list[str] | None = Field(None, description='Only `["text"]` is supported.')
    max_chunks_per_doc: int | None = Field(
        None, ge=1, description="Only 1: long documents are truncated as the model's family does."
    )


class RerankResultDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request's `documents`.")
    relevance_score: float = Field(description="The model's score, equal to `CrossEncoder.rank`'s.")
    document: RerankResultDocument | None = None


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int = Field(description="One per query and up to 100 documents, as Cohere counts.")


class Tokens(BaseModel):
    input_tokens: int
    output_tokens: int = 0


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits
    tokens: Tokens | None = None

    @classmethod
    def of(cls, version: str, documents: int, tokens: int) -> Meta:
        """Cohere's ``meta``: one search unit per query and 100 documents; the tokens the model read."""
        return cls(
            api_version=ApiVersion(version=version),
            billed_units=BilledUnits(search_units=max(1, math.ceil(documents / 100))),
            tokens=Tokens(input_tokens=tokens),
        )


class Usage(BaseModel):
    total_tokens: int = Field(
        description="Tokens the model read: query and document of every pair, with the family's "
        "template and special tokens."
    )


class RerankResponse(BaseModel):
    """Cohere v1 response with Jina's `model` and `usage` added."""

    id: str
    results: list[RerankResult]
    meta: Meta
    model: str
    usage: Usage | None = None


# -- Cohere v2: POST /v2/rerank ------------------------------------------------------------------------------
class RerankV2Request(_Strict):
    """Cohere v2 rerank request."""

    model: str | None = Field(None, description="Served model name (Cohere requires it; here the first is default).")
    query: Query
    documents: list[Text] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1)
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Cut each document to this many tokens first.")
    priority: int | None = Field(None, description="Accepted and ignored: requests are served in arrival order.")


class RerankV2Result(BaseModel):
    index: int
    relevance_score: float


class RerankV2Response(BaseModel):
    id: str
    results: list[RerankV2Result]
    meta: Meta


# -- text-embeddings-inference: POST /rerank -----------------------------------------------------------------
class TEIRerankRequest(_Strict):
    """text-embeddings-inference rerank request (scored with the first served model)."""

    query: Query
    texts: list[Text] = Field(min_length=1)
    raw_scores: bool = Field(False, description="Scores before the family's activation (e.g. logits).")
    return_text: bool = False
    truncate: bool | None = Field(
        False, description="Accepted; inputs longer than the model's max_length are always truncated."
    )
    truncation_direction: Literal["right", "Right", "left", "Left"] = Field(
        "right", description="Only `right` is supported."
    )


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


# -- vLLM: POST /score and /v1/score ---------------------------------------------------------------------------
class ScoreRequest(_Strict):
    """vLLM score request: one query (`text_1`) against one text or a list (`text_2`)."""

    model: str | None = Field(None, description="Served model name; default: the first.")
    text_1: Query | list[Query] = Field(description="The query (a list of one query is the same).")
    text_2: Text | list[Text] = Field(description="The texts to score against the query, one or a list.")
    truncate_prompt_tokens: int | None = Field(
        None, description="Not supported: inputs are truncated at the model's max_length as its family does."
    )
    use_activation: bool | None = Field(None, description="false: scores before the family's activation.")
    activation: bool | None = Field(None, description="vLLM's older name of `use_activation`.")
    softmax: bool | None = Field(None, description="vLLM's older name of `use_activation`.")
    priority: int = Field(0, description="Only 0: requests are served in arrival order.")
    mm_processor_kwargs: dict[str, Any] | None = Field(None, description="Not supported (text only).")


class ScoreData(BaseModel):
    index: int = Field(description="Position of the text in `text_2`.")
    object: Literal["score"] = "score"
    score: float = Field(description="The model's score, equal to `CrossEncoder.rank`'s.")


class ScoreUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model read (templates and special tokens included).")
    total_tokens: int
    completion_tokens: int = 0


class ScoreResponse(BaseModel):
    """vLLM score response: `data[i]` is the score of `text_2[i]`, in input order."""

    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: ScoreUsage


# -- errors, models, health ----------------------------------------------------------------------------------
class ErrorResponse(BaseModel):
    """One shape for every error: Cohere's `message`, TEI's `error` and `error_type`, and the field at fault."""

    message: str
    error: str
    error_type: str
    field: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rerank-plugins"
    family: str
    listwise: bool
    max_length: int | None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "unhealthy"]
    models: list[str]
    details: dict[str, Any] = Field(default_factory=dict)
