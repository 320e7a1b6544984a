"""Our Llama code against Hugging Face transformers loading the same GGUF file (an independent reader)."""

from __future__ import annotations

import pytest
import torch

from engine.model.generate import chat_prompt_ids, generate_tokens
from engine.runtime import load_runtime

transformers = pytest.importorskip("transformers")

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "In 1969, Neil Armstrong became the first person to walk on the Moon. He said:",
    "Ünïcödé tëxt — “quotes” and emoji 🚀 mixed with\ttabs   and  spaces",
]


@pytest.fixture(scope="module")
def ours(default_model_path):
    return load_runtime(str(default_model_path), "cpu")


@pytest.fixture(scope="module")
def reference(default_model_path):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        default_model_path.parent, gguf_file=default_model_path.name, torch_dtype=torch.float32)
    return model.eval()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_logits_match_transformers(ours, reference, prompt):
    ids = ours.tokenizer.encode(prompt)
    tokens = torch.tensor([ids])
    with torch.inference_mode():
        mine = ours.model(tokens)
        theirs = reference(tokens).logits.float()
    assert mine.shape == theirs.shape
    assert (mine - theirs).abs().max().item() < 1e-3


def test_greedy_generation_matches_transformers(ours, reference):
    prompt_ids = chat_prompt_ids(ours.tokenizer, "Name three rivers in Europe and one fact about each.")
    mine = list(generate_tokens(ours.model, prompt_ids, 32, stop_ids=set()))
    with torch.inference_mode():
        theirs = reference.generate(torch.tensor([prompt_ids]), max_new_tokens=32, min_new_tokens=32,
                                    do_sample=False, eos_token_id=None, pad_token_id=None)
    assert mine == theirs[0, len(prompt_ids):].tolist()
    assert len(mine) == 32


def test_cached_decoding_matches_one_full_forward(ours):
    """Logits of the last position are the same whether the prefix came through the KV cache or not."""
    prompt_ids = ours.tokenizer.encode("A short story about a lighthouse keeper who")
    generated = list(generate_tokens(ours.model, prompt_ids, 8, stop_ids=set()))
    with torch.inference_mode():
        full = ours.model(torch.tensor([prompt_ids + generated[:-1]]))
    assert full[0, -1].argmax().item() == generated[-1]


def test_sampling_is_repeatable_by_seed_and_tends_to_greedy_as_temperature_falls(ours):
    prompt_ids = chat_prompt_ids(ours.tokenizer, "Write one sentence about the sea.")
    greedy = list(generate_tokens(ours.model, prompt_ids, 12, stop_ids=set()))
    cold = list(generate_tokens(ours.model, prompt_ids, 12, stop_ids=set(), temperature=1e-4, seed=1))
    first = list(generate_tokens(ours.model, prompt_ids, 12, stop_ids=set(), temperature=1.5, seed=7))
    again = list(generate_tokens(ours.model, prompt_ids, 12, stop_ids=set(), temperature=1.5, seed=7))
    others = [list(generate_tokens(ours.model, prompt_ids, 12, stop_ids=set(), temperature=1.5, seed=seed))
              for seed in (8, 9)]
    assert cold == greedy
    assert first == again
    assert any(other != first for other in others)
