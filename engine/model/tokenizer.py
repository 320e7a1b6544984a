"""The model's tokenizer and chat template, read from the GGUF metadata or a Hugging Face folder.

Both sources end up as a `tokenizers.Tokenizer` (the Rust library, fast and batchable) plus the chat
template rendered with Jinja the way Hugging Face renders it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import jinja2
from gguf import Keys, TokenType
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from engine.model.files import ModelError

# How each GGUF `tokenizer.ggml.pre` value splits text before byte-level BPE, as llama.cpp does it.
# SmolLM splits every digit on its own (its Hugging Face tokenizer.json has Digits(individual_digits)).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLIT_REGEX = {"llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT, "smaug-bpe": _LLAMA3_SPLIT,
                "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}
# GPT-2's own split; llama.cpp uses it for "default" and "gpt2", and for files that name no pre-tokenizer.
_GPT2_STYLE = {None, "default", "gpt2", "gpt-2"}


@dataclass
class ChatTokenizer:
    """A tokenizer with what generation needs beside it: the chat template and the end-of-turn ids."""

    backend: Tokenizer
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    stop_ids: set[int] = field(default_factory=set)

    @property
    def fingerprint(self) -> str:
        """A digest of the vocabulary and rules: token sequences made by one tokenizer mean nothing to another."""
        return hashlib.sha256(self.backend.to_str().encode()).hexdigest()[:16]

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    @cached_property
    def _marked_ids(self) -> tuple[frozenset[int], frozenset[int]]:
        """(`announcing_ids`, `blank_ids`), from each id's text alone (a 50k vocabulary decodes in about 50 ms)."""
        texts = self.backend.decode_batch([[token] for token in range(self.vocab_size)], skip_special_tokens=False)
        return (frozenset(token for token, text in enumerate(texts) if text.rstrip().endswith(":")),
                frozenset(token for token, text in enumerate(texts) if text and not text.strip()))

    @property
    def announcing_ids(self) -> frozenset[int]:
        """The ids whose text ends with a colon, whitespace after it aside: what follows them was announced."""
        return self._marked_ids[0]

    @property
    def blank_ids(self) -> frozenset[int]:
        """The ids whose text is whitespace alone."""
        return self._marked_ids[1]

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages` ([{"role", "content"}]), rendered by the model's own template."""
        if not self.chat_template:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + ("assistant: " if add_generation_prompt else "")
        return _compile_template(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "", eos_token=self.eos_token or "")


def load_tokenizer(model_path: Path) -> ChatTokenizer:
    """The tokenizer of a GGUF file or of a Hugging Face folder (tokenizer.json + tokenizer_config.json)."""
    if model_path.is_dir():
        return _tokenizer_from_folder(model_path)
    from engine.model.gguf_file import read_gguf_metadata

    return tokenizer_from_gguf_metadata(read_gguf_metadata(model_path), model_path)


def tokenizer_from_gguf_metadata(meta: dict, source: Path) -> ChatTokenizer:
    kind = meta.get(Keys.Tokenizer.MODEL)
    if kind != "gpt2":
        raise ModelError(f"{source}: tokenizer type {kind!r} is not supported (byte-level BPE 'gpt2' is); "
                         "pass a Hugging Face folder with tokenizer.json instead")
    pre = meta.get(Keys.Tokenizer.PRE)
    known = (_GPT2_STYLE | {"smollm"} | _SPLIT_REGEX.keys()) - {None}
    if pre is not None and pre not in known:
        raise ModelError(f"{source}: pre-tokenizer {pre!r} ({Keys.Tokenizer.PRE}) is not supported "
                         f"(known: {', '.join(sorted(known))}); pass a Hugging Face folder with tokenizer.json instead")
    tokens: list[str] = meta[Keys.Tokenizer.LIST]
    merges = [tuple(m.split(" ", 1)) for m in meta.get(Keys.Tokenizer.MERGES, [])]
    types: list[int] = meta.get(Keys.Tokenizer.TOKEN_TYPE) or [TokenType.NORMAL] * len(tokens)
    backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = _pre_tokenizer(pre)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, kind_ in zip(tokens, types) if kind_ == TokenType.CONTROL])
    backend.add_tokens([AddedToken(t, special=False, normalized=False)
                        for t, kind_ in zip(tokens, types) if kind_ == TokenType.USER_DEFINED])

    def named(key: str) -> str | None:
        index = meta.get(key)
        return tokens[index] if index is not None and 0 <= index < len(tokens) else None

    eos = named(Keys.Tokenizer.EOS_ID)
    return ChatTokenizer(backend=backend, chat_template=meta.get(Keys.Tokenizer.CHAT_TEMPLATE),
                         bos_token=named(Keys.Tokenizer.BOS_ID), eos_token=eos,
                         stop_ids=_stop_ids(backend, eos))


def _pre_tokenizer(pre: str | None) -> pre_tokenizers.PreTokenizer:
    if pre == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in _SPLIT_REGEX:
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(_SPLIT_REGEX[pre]), behavior="isolated"),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's split


def _tokenizer_from_folder(folder: Path) -> ChatTokenizer:
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.exists():
        raise ModelError(f"{folder}: no tokenizer.json in the model folder")
    backend = Tokenizer.from_file(str(tokenizer_file))
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    template = config.get("chat_template")
    template_file = folder / "chat_template.jinja"
    if template is None and template_file.exists():
        template = template_file.read_text()

    def token_text(value) -> str | None:
        return value.get("content") if isinstance(value, dict) else value

    eos = token_text(config.get("eos_token"))
    return ChatTokenizer(backend=backend, chat_template=template, bos_token=token_text(config.get("bos_token")),
                         eos_token=eos, stop_ids=_stop_ids(backend, eos))


def _stop_ids(backend: Tokenizer, eos: str | None) -> set[int]:
    """Ids that end an answer: the file's end-of-sequence token and the common end-of-turn markers."""
    names = {eos, "<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", "<|endoftext|>"} - {None}
    return {i for i in (backend.token_to_id(n) for n in names) if i is not None}


def _compile_template(source: str) -> jinja2.Template:
    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)
