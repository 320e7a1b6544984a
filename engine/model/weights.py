"""Model configuration and weights from a GGUF file or a Hugging Face folder, in one naming of our own.

Dequantising a GGUF takes seconds (and the tokenizer metadata as long again), so the result is cached
as safetensors plus a JSON sidecar keyed by the file's sha256; later loads map the cache in about a second.
The cache is written durably (temporary names, fsync, rename, the sidecar last) and checked on every load
(the sidecar parses, the safetensors header parses and accounts for the file's exact size): a cache cut
short by a full disk or a crash is rebuilt from the GGUF, never a traceback in every command.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from gguf import MODEL_ARCH, MODEL_TENSOR, TENSOR_NAMES, Keys, TensorNameMap
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from engine.model.files import ModelError, cache_dir, sha256_of
from engine.model.tokenizer import ChatTokenizer, load_tokenizer, tokenizer_from_gguf_metadata
from engine.safetensors_header import read_header
from ingest import durable

CACHE_FORMAT = 1
GGUF_ARCHITECTURES = {"llama", "mistral", "qwen2", "smollm"}


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_eps: float
    trained_context: int
    tie_embeddings: bool
    attention_bias: bool


@dataclass
class ModelFiles:
    """Everything a model needs, loaded: its config, weights in our naming, tokenizer and identity."""

    config: ModelConfig
    weights: dict[str, torch.Tensor]
    tokenizer: ChatTokenizer
    source: Path
    digest: str


def load_model_files(path: Path, use_cache: bool = True) -> ModelFiles:
    if path.is_dir():
        return _load_hf_folder(path)
    digest = sha256_of(path)
    cached = _cache_stem(digest)
    if use_cache and _cache_is_whole(cached):
        return _load_cache(cached, path, digest)
    files = _load_gguf(path, digest)
    if use_cache:
        _write_cache(files, cached)
    return files


def load_model_tokenizer(path: Path) -> ChatTokenizer:
    """Only the tokenizer, from the cache sidecar when there is one (no weights read)."""
    if path.is_dir():
        return load_tokenizer(path)
    sidecar = _read_sidecar(_cache_stem(sha256_of(path)))
    if sidecar is not None:
        return _tokenizer_from_sidecar(sidecar)
    return load_model_files(path).tokenizer


def _cache_stem(digest: str) -> Path:
    return cache_dir() / "weights" / f"{digest[:32]}-v{CACHE_FORMAT}"


def _load_gguf(path: Path, digest: str) -> ModelFiles:
    from engine.model.gguf_file import iter_gguf_tensors, open_gguf, read_gguf_metadata

    reader = open_gguf(path)
    meta = read_gguf_metadata(path, reader)
    arch = meta.get(Keys.General.ARCHITECTURE)
    if arch not in GGUF_ARCHITECTURES:
        raise ModelError(f"{path}: architecture {arch!r} is not a Llama-family model "
                         f"(supported: {', '.join(sorted(GGUF_ARCHITECTURES))})")
    raw = {name: torch.from_numpy(values) for name, values in iter_gguf_tensors(path, reader)}
    config = _config_from_gguf(meta, arch, raw, path)
    weights = _rename(raw, config, permuted_qk=arch in {"llama", "mistral", "smollm"})
    _check_shapes(weights, config, path)
    return ModelFiles(config, weights, tokenizer_from_gguf_metadata(meta, path), path, digest)


def _config_from_gguf(meta: dict, arch: str, raw: dict[str, torch.Tensor], path: Path) -> ModelConfig:
    def key(template: str, default=None):
        name = template.format(arch=arch)
        value = meta.get(name, default)
        if value is None:
            raise ModelError(f"{path}: metadata {name} is missing")
        return value

    hidden, heads = int(key(Keys.LLM.EMBEDDING_LENGTH)), int(key(Keys.Attention.HEAD_COUNT))
    embedding = _gguf_name(MODEL_TENSOR.TOKEN_EMBD)
    if embedding not in raw:
        raise ModelError(f"{path}: no {embedding} tensor")
    return ModelConfig(
        architecture=arch,
        vocab_size=int(raw[embedding].shape[0]),
        hidden_size=hidden,
        intermediate_size=int(key(Keys.LLM.FEED_FORWARD_LENGTH)),
        num_layers=int(key(Keys.LLM.BLOCK_COUNT)),
        num_heads=heads,
        num_kv_heads=int(key(Keys.Attention.HEAD_COUNT_KV, heads)),
        head_dim=int(key(Keys.Attention.KEY_LENGTH, hidden // heads)),
        rope_theta=float(key(Keys.Rope.FREQ_BASE, 10000.0)),
        rms_eps=float(key(Keys.Attention.LAYERNORM_RMS_EPS, 1e-5)),
        trained_context=int(key(Keys.LLM.CONTEXT_LENGTH, 2048)),
        tie_embeddings=_gguf_name(MODEL_TENSOR.OUTPUT) not in raw,
        attention_bias=_gguf_name(MODEL_TENSOR.ATTN_Q, 0, "bias") in raw,
    )


# Our names for the tensors `gguf` knows by type; its TensorNameMap recognises both the GGUF names and the
# Hugging Face ones, so one table serves both sources.
_GLOBAL_NAMES = {MODEL_TENSOR.TOKEN_EMBD: "embed", MODEL_TENSOR.OUTPUT_NORM: "norm", MODEL_TENSOR.OUTPUT: "lm_head"}
_LAYER_NAMES = {MODEL_TENSOR.ATTN_NORM: "attn_norm", MODEL_TENSOR.ATTN_Q: "q", MODEL_TENSOR.ATTN_K: "k",
                MODEL_TENSOR.ATTN_V: "v", MODEL_TENSOR.ATTN_OUT: "o", MODEL_TENSOR.FFN_NORM: "mlp_norm",
                MODEL_TENSOR.FFN_GATE: "gate", MODEL_TENSOR.FFN_UP: "up", MODEL_TENSOR.FFN_DOWN: "down"}


def _gguf_name(kind: MODEL_TENSOR, layer: int | None = None, suffix: str = "weight") -> str:
    return f"{TENSOR_NAMES[kind].format(bid=layer)}.{suffix}"


def _rename(raw: dict[str, torch.Tensor], config: ModelConfig, permuted_qk: bool) -> dict[str, torch.Tensor]:
    """GGUF or Hugging Face names to ours; undo llama.cpp's q/k row permutation (`permuted_qk`) so RoPE uses
    the rotate-half convention. Tensors the model does not use (rotary tables, ...) are left out."""
    names = TensorNameMap(MODEL_ARCH.LLAMA, config.num_layers)
    weights = {}
    for name, tensor in raw.items():
        found = names.get_type_and_name(name, try_suffixes=(".weight", ".bias"))
        if found is None:
            continue
        kind, gguf_name = found
        parts = gguf_name.split(".")
        if kind in _GLOBAL_NAMES:
            weights[f"{_GLOBAL_NAMES[kind]}.{parts[-1]}"] = tensor
        elif kind in _LAYER_NAMES and parts[0] == "blk":
            ours = _LAYER_NAMES[kind]
            if permuted_qk and ours in {"q", "k"}:
                tensor = _unpermute_rows(tensor, config.num_heads if ours == "q" else config.num_kv_heads)
            weights[f"layers.{parts[1]}.{ours}.{parts[-1]}"] = tensor
    return weights


def _unpermute_rows(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    half = tensor.shape[0] // heads // 2
    return tensor.reshape(heads, half, 2, *tensor.shape[1:]).transpose(1, 2).reshape(tensor.shape).contiguous()


def _load_hf_folder(folder: Path) -> ModelFiles:
    config_file = folder / "config.json"
    shards = sorted(folder.glob("*.safetensors"))
    if not config_file.exists() or not shards:
        raise ModelError(f"{folder}: a Hugging Face model folder needs config.json and *.safetensors")
    hf = json.loads(config_file.read_text())
    if hf.get("model_type") not in {"llama", "mistral", "qwen2"}:
        raise ModelError(f"{folder}: model_type {hf.get('model_type')!r} is not a Llama-family model")
    raw: dict[str, torch.Tensor] = {}
    for shard in shards:
        raw.update(load_file(shard))
    heads = hf["num_attention_heads"]
    config = ModelConfig(
        architecture=hf["model_type"], vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"], num_layers=hf["num_hidden_layers"], num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads", heads), head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        rope_theta=float(hf.get("rope_theta", (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0))),
        rms_eps=float(hf.get("rms_norm_eps", 1e-6)), trained_context=hf.get("max_position_embeddings", 2048),
        tie_embeddings="lm_head.weight" not in raw or hf.get("tie_word_embeddings", False),
        attention_bias="model.layers.0.self_attn.q_proj.bias" in raw,
    )
    weights = {name: tensor.float() for name, tensor in _rename(raw, config, permuted_qk=False).items()
               if not (config.tie_embeddings and name == "lm_head.weight")}
    _check_shapes(weights, config, folder)
    return ModelFiles(config, weights, load_tokenizer(folder), folder, digest=_folder_digest(shards))


def _folder_digest(shards: list[Path]) -> str:
    return "-".join(f"{shard.name}:{shard.stat().st_size}" for shard in shards)


def _check_shapes(weights: dict[str, torch.Tensor], config: ModelConfig, source: Path) -> None:
    expected = {"embed.weight": (config.vocab_size, config.hidden_size), "norm.weight": (config.hidden_size,)}
    for i in range(config.num_layers):
        q_rows, kv_rows = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
        expected |= {f"layers.{i}.q.weight": (q_rows, config.hidden_size),
                     f"layers.{i}.k.weight": (kv_rows, config.hidden_size),
                     f"layers.{i}.v.weight": (kv_rows, config.hidden_size),
                     f"layers.{i}.o.weight": (config.hidden_size, q_rows),
                     f"layers.{i}.gate.weight": (config.intermediate_size, config.hidden_size),
                     f"layers.{i}.up.weight": (config.intermediate_size, config.hidden_size),
                     f"layers.{i}.down.weight": (config.hidden_size, config.intermediate_size),
                     f"layers.{i}.attn_norm.weight": (config.hidden_size,),
                     f"layers.{i}.mlp_norm.weight": (config.hidden_size,)}
    for name, shape in expected.items():
        if name not in weights:
            raise ModelError(f"{source}: weight {name} is missing")
        if tuple(weights[name].shape) != shape:
            raise ModelError(f"{source}: weight {name} has shape {tuple(weights[name].shape)}, expected {shape}")


def _write_cache(files: ModelFiles, cached: Path) -> None:
    """Writes the cache durably: each file whole under a temporary name, fsynced, renamed into place, the
    sidecar last (a sidecar names a whole tensors file), then the folder fsynced for the renames."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = files.tokenizer
    sidecar = {"format": CACHE_FORMAT, "config": asdict(files.config), "tokenizer": tokenizer.backend.to_str(),
               "chat_template": tokenizer.chat_template, "bos_token": tokenizer.bos_token,
               "eos_token": tokenizer.eos_token, "stop_ids": sorted(tokenizer.stop_ids)}
    cached.with_suffix(".json").unlink(missing_ok=True)  # no sidecar while the tensors file is replaced
    with durable.written(cached.with_suffix(".safetensors")) as partial:
        save_file({name: tensor.contiguous() for name, tensor in files.weights.items()}, str(partial))
    with durable.written(cached.with_suffix(".json")) as partial:
        partial.write_text(json.dumps(sidecar))


def _read_sidecar(cached: Path) -> dict | None:
    """The cache's JSON sidecar, or None when it is missing, cut short or of another cache format."""
    try:
        sidecar = json.loads(cached.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return sidecar if isinstance(sidecar, dict) and sidecar.get("format") == CACHE_FORMAT else None


def _cache_is_whole(cached: Path) -> bool:
    """Whether the cache can be loaded: the sidecar is whole, and the safetensors header parses and its
    tensors end exactly at the end of the file (a truncated or padded file does not)."""
    if _read_sidecar(cached) is None:
        return False
    try:
        header, expected, size = read_header(cached.with_suffix(".safetensors"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return False
    return any(name != "__metadata__" for name in header) and expected == size


def _load_cache(cached: Path, source: Path, digest: str) -> ModelFiles:
    sidecar = json.loads(cached.with_suffix(".json").read_text())
    weights = load_file(str(cached.with_suffix(".safetensors")))
    return ModelFiles(ModelConfig(**sidecar["config"]), weights, _tokenizer_from_sidecar(sidecar), source, digest)


def _tokenizer_from_sidecar(sidecar: dict) -> ChatTokenizer:
    return ChatTokenizer(backend=Tokenizer.from_str(sidecar["tokenizer"]), chat_template=sidecar["chat_template"],
                         bos_token=sidecar["bos_token"], eos_token=sidecar["eos_token"],
                         stop_ids=set(sidecar["stop_ids"]))

