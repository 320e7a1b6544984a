"""The passkey haystack follows the protocol, and the baseline finds a key in a short one."""

from __future__ import annotations

import random

import pytest

from engine.model.weights import load_model_tokenizer
from engine.runtime import load_runtime
from engine.selftest.passkey import FILLER, TASK, full_attention_answer, make_trial, needle


@pytest.fixture(scope="module")
def tokenizer(default_model_path):
    return load_model_tokenizer(default_model_path)


@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
def test_haystack_has_one_needle_at_the_depth_asked(tokenizer, depth):
    trial = make_trial(tokenizer, 2000, random.Random(7), depth=depth)
    assert trial.haystack.startswith(TASK)
    assert trial.haystack.count(needle(trial.passkey)) == 1
    before, after = trial.haystack.split(needle(trial.passkey))
    fillers_before, fillers_after = before.count(FILLER), after.count(FILLER)
    assert abs(fillers_before / (fillers_before + fillers_after) - depth) < 0.02
    assert 1900 <= trial.tokens <= 2000


def test_trial_passes_only_with_the_key(tokenizer):
    trial = make_trial(tokenizer, 300, random.Random(1))
    assert trial.passes(f"The pass key is {trial.passkey}.")
    assert not trial.passes("The pass key is 12.")


def test_full_attention_baseline_finds_the_key_in_a_short_haystack(default_model_path, tokenizer):
    runtime = load_runtime(str(default_model_path), "cpu")
    trial = make_trial(tokenizer, 400, random.Random(3), depth=0.5)
    assert trial.passes(full_attention_answer(runtime, trial))


def test_too_short_a_haystack_is_refused(tokenizer):
    with pytest.raises(ValueError, match="target_tokens"):
        make_trial(tokenizer, 10, random.Random(0))
