"""Mixtures: token shares follow the weights, windows and the held-out split are respected, resume is exact."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from longctx.data import ByteTokenizer, StepSampler, ingest
from longctx.data.mixture import SourceSpec, heldout_documents, open_mixture

BUDGET, MAX_DOC, SEED, HELDOUT = 1024, 256, 3, 0.1


@pytest.fixture(scope="module")
def prefixes(tmp_path_factory) -> tuple[str, str]:
    """Dataset "books" (60 documents, 20..2000 tokens) and "chat" (50 documents, 5..120 tokens)."""
    directory = tmp_path_factory.mktemp("mixture")
    rng = np.random.default_rng(1)
    result = []
    for name, count, low, high in (("books", 60, 20, 2000), ("chat", 50, 5, 120)):
        lengths = rng.integers(low, high, size=count)
        lines = [json.dumps({"text": "".join(rng.choice(list("abcdef \n"), size=int(n)))}) for n in lengths]
        (directory / f"{name}.jsonl").write_text("\n".join(lines))
        result.append(ingest([str(directory / f"{name}.jsonl")], str(directory / name), ByteTokenizer()))
    return tuple(result)


def _specs(prefixes) -> list[SourceSpec]:
    books, chat = prefixes
    return [SourceSpec(books, weight=0.6, min_length=512, name="long"),
            SourceSpec(books, weight=0.1, max_length=511, name="short-books"),
            SourceSpec(chat, weight=0.3, name="chat")]


def test_sources_hold_their_window_minus_the_held_out_documents(prefixes):
    dataset, sources = open_mixture(_specs(prefixes), heldout_fraction=HELDOUT)
    assert [s.name for s in sources] == ["long", "short-books", "chat"] and len(dataset.parts) == 2
    assert np.isclose(sum(s.weight for s in sources), 1.0)
    books, chat = dataset.parts
    held = set(heldout_documents(len(books), HELDOUT)) | {len(books) + i for i in heldout_documents(len(chat), HELDOUT)}
    assert len(held) == 6 + 5
    lengths = dataset.lengths
    long, short, chats = (set(s.documents.tolist()) for s in sources)
    assert long | short == {d for d in range(len(books)) if d not in held} and not long & short
    assert all(lengths[d] >= 512 for d in long) and all(lengths[d] <= 511 for d in short)
    assert chats == {d for d in range(len(books), len(dataset)) if d not in held}
    np.testing.assert_array_equal(dataset.tokens(len(books) + 4, 1, 5), chat.tokens(4, 1, 5))


def test_token_shares_follow_the_weights_and_held_out_documents_are_never_drawn(prefixes):
    dataset, sources = open_mixture(_specs(prefixes), heldout_fraction=HELDOUT)
    owner = {int(d): index for index, source in enumerate(sources) for d in source.documents}
    sampler = StepSampler(dataset, BUDGET, MAX_DOC, SEED, sources)
    tokens = np.zeros(len(sources))
    for _ in range(300):
        pieces = sampler.next_pieces()
        assert pieces and sum(p.length for p in pieces) <= BUDGET and all(p.length <= MAX_DOC for p in pieces)
        for piece in pieces:
            tokens[owner[piece.document]] += piece.length  # KeyError: a held-out or out-of-window document
    expected = np.array([s.weight for s in sources]) * tokens.sum()
    assert np.all(np.abs(tokens - expected) <= MAX_DOC), (tokens, expected)
    assert min(sampler.state_dict()["epochs"]) >= 1, "every source must have wrapped around"


def test_each_source_epoch_delivers_each_of_its_tokens_once_in_order(prefixes):
    dataset, sources = open_mixture(_specs(prefixes), heldout_fraction=HELDOUT)
    sampler = StepSampler(dataset, BUDGET, MAX_DOC, SEED, sources)
    covered: dict[int, int] = defaultdict(int)
    first_epoch = {index: set(s.documents.tolist()) for index, s in enumerate(sources)}
    owner = {d: index for index, docs in first_epoch.items() for d in docs}
    while sampler.epoch == 0:
        epochs_before = list(sampler.state_dict()["epochs"])
        for piece in sampler.next_pieces():
            if epochs_before[owner[piece.document]] == 0:
                assert piece.start == covered[piece.document], "pieces of a document arrive in order, without gaps"
                covered[piece.document] = piece.stop
    assert covered == {d: int(dataset.lengths[d]) for docs in first_epoch.values() for d in docs}


def test_mixture_resume_from_json_state_equals_the_uninterrupted_run(prefixes):
    dataset, sources = open_mixture(_specs(prefixes), heldout_fraction=HELDOUT)
    uninterrupted = StepSampler(dataset, BUDGET, MAX_DOC, SEED, sources)
    expected = [uninterrupted.next_pieces() for _ in range(120)]
    stopped = StepSampler(dataset, BUDGET, MAX_DOC, SEED, sources)
    for _ in range(37):
        stopped.next_pieces()
    resumed = StepSampler(dataset, BUDGET, MAX_DOC, SEED, sources)
    resumed.load_state_dict(json.loads(json.dumps(stopped.state_dict())))
    assert [resumed.next_pieces() for _ in range(120 - 37)] == expected[37:]

    reweighted = [SourceSpec(s.prefix, 1.0, s.min_length, s.max_length, s.name) for s in _specs(prefixes)]
    other_dataset, other_sources = open_mixture(reweighted, heldout_fraction=HELDOUT)
    with pytest.raises(ValueError, match="saved mixture=.* but this sampler has mixture="):
        StepSampler(other_dataset, BUDGET, MAX_DOC, SEED, other_sources).load_state_dict(stopped.state_dict())


def test_held_out_split_depends_only_on_the_dataset_size():
    first = heldout_documents(1000, 0.05)
    assert len(first) == 50 and np.array_equal(first, heldout_documents(1000, 0.05))
    assert set(heldout_documents(1000, 0.01)) <= set(range(1000)) and len(heldout_documents(7, 0.01)) == 1
    assert len(heldout_documents(1000, 0.0)) == 0
    with pytest.raises(ValueError, match=r"fraction=1.0 must lie in \[0, 1\)"):
        heldout_documents(10, 1.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"weight": 0}, "weight=0 must be a finite number > 0"),
    ({"weight": float("nan")}, "weight=nan must be"),
    ({"min_length": 0}, "min_length=0 must be an integer >= 1"),
    ({"min_length": 10, "max_length": 5}, "max_length=5 must be an integer >= min_length=10"),
])
def test_bad_source_settings_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SourceSpec("data/books", name="books", **kwargs)


def test_a_window_without_documents_is_a_clear_error(prefixes):
    with pytest.raises(ValueError, match=r"source 'huge': none of the 60 documents .* lies in \[min_length=100000"):
        open_mixture([SourceSpec(prefixes[0], min_length=100_000, name="huge")])
