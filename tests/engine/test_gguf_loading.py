"""Loading Llama GGUF files of every common type, checked against transformers on the same weights."""

from __future__ import annotations

import pytest
import torch

from engine.model.weights import load_model_files
from engine.runtime import load_runtime
from tests.engine.tiny_gguf import tiny_reference_model, write_tiny_gguf

pytest.importorskip("transformers")

TYPES = ["F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("qtype", TYPES)
def test_tiny_llama_logits_match_transformers_on_the_stored_weights(tmp_path, qtype):
    reference = tiny_reference_model()
    stored = write_tiny_gguf(reference, tmp_path / f"tiny-{qtype}.gguf", qtype)
    reference.load_state_dict({name: torch.from_numpy(array) for name, array in stored.items()})
    ours = load_runtime(str(tmp_path / f"tiny-{qtype}.gguf"), "cpu")
    tokens = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = reference(tokens).logits
        got = ours.model(tokens)
    assert (got - expected).abs().max().item() < 1e-4


def test_second_load_comes_from_the_cache_with_identical_weights(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(tiny_reference_model(), path, "Q8_0")
    first = load_model_files(path)
    assert list((tmp_path / "cache" / "weights").glob("*.safetensors"))
    second = load_model_files(path)
    assert second.config == first.config
    assert all(torch.equal(first.weights[name], second.weights[name]) for name in first.weights)
    assert second.tokenizer.encode("héllo") == first.tokenizer.encode("héllo")


def test_tiny_tokenizer_from_metadata_treats_control_tokens_whole(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(tiny_reference_model(), path)
    tokenizer = load_model_files(path).tokenizer
    assert tokenizer.encode("<|im_start|>ab") == [256, ord("a"), ord("b")]
    assert tokenizer.stop_ids == {257}


def test_hugging_face_folder_loads_and_matches_transformers(tmp_path):
    reference = tiny_reference_model(seed=3)
    folder = tmp_path / "hf-model"
    reference.save_pretrained(folder)
    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(reference, gguf_path)
    (folder / "tokenizer.json").write_text(load_model_files(gguf_path).tokenizer.backend.to_str())
    (folder / "tokenizer_config.json").write_text('{"eos_token": "<|im_end|>", "chat_template": "{{ messages[0][\'content\'] }}"}')
    ours = load_runtime(str(folder), "cpu")
    tokens = torch.randint(0, 256, (1, 33), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert (ours.model(tokens) - reference(tokens).logits).abs().max().item() < 1e-4
    assert ours.tokenizer.stop_ids == {257}
    assert ours.tokenizer.render_chat([{"role": "user", "content": "ping"}]) == "ping"
