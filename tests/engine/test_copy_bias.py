"""Holding the reader to a quotation (`CopyBias`): once it has produced a token of the source, the token that
follows it there comes next; the first token is the reader's own choice, and a bias of nothing changes nothing."""

from __future__ import annotations

import pytest

from engine.model.generate import copy_bias, generate_tokens
from engine.runtime import load_runtime
from tests.engine.tiny_gguf import tiny_model_in

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("copy")
    with tiny_model_in(folder) as path:
        yield load_runtime(str(path), "cpu").model


PROMPT = [72, 101, 108, 108, 111, 44, 32]


def test_a_begun_quotation_is_finished(model):
    free = list(generate_tokens(model, PROMPT, 6, stop_ids=set()))
    # a source that holds the reader's own first token, followed by tokens it would not have chosen
    tail = [token for token in (200, 201, 202, 203, 204) if token not in free][:4]
    source = [90, free[0], *tail]
    held = list(generate_tokens(model, PROMPT, 5, stop_ids=set(), copy=copy_bias(source, 1e4)))
    assert held == [free[0], *tail]


def test_without_strength_or_without_a_match_generation_is_unchanged(model):
    free = list(generate_tokens(model, PROMPT, 8, stop_ids=set()))
    assert list(generate_tokens(model, PROMPT, 8, stop_ids=set(), copy=copy_bias([free[0], 250, 251], 0.0))) == free
    unused = [token for token in range(256) if token not in free][:3]
    assert list(generate_tokens(model, PROMPT, 8, stop_ids=set(), copy=copy_bias(unused, 1e4))) == free


def test_a_token_followed_by_several_raises_them_all():
    bias = copy_bias([5, 6, 5, 7, 5, 6], 2.0)
    assert {token: sorted(after.tolist()) for token, after in bias.following.items()} == {5: [6, 7], 6: [5], 7: [5]}
