"""StepSampler: budget respected, every token once per epoch, deterministic, exact resume, clear errors."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from longctx.data import ByteTokenizer, DocumentDataset, StepSampler, ingest

BUDGET, MAX_DOC, SEED = 1024, 300, 7


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> DocumentDataset:
    """80 documents with log-normal lengths (a few far longer than MAX_DOC)."""
    directory = tmp_path_factory.mktemp("sampler")
    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.lognormal(mean=4.5, sigma=1.2, size=80).astype(int) + 1, 3000)
    lines = [json.dumps({"text": "".join(rng.choice(list("abcdefgh \n"), size=n))}) for n in lengths]
    (directory / "docs.jsonl").write_text("\n".join(lines))
    return DocumentDataset(ingest([str(directory / "docs.jsonl")], str(directory / "ds"), ByteTokenizer()))


def _epoch_steps(sampler: StepSampler) -> list:
    epoch, steps = sampler.epoch, []
    while sampler.epoch == epoch:
        steps.append(sampler.next_pieces())
    return steps


def test_steps_respect_the_budget_and_close_only_when_the_next_piece_does_not_fit(dataset):
    assert dataset.lengths.max() > 3 * MAX_DOC, "the fixture must hold documents that need splitting"
    steps = _epoch_steps(StepSampler(dataset, BUDGET, MAX_DOC, SEED))
    for index, pieces in enumerate(steps):
        total = sum(p.length for p in pieces)
        assert pieces and total <= BUDGET and all(0 < p.length <= MAX_DOC for p in pieces), (index, pieces)
        if index + 1 < len(steps):
            assert total + steps[index + 1][0].length > BUDGET, f"step {index} closed early at {total} tokens"


def test_every_token_of_an_epoch_is_delivered_exactly_once(dataset):
    sampler = StepSampler(dataset, BUDGET, MAX_DOC, SEED)
    for _ in range(2):
        delivered: dict[int, list[np.ndarray]] = defaultdict(list)
        epoch = sampler.epoch
        while sampler.epoch == epoch:
            state = sampler.state_dict()  # plan the step, rewind, then read the same step's tokens
            pieces = sampler.next_pieces()
            sampler.load_state_dict(state)
            for piece, tokens in zip(pieces, sampler.next_step(), strict=True):
                delivered[piece.document].append(tokens)
        assert sorted(delivered) == list(range(len(dataset)))
        for document, parts in delivered.items():
            np.testing.assert_array_equal(np.concatenate(parts), dataset[document], err_msg=f"document {document}")


def test_the_default_corpus_epoch_covers_every_token_once(built_corpus):
    corpus = DocumentDataset(built_corpus.prefixes[0])
    sampler = StepSampler(corpus, 65_536, 16_384, seed=0)
    covered = np.zeros(len(corpus), dtype=np.int64)
    for pieces in _epoch_steps(sampler):
        assert sum(p.length for p in pieces) <= 65_536
        for piece in pieces:
            assert piece.start == covered[piece.document], "pieces of a document arrive in order, without gaps"
            covered[piece.document] = piece.stop
    np.testing.assert_array_equal(covered, corpus.lengths)


def test_same_seed_gives_same_steps_and_each_epoch_reshuffles(dataset):
    first, second = (StepSampler(dataset, BUDGET, MAX_DOC, SEED) for _ in range(2))
    epochs = [_epoch_steps(first) for _ in range(2)]
    assert epochs == [_epoch_steps(second) for _ in range(2)]
    documents = [[p.document for step in steps for p in step if p.start == 0] for steps in epochs]
    assert documents[0] != documents[1] and sorted(documents[0]) == sorted(documents[1])
    other_seed = _epoch_steps(StepSampler(dataset, BUDGET, MAX_DOC, SEED + 1))
    assert other_seed != epochs[0]


@pytest.mark.parametrize("stop_after", [1, 5, 40])
def test_resume_from_state_dict_equals_the_uninterrupted_run(dataset, stop_after):
    uninterrupted = StepSampler(dataset, BUDGET, MAX_DOC, SEED)
    expected = [uninterrupted.next_step() for _ in range(stop_after + 60)]
    stopped = StepSampler(dataset, BUDGET, MAX_DOC, SEED)
    for _ in range(stop_after):
        stopped.next_step()
    state = json.loads(json.dumps(stopped.state_dict()))
    resumed = StepSampler(dataset, BUDGET, MAX_DOC, SEED)
    resumed.load_state_dict(state)
    assert resumed.step == stop_after
    for step, want in enumerate(expected[stop_after:], start=stop_after):
        got = resumed.next_step()
        assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want)), f"step {step} differs"
    assert resumed.epoch >= 1, "the resumed run must cross an epoch boundary"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_doc_tokens": 2048}, "max_doc_tokens=2048 exceeds tokens_per_step=1024; every document piece"),
        ({"tokens_per_step": 0}, "tokens_per_step=0 must be a positive integer"),
        ({"max_doc_tokens": 1.5}, "max_doc_tokens=1.5 must be a positive integer"),
        ({"seed": -1}, "seed=-1 must be a non-negative integer"),
    ],
)
def test_bad_sampler_settings_are_clear_errors(dataset, kwargs, match):
    settings = {"tokens_per_step": BUDGET, "max_doc_tokens": MAX_DOC, "seed": SEED} | kwargs
    with pytest.raises(ValueError, match=match):
        StepSampler(dataset, **settings)


def test_loading_a_state_from_different_settings_is_a_clear_error(dataset):
    state = StepSampler(dataset, BUDGET, MAX_DOC, SEED).state_dict()
    with pytest.raises(ValueError, match="saved tokens_per_step=1024 but this sampler has tokens_per_step=2048"):
        StepSampler(dataset, 2 * BUDGET, MAX_DOC, SEED).load_state_dict(state)
    with pytest.raises(KeyError, match=r"state lacks \['cursors'\]"):
        StepSampler(dataset, BUDGET, MAX_DOC, SEED).load_state_dict({k: v for k, v in state.items() if k != "cursors"})
