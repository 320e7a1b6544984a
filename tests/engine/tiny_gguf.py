"""Writes small Llama GGUF files from a random transformers Llama, the way llama.cpp's converter does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf.quants import dequantize, quantize

HIDDEN, FFN, HEADS, KV_HEADS, LAYERS = 64, 128, 4, 2, 2
SPECIAL = ["<|im_start|>", "<|im_end|>"]


def byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def tiny_reference_model(seed: int = 0):
    import transformers

    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=256 + len(SPECIAL), hidden_size=HIDDEN, intermediate_size=FFN,
                                      num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                      max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-5,
                                      tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norm weights, so a mix-up of norms cannot pass
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model


def _llamacpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter reorders q/k rows from rotate-half pairs (i, i+D/2) to adjacent pairs."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def write_tiny_gguf(model, path: Path, qtype: str = "F32", architecture: str = "llama",
                    pre_tokenizer: str | None = None) -> dict[str, np.ndarray]:
    """Writes `model` as GGUF with matrices in `qtype`; returns the HF-named weights as the file holds them.
    `pre_tokenizer` is written as tokenizer.ggml.pre when given (llama.cpp's converter always writes one)."""
    kind = gguf.GGMLQuantizationType[qtype]
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(LAYERS)
    writer.add_context_length(512)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    if pre_tokenizer is not None:
        writer.add_tokenizer_pre(pre_tokenizer)
    writer.add_token_list(byte_alphabet() + SPECIAL)
    writer.add_token_types([1] * 256 + [3] * len(SPECIAL))
    writer.add_token_merges([])
    writer.add_eos_token_id(257)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    stored = {}
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        if name == "model.embed_tokens.weight":
            target = "token_embd.weight"
        elif name == "model.norm.weight":
            target = "output_norm.weight"
        elif name == "lm_head.weight":
            target = "output.weight"
        else:
            layer, rest = name[len("model.layers."):].split(".", 1)
            module = rest.rsplit(".", 1)[0]
            target = f"blk.{layer}.{_NAMES[module]}.weight"
            if module == "self_attn.q_proj":
                array = _llamacpp_permute(array, HEADS)
            elif module == "self_attn.k_proj":
                array = _llamacpp_permute(array, KV_HEADS)
        if array.ndim == 2 and kind != gguf.GGMLQuantizationType.F32:
            packed = quantize(array, kind)
            writer.add_tensor(target, packed, raw_dtype=kind)
            stored_array = dequantize(packed, kind).reshape(array.shape)
        else:
            writer.add_tensor(target, array)
            stored_array = array
        if "q_proj" in name:
            stored_array = _llamacpp_permute_inverse(stored_array, HEADS)
        elif "k_proj" in name:
            stored_array = _llamacpp_permute_inverse(stored_array, KV_HEADS)
        stored[name] = stored_array
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


def _llamacpp_permute_inverse(weight: np.ndarray, heads: int) -> np.ndarray:
    return weight.reshape(heads, weight.shape[0] // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


@contextmanager
def tiny_model_in(folder: Path) -> Iterator[Path]:
    """A tiny Q8_0 model written into `folder`, with the weights cache kept in `folder/cache` while the
    block runs (module-scoped fixtures cannot use the function-scoped monkeypatch)."""
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENGINE_CACHE", str(folder / "cache"))
        model = folder / "tiny.gguf"
        write_tiny_gguf(tiny_reference_model(), model, "Q8_0")
        yield model
