"""Holding the reader to a quotation (`CopyBias`): once it has produced a token of the source, the token that
follows it there comes next; the answer opens with the source's first token, and a bias of nothing changes
nothing. After a colon the reader does not stop: the quotation's first token comes instead."""

from __future__ import annotations

import pytest

from engine.answer.generation import quotation_bias
from engine.model.generate import copy_bias, generate_tokens
from engine.runtime import load_runtime
from tests.engine.tiny_gguf import tiny_model_in

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    folder = tmp_path_factory.mktemp("copy")
    with tiny_model_in(folder) as path:
        yield load_runtime(str(path), "cpu")


@pytest.fixture(scope="module")
def model(runtime):
    return runtime.model


PROMPT = [72, 101, 108, 108, 111, 44, 32]


def test_a_begun_quotation_is_finished(model):
    free = list(generate_tokens(model, PROMPT, 6, stop_ids=set()))
    # a source that begins with the reader's own first token, followed by tokens it would not have chosen
    tail = [token for token in (200, 201, 202, 203, 204) if token not in free][:4]
    held = list(generate_tokens(model, PROMPT, 5, stop_ids=set(), copy=copy_bias([free[0], *tail], 1e4)))
    assert held == [free[0], *tail]


def test_the_answer_opens_with_the_quotation(model):
    free = list(generate_tokens(model, PROMPT, 8, stop_ids=set()))
    source = [token for token in range(100, 256) if token not in free][:3]
    assert list(generate_tokens(model, PROMPT, 8, stop_ids=set(), copy=copy_bias(source, 1e4)))[:3] == source


def test_without_strength_generation_is_unchanged(model):
    free = list(generate_tokens(model, PROMPT, 8, stop_ids=set()))
    unused = [token for token in range(256) if token not in free][:3]
    assert list(generate_tokens(model, PROMPT, 8, stop_ids=set(), copy=copy_bias(unused, 0.0))) == free


def test_a_token_followed_by_several_raises_them_all():
    bias = copy_bias([5, 6, 5, 7, 5, 6], 2.0)
    assert {token: sorted(after.tolist()) for token, after in bias.following.items()} == {5: [6, 7], 6: [5], 7: [5]}


def test_after_a_colon_the_reader_does_not_stop_but_begins_the_quotation(model):
    source = [210, 211, 212]
    # the quotation, then what the reader writes of its own once the source has nothing to follow
    quoted = list(generate_tokens(model, PROMPT, 6, stop_ids=set(), copy=copy_bias(source, 1e4)))
    assert quoted[:3] == source
    own, after = quoted[3], quoted[4]
    if own in source or after in source:
        pytest.skip("the tiny model's own continuation repeats a token of the source")
    stopping = {after}
    assert list(generate_tokens(model, PROMPT, 6, stop_ids=stopping, copy=copy_bias(source, 1e4))) == [*source, own]
    # `own` announces what follows: the stop it would choose is barred and the quotation begins again
    announced = copy_bias(source, 1e4, announcing=frozenset({own}))
    assert list(generate_tokens(model, PROMPT, 5, stop_ids=stopping, copy=announced)) == [*source, own, source[0]]


def test_whitespace_keeps_an_announcement_open_and_anything_else_closes_it():
    bias = copy_bias([1, 2], 1.0, announcing=frozenset({58}), blank=frozenset({198, 220}))
    assert bias.announced(58, before=False)
    assert bias.announced(198, before=True) and not bias.announced(198, before=False)
    assert not bias.announced(40, before=True)


def test_the_tokens_ending_in_a_colon_and_those_of_whitespace_alone(runtime):
    tokenizer = runtime.tokenizer
    texts = {token: tokenizer.decode([token]) for token in range(tokenizer.vocab_size)}
    assert tokenizer.announcing_ids == {token for token, text in texts.items() if text.rstrip().endswith(":")}
    assert tokenizer.announcing_ids and tokenizer.blank_ids
    assert all(not texts[token].strip() for token in tokenizer.blank_ids)


def test_a_quotation_may_run_the_evidence_lines_together(runtime):
    tokenizer = runtime.tokenizer
    [y], [newline], [space], [t] = (tokenizer.encode(text) for text in ("y", "\n", " ", "t"))
    bias = quotation_bias(tokenizer, "the finally\n  suite")
    assert sorted(bias.following[y].tolist()) == sorted({newline, space})  # "finally\n" as stored, "finally " run on
    assert bias.opening == t
    assert sorted(copy_bias(tokenizer.encode("the finally\n  suite"), 1.0).following[y].tolist()) == [newline]
