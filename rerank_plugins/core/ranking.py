"""The request core: whole requests in, one score per document out, the same way for every frontend.

How a call travels through :func:`score_requests`:

1. **checks**: each request's options against the model's family (a mode it has; no windows for a listwise one);
2. **cache** (opt-in, ``model.score_cache``): documents already scored with the same settings are not scored again;
   for a listwise family the key is the whole list (a score depends on the others);
3. **documents**: cut to ``max_tokens_per_doc``; long ones split into windows (``rerank_plugins.windows``);
4. **rows**: a pair per document (or window), or for a listwise family one :class:`~rerank_plugins.scoring.base.ListRow`
   per request, never merged with another request's; each tokenized once (the module's ``encode``);
5. **batches**: the one policy of :mod:`rerank_plugins.core.batching` on those real token counts; each batch is
   collated, moved to the device and run through the model's modules (``model(features)``: ``model.compile()``
   applies), giving raw fp32 scores;
6. **per request**: its activation (the model's unless it asks for another), window scores aggregated, the cache
   filled. What was truncated is counted for the whole call and logged once.

A family's inference mode (``FamilySpec.modes``, e.g. ListConRanker's iterative inference) takes the place of
2-6 for its request: it scores sub-lists of the request through them, as its authors' loop does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers.util import batch_to_device
from tqdm.autonotebook import tqdm

from rerank_plugins.cache import request_key
from rerank_plugins.core import batching
from rerank_plugins.core.requests import Cancelled, ListRow, Ranking, Request, RunOptions
from rerank_plugins.scoring.base import Encoded, encodes_rows
from rerank_plugins.scoring.truncation import truncation_report
from rerank_plugins.windows import aggregate, first_tokens, split_document

if TYPE_CHECKING:
    from rerank_plugins.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

DEFAULT_RUN = RunOptions()


@dataclass(frozen=True)
class Scored:
    """One request's scores by document index (``(n,)``, or ``(n, labels)`` for a multi-label model), after its
    activation, and the tokens the model read for it."""

    scores: torch.Tensor
    tokens: int


def rank_requests(model: CrossEncoder, requests: Sequence[Request], run: RunOptions = DEFAULT_RUN) -> list[Ranking]:
    """One :class:`~rerank_plugins.core.requests.Ranking` per request (the model must give one score per pair)."""
    if model.num_labels != 1:
        raise ValueError("Ranking needs one score per pair; this model has several labels (use predict).")
    scored = score_requests(model, requests, run)
    return [
        Ranking.of(request, result.scores.tolist(), result.tokens)
        for request, result in zip(requests, scored, strict=True)
    ]


def score_requests(model: CrossEncoder, requests: Sequence[Request], run: RunOptions = DEFAULT_RUN) -> list[Scored]:
    """Every request's scores, computed together: rows of all requests share batches, lists never mix."""
    requests = list(requests)
    for request in requests:
        check_request(model, request)
    if run.device is not None and torch.device(run.device) != model.device:
        model.to(run.device)  # as sentence-transformers' predict(device=...)
    model.eval()
    with truncation_report() as report, torch.inference_mode():
        results = _cached(model, requests, run)
    if report.count:
        documents = sum(len(request.documents) for request in requests)
        logger.warning(
            "%d of %d inputs were longer than max_length=%d tokens and were truncated as the %s family does. "
            "Pass a larger max_length if the model allows it, or window= to score long documents in windows.",
            report.count, documents, model.max_seq_length, model.family,
        )  # fmt: skip
    return results


def check_request(model: CrossEncoder, request: Request) -> None:
    """A ``ValueError`` for an option this model cannot honour, before anything is scored."""
    spec, options = model.family_spec, request.options
    if options.mode is not None and options.mode not in spec.modes:
        modes = ", ".join(sorted(spec.modes)) or "none"
        raise ValueError(
            f"{options.mode}=True is an inference mode this model's family ({model.family}) does not have "
            f"(its modes: {modes}); e.g. iterative=True is ListConRanker's inference."
        )
    if spec.listwise and options.window is not None:
        raise ValueError(
            "window= is not supported by a listwise model: a document's windows would become members of its list "
            "and change every other document's score. Score the documents whole (they are truncated as the "
            "family does), or shorten them first."
        )


# -- 2: the score cache -----------------------------------------------------------------------------------------
def _cached(model: CrossEncoder, requests: list[Request], run: RunOptions) -> list[Scored]:
    """Scores from ``model.score_cache`` where it has them; the rest scored by :func:`_by_mode` (and stored)."""
    cache = model.score_cache
    if cache is None or model.num_labels != 1:
        return _by_mode(model, requests, run)
    listwise = model.family_spec.listwise
    keys = [request_key(model, request) for request in requests]
    found: list[list[float | None]] = []
    for request, key in zip(requests, keys, strict=True):
        if listwise:
            whole = cache.get((key, request.documents), len(request.documents))
            found.append(list(whole) if whole is not None else [None] * len(request.documents))
        else:
            found.append([cache.get((key, document)) for document in request.documents])
    # What is missing, as requests of their own (a listwise request is only ever whole).
    missing = [
        (r, [i for i, value in enumerate(values) if value is None]) for r, values in enumerate(found) if None in values
    ]
    partial = [replace(requests[r], documents=tuple(requests[r].documents[i] for i in slots)) for r, slots in missing]
    tokens = [0] * len(requests)
    for (r, slots), result in zip(missing, _by_mode(model, partial, run), strict=True):
        values = result.scores.float().cpu().tolist()
        tokens[r] = result.tokens
        for slot, value in zip(slots, values, strict=True):
            found[r][slot] = value
        if listwise:
            cache.put((keys[r], requests[r].documents), tuple(values))
        else:
            for slot, value in zip(slots, values, strict=True):
                cache.put((keys[r], requests[r].documents[slot]), value)
    return [
        Scored(torch.tensor(values, dtype=torch.float32, device=model.device), count)
        for values, count in zip(found, tokens, strict=True)
    ]


# -- modes: a family's own inference over sub-lists of a request --------------------------------------------------
def _by_mode(model: CrossEncoder, requests: list[Request], run: RunOptions) -> list[Scored]:
    """Requests without a mode together; each request with a mode through its family's hook."""
    plain = [i for i, request in enumerate(requests) if request.options.mode is None]
    results: list[Scored | None] = [None] * len(requests)
    for i, result in zip(plain, _score(model, [requests[i] for i in plain], run), strict=True):
        results[i] = result
    for i, request in enumerate(requests):
        if request.options.mode is not None:
            results[i] = _with_mode(model, request, run)
    return results  # type: ignore[return-value]


def _with_mode(model: CrossEncoder, request: Request, run: RunOptions) -> Scored:
    hook = model.family_spec.modes[request.options.mode or ""]
    plain = replace(request.options, mode=None)
    tokens = 0

    def score_list(indices: list[int]) -> list[float]:
        nonlocal tokens
        sub = Request(request.query, tuple(request.documents[i] for i in indices), plain)
        (result,) = _score(model, [sub], run)
        tokens += result.tokens
        return [float(value) for value in result.scores.tolist()]

    final = hook(score_list, len(request.documents))
    return Scored(torch.tensor(final, dtype=torch.float32, device=model.device), tokens)


# -- 3-6: documents, rows, batches, per-request scores ------------------------------------------------------------
@dataclass
class _Slots:
    """One request's documents as scored: the texts (windows included) and the document each belongs to."""

    texts: list[str]
    owners: list[int]


def _documents(model: CrossEncoder, request: Request) -> _Slots:
    """The request's documents cut to ``max_tokens_per_doc`` and split into windows, as the options ask."""
    options, tokenizer = request.options, model.tokenizer
    texts: list[str] = list(request.documents)
    if options.max_tokens_per_doc is not None:
        texts = [first_tokens(tokenizer, text, options.max_tokens_per_doc) for text in texts]
    if options.window is None:
        return _Slots(texts, list(range(len(texts))))
    pieces = [split_document(tokenizer, text, options.window) for text in texts]
    return _Slots([piece for parts in pieces for piece in parts], [i for i, parts in enumerate(pieces) for _ in parts])


def _score(model: CrossEncoder, requests: list[Request], run: RunOptions) -> list[Scored]:
    """Raw scores of every row of every request, batched together; then each request's activation."""
    if not requests:
        return []
    slots = [_documents(model, request) for request in requests]
    listwise = model.family_spec.listwise
    # Rows: a (query, text) pair per slot, or one whole list per request; each request's rows are contiguous.
    rows: list[Any] = []
    starts = []
    for request, s in zip(requests, slots, strict=True):
        starts.append(len(rows))
        if listwise:
            rows += [ListRow(request.query, tuple(s.texts))] if s.texts else []
        else:
            rows += [(request.query, text) for text in s.texts]
    starts.append(len(rows))
    owner = [r for r in range(len(requests)) for _ in range(starts[r], starts[r + 1])]
    raw: list[torch.Tensor] = [torch.empty(0)] * len(rows)
    tokens = [0] * len(requests)
    by_prompt: dict[str | None, list[int]] = {}  # rows with another prompt never share a batch
    for index in range(len(rows)):
        by_prompt.setdefault(requests[owner[index]].options.prompt, []).append(index)
    encoder = _encoder(model)
    for prompt, members in by_prompt.items():
        encoded = encoder.encode([rows[i] for i in members], prompt)
        for i, row in zip(members, encoded, strict=True):
            tokens[owner[i]] += row.tokens
        for batch, scores in _forward(model, encoder, encoded, run, listwise):
            for position, value in zip(batch, scores, strict=True):
                raw[members[position]] = value
    results = []
    for r, (request, s) in enumerate(zip(requests, slots, strict=True)):
        mine = raw[starts[r] : starts[r + 1]]
        values = (mine[0] if listwise else torch.stack(mine)) if mine else None
        results.append(Scored(_activated(model, request, values, s), tokens[r]))
    return results


def _forward(
    model: CrossEncoder, encoder: Any, encoded: list[Encoded], run: RunOptions, listwise: bool
) -> list[tuple[list[int], list[torch.Tensor]]]:
    """``(row positions, raw score per row)`` per batch; a listwise row's score is its documents' ``(n, 1)``."""
    device = model.device
    accelerator = batching.on_accelerator(device)
    sizes = [row.tokens for row in encoded]
    if listwise:
        batches = batching.one_per_batch(sizes)
        # How many texts (or padded tokens) of a list one encoder forward takes.
        kwargs = {"chunk_rows": run.batch_size or (batching.MAX_ROWS if accelerator else batching.CPU_BATCH_SIZE)}
        if accelerator and run.batch_size is None:
            kwargs["chunk_tokens"] = run.batch_tokens
    else:
        batches = batching.plan_batches(
            sizes, accelerator=accelerator, batch_size=run.batch_size, batch_tokens=run.batch_tokens
        )
        kwargs = {}
    out = []
    for batch in tqdm(batches, desc="Batches", disable=not run.show_progress_bar):
        if run.cancelled is not None and run.cancelled():
            raise Cancelled("the call was cancelled before its next forward batch")
        features = batch_to_device(encoder.collate([encoded[i] for i in batch]), device)
        scores = model(features, **kwargs)["scores"].float()  # low-precision logits cast before any activation
        out.append((batch, [scores] if listwise else list(scores)))
    return out


def _activated(model: CrossEncoder, request: Request, raw: torch.Tensor | None, slots: _Slots) -> torch.Tensor:
    """The request's activation on its raw ``(rows, labels)`` scores, as sentence-transformers applies it; then
    windows aggregated into one score per document."""
    count = len(request.documents)
    if raw is None:  # no documents
        return torch.empty(0, dtype=torch.float32, device=model.device)
    activation = request.options.activation if request.options.activation is not None else model.activation_fn
    scores = activation(raw) if activation is not None else raw
    if model.num_labels == 1 and scores.ndim > 1:
        scores = scores.squeeze(-1)
    if request.options.apply_softmax and scores.ndim > 1:
        scores = torch.nn.functional.softmax(scores, dim=1)
    window = request.options.window
    if window is None:
        return scores
    return aggregate(scores, slots.owners, count, window.aggregate)


# -- encoding: the family's own, or sentence-transformers' preprocess for modules of other authors ----------------
def _encoder(model: CrossEncoder) -> Any:
    first = model[0]
    return first if encodes_rows(first) else PreprocessEncoder(first, model.max_seq_length)


class PreprocessEncoder:
    """``encode``/``collate`` for an input module that has only ``preprocess`` (sentence-transformers' own
    ``Transformer`` in a saved plain model, or a family of your own): it counts tokens with the module's tokenizer
    and preprocesses each batch whole."""

    def __init__(self, module: Any, max_length: int | None) -> None:
        self.module, self.max_length = module, max_length

    def encode(self, rows: Sequence[Any], prompt: str | None = None) -> list[Encoded]:
        tokenizer: Callable[..., Any] | None = getattr(self.module, "tokenizer", None)
        counts: list[int]
        if callable(tokenizer) and rows and not isinstance(rows[0], ListRow):
            first = [(prompt or "") + str(query) for query, _ in rows]
            ids = tokenizer(first, [str(d) for _, d in rows], truncation=True, max_length=self.max_length)["input_ids"]
            counts = [len(row) for row in ids]
            empty = [row for row, count in zip(rows, counts, strict=True) if count == 0]
            if empty and getattr(tokenizer, "chat_template", None) is None:  # a chat template adds its own tokens
                raise ValueError(
                    f"The pair {tuple(empty[0])!r} has no token for this model to read (its tokenizer adds none to "
                    "an empty query and document): give it some text."
                )
        else:
            counts = [sum(len(str(text)) for text in row) // 4 + 1 for row in rows]
        return [Encoded(count, (row, prompt)) for count, row in zip(counts, rows, strict=True)]

    def collate(self, rows: Sequence[Encoded]) -> dict[str, Any]:
        inputs = [row.data[0] for row in rows]
        if inputs and isinstance(inputs[0], ListRow):
            inputs = [(row.query, document) for row in inputs for document in row.documents]
        return dict(self.module.preprocess(inputs, prompt=rows[0].data[1]))
