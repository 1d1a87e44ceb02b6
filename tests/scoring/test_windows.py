"""Long documents: windowing finds what truncation misses, for every family."""

from __future__ import annotations

import numpy as np
import pytest
from support import DOCUMENTS, QUERIES

from rerank_plugins.windows import Window, aggregate, as_window, split_document

FILLER = " ".join(["The committee met again to discuss the agenda for next year in great detail."] * 12)


@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "deberta", "query-likelihood"])
def test_passage_at_the_end_is_found_with_windows_and_missed_without(load_tiny, kind):
    model = load_tiny(kind, max_length=64)
    query, window = QUERIES[0], Window(size=24, stride=12)
    # A neutral prefix: one word repeated, so that its windows are one text with one score; of a few words,
    # the one this random tiny model finds least relevant.
    fillers = {word: " ".join([word] * 150) for word in ("the", "agenda", "committee", "x")}  # > max_length tokens
    filler_scores = {w: float(model.predict([(query, " ".join([w] * 24))])[0]) for w in fillers}
    filler = fillers[min(filler_scores, key=filler_scores.get)]
    # "Relevant" for a random model: the passage whose closing window it scores highest; "other": lowest.
    texts = [d for d in DOCUMENTS if d]
    closing = [split_document(model.tokenizer, f"{filler} {t}", window)[-1] for t in texts]
    closing_scores = model.predict([(query, c) for c in closing])
    best, worst = int(np.argmax(closing_scores)), int(np.argmin(closing_scores))
    relevant, other = f"{filler} {texts[best]}", f"{filler} {texts[worst]}"
    prefix_windows = split_document(model.tokenizer, filler, window)
    assert closing_scores[best] > model.predict([(query, w) for w in prefix_windows]).max()  # the setup holds

    truncated = model.predict([(query, other), (query, relevant)])
    assert truncated[0] == pytest.approx(truncated[1], abs=1e-6)  # both cut inside the same prefix: missed

    ranking = model.rank(query, [other, relevant], window=window)
    assert ranking[0]["corpus_id"] == 1  # found: windowing reaches the passage at the end
    assert ranking[0]["score"] > ranking[1]["score"] + 1e-4


def test_a_listwise_model_refuses_windows(load_tiny):
    """A document's windows would join its list and move every other document's score: refused, before scoring."""
    model = load_tiny("listconranker")
    documents = [FILLER, *DOCUMENTS[:3]]
    with pytest.raises(ValueError, match=r"listwise model.*every other document"):
        model.rank(QUERIES[0], documents, window=Window(size=24))
    with pytest.raises(ValueError, match="listwise model"):
        model.predict([(QUERIES[0], document) for document in documents], window=True)


def test_window_aggregates_equal_their_definition(load_tiny):
    model = load_tiny("monot5", max_length=64)
    query, document = QUERIES[1], f"{FILLER} {DOCUMENTS[2]}"
    window = Window(size=24, stride=12)
    pieces = split_document(model.tokenizer, document, window)
    assert len(pieces) > 3
    per_window = model.predict([(query, piece) for piece in pieces])
    for how, expected in (("max", per_window.max()), ("first", per_window[0]), ("mean", per_window.mean())):
        got = model.predict([(query, document)], window=Window(size=24, stride=12, aggregate=how))
        assert got[0] == pytest.approx(float(expected), abs=1e-6)


def test_windows_cover_the_document_with_overlap(load_tiny):
    tokenizer = load_tiny("sequence-classification").tokenizer
    document = f"{FILLER} {DOCUMENTS[0]}"
    pieces = split_document(tokenizer, document, Window(size=20, stride=10))
    assert pieces[0] == document[: len(pieces[0])]
    assert document.endswith(pieces[-1])
    n_tokens = len(tokenizer(document, add_special_tokens=False)["input_ids"])
    assert len(pieces) == int(np.ceil((n_tokens - 20) / 10)) + 1
    longest_word = max(len(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in document.split())
    for piece in pieces:  # windows snap to whole words: at most one word's pieces more at each end
        assert len(tokenizer(piece, add_special_tokens=False)["input_ids"]) <= 20 + 2 * longest_word
    assert split_document(tokenizer, "short text", Window(size=20)) == ["short text"]


def test_windowing_is_off_by_default_and_validated(load_tiny):
    assert as_window(None) is None and as_window(False) is None
    assert as_window(True) == Window()
    assert as_window({"size": 8, "aggregate": "mean"}) == Window(size=8, aggregate="mean")
    with pytest.raises(ValueError, match="stride"):
        Window(size=8, stride=9)
    with pytest.raises(ValueError, match="aggregate"):
        Window(aggregate="median")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        as_window(3)  # type: ignore[arg-type]


def test_aggregate_first_max_mean():
    import torch

    scores = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.4])
    owners = [0, 0, 1, 2, 2]
    assert aggregate(scores, owners, 3, "max").tolist() == pytest.approx([0.9, 0.5, 0.4])
    assert aggregate(scores, owners, 3, "first").tolist() == pytest.approx([0.1, 0.5, 0.2])
    assert aggregate(scores, owners, 3, "mean").tolist() == pytest.approx([0.5, 0.5, 0.3])


# Text without spaces: 2,000 distinct CJK characters (one WordPiece token each), and a 300-segment URL.
NO_SPACES = "".join(chr(0x4E00 + i) for i in range(2000))
URL = "https://example.com/" + "/".join(f"seg{i}x{i * 7 % 13}" for i in range(300))


def window_positions(document: str, pieces: list[str]) -> list[int]:
    """Where each window starts in the document (the windows are in order; their texts are unique here)."""
    positions, start = [], 0
    for piece in pieces:
        start = document.index(piece, start)
        positions.append(start)
    return positions


def test_a_word_longer_than_the_window_is_cut_inside(load_tiny):
    """Text without spaces is one 'word': windows used to snap to it, so every window was the whole document."""
    tokenizer, window = load_tiny("sequence-classification").tokenizer, Window(size=64, stride=32)
    n_tokens = len(tokenizer(NO_SPACES, add_special_tokens=False)["input_ids"])
    assert n_tokens == len(NO_SPACES)  # one token per character: token counts are exact below
    pieces = split_document(tokenizer, NO_SPACES, window)
    assert len(pieces) == int(np.ceil((n_tokens - 64) / 32)) + 1
    assert all(len(tokenizer(piece, add_special_tokens=False)["input_ids"]) <= 64 for piece in pieces)
    positions = window_positions(NO_SPACES, pieces)
    assert positions[0] == 0 and positions[-1] + len(pieces[-1]) == len(NO_SPACES)
    assert all(nxt < pos + len(piece) for pos, piece, nxt in zip(positions, pieces, positions[1:], strict=False))


def test_windows_of_text_without_spaces_grow_linearly(load_tiny):
    """Work in proportion to the length: twice the text, twice the windows and twice the characters scored."""
    tokenizer, window = load_tiny("sequence-classification").tokenizer, Window(size=64, stride=32)
    half, whole = (split_document(tokenizer, NO_SPACES[:n], window) for n in (1000, 2000))
    assert 1.9 < len(whole) / len(half) < 2.1
    assert sum(map(len, whole)) <= 2 * len(NO_SPACES) + 64  # each character in at most size/stride windows


def test_byte_level_tokens_of_one_character_stay_together(load_tiny):
    """A byte-level BPE splits a CJK character into 3 tokens; a cut falls between characters, so at most 2 more."""
    tokenizer = load_tiny("query-likelihood").tokenizer
    pieces = split_document(tokenizer, NO_SPACES[:600], Window(size=64, stride=32))
    assert len(pieces) > 20
    assert all(len(tokenizer(piece, add_special_tokens=False)["input_ids"]) <= 64 + 2 for piece in pieces)


def test_a_long_url_in_text_is_cut_and_the_words_around_it_still_snap(load_tiny):
    tokenizer, window = load_tiny("sequence-classification").tokenizer, Window(size=40, stride=20)
    document = f"{FILLER} {URL} {FILLER}"
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    pieces = split_document(tokenizer, document, window)
    assert len(pieces) == int(np.ceil((count(document) - 40) / 20)) + 1
    longest_word = max(count(word) for word in FILLER.split())
    assert all(count(piece) <= 40 + 2 * longest_word for piece in pieces)
    in_the_url = [piece for piece in pieces if URL not in piece and not set(piece.split()) <= set(FILLER.split())]
    assert in_the_url  # windows inside the URL, cut between its tokens
    for piece in pieces:  # words of the filler are never cut
        assert all(word in FILLER.split() or word in URL for word in piece.split())


def test_windowed_score_of_text_without_spaces_is_no_longer_the_truncated_score(load_tiny):
    """The symptom users saw: with every window the whole (truncated) document, window= changed nothing."""
    model, window = load_tiny("sequence-classification"), Window(size=64, stride=32)
    query = QUERIES[0]
    truncated = float(model.predict([(query, NO_SPACES)])[0])
    windowed = float(model.predict([(query, NO_SPACES)], window=window)[0])
    per_window = model.predict([(query, piece) for piece in split_document(model.tokenizer, NO_SPACES, window)])
    assert windowed == pytest.approx(float(per_window.max()), abs=1e-6)
    assert abs(windowed - truncated) > 1e-4
