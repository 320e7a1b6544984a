"""Chat-templated generation (greedy, or sampled at a temperature) that streams text as it is produced."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tokenizers.decoders import DecodeStream

from engine.model.llama import Llama
from engine.model.tokenizer import ChatTokenizer


@dataclass(frozen=True)
class CopyBias:
    """Favours a quotation of a source text: after each generated token, the logits of the tokens that follow
    it somewhere in the source (`following`) are raised by `strength`. A small reader that starts to quote its
    evidence otherwise drifts off it within a few words into something the text does not say.

    The answer opens the quotation: at its first token, and after a colon that announces what follows ("The
    answer to this question is:"), the source's first token (`opening`) gets the strength too and the answer
    may not end. Left free, the 135M reader opened with its own frame ("The exception that is raised if …") and
    joined the quotation after the words that answer, or ended its answer at the colon. `announcing`: the ids
    whose text ends with a colon; `blank`: the ids of whitespace alone, which leave an announcement open. With
    no strength, nothing is changed."""

    following: dict[int, torch.Tensor]
    strength: float
    opening: int | None = None
    announcing: frozenset[int] = frozenset()
    blank: frozenset[int] = frozenset()

    def announced(self, token: int, before: bool) -> bool:
        """Whether an announcement is open after `token`, given whether one was open before it."""
        return token in self.announcing or (before and token in self.blank)


def copy_bias(source: list[int], strength: float, announcing: frozenset[int] = frozenset(),
              blank: frozenset[int] = frozenset(), variants: tuple[list[int], ...] = ()) -> CopyBias:
    """The CopyBias of the token ids `source` (`announcing`, `blank`: as CopyBias has them); the tokens that
    follow each other in `variants`, other forms of the same text, are followed too."""
    following: dict[int, set[int]] = {}
    for ids in (source, *variants):
        for token, after in zip(ids, ids[1:]):
            following.setdefault(token, set()).add(after)
    return CopyBias({token: torch.tensor(sorted(after)) for token, after in following.items()}, strength,
                    source[0] if source else None, announcing, blank)


@dataclass
class Generated:
    """What one generation produced, for `--json` and the benchmarks."""

    text: str
    prompt_tokens: int
    new_tokens: int


def chat_prompt_ids(tokenizer: ChatTokenizer, prompt: str, system: str | None = None) -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return tokenizer.encode(tokenizer.render_chat(messages, add_generation_prompt=True))


def question_prompt(tokenizer: ChatTokenizer, question: str) -> tuple[list[int], int, int]:
    """The chat prompt asking `question`, with where the question's own tokens start in it and how many
    there are: retrieval scores by those tokens' queries, not by the template's."""
    rendered = tokenizer.render_chat([{"role": "user", "content": question}])
    start = len(tokenizer.encode(rendered[:rendered.index(question)]))
    return tokenizer.encode(rendered), start, len(tokenizer.encode(question))


@torch.inference_mode()
def generate_tokens(model: Llama, prompt_ids: list[int], max_new_tokens: int, stop_ids: set[int],
                    temperature: float = 0.0, seed: int | None = None, copy: CopyBias | None = None) -> Iterator[int]:
    """Token ids one at a time, stopping at a stop id (not yielded) or the budget: the most likely token at
    temperature 0, else a draw from the softmax of logits / temperature (`seed` makes draws repeatable);
    `copy` raises the tokens that continue a quotation of its source."""
    device = model.embed.weight.device
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    attention = model.cached_attention(1, len(prompt_ids) + max_new_tokens)
    tokens, start, last, announced = torch.tensor([prompt_ids], device=device), 0, None, True  # the answer opens
    stops = sorted(stop_ids)
    for _ in range(max_new_tokens):
        logits = model.logits(model.hidden_states(tokens, attention, start)[:, -1]).float()
        start += tokens.shape[1]
        if copy is not None and last in copy.following:
            logits[:, copy.following[last].to(device)] += copy.strength
        if copy is not None and copy.strength and announced:
            logits[:, stops] = float("-inf")
            if copy.opening is not None:
                logits[:, copy.opening] += copy.strength
        if temperature > 0:
            chosen = int(torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator))
        else:
            chosen = int(logits.argmax(-1))
        if chosen in stop_ids:
            return
        yield chosen
        tokens, last = torch.tensor([[chosen]], device=device), chosen
        announced = copy is not None and copy.announced(chosen, announced)


def stream_text(tokenizer: ChatTokenizer, ids: Iterator[int]) -> Iterator[str]:
    """Text pieces as tokens arrive. tokenizers' DecodeStream decodes each token against a short window of the
    ones before it, so a step costs the same however long the answer grows; a token that ends inside a
    multi-byte character yields nothing until the character is whole."""
    stream = DecodeStream(skip_special_tokens=True)
    for token in ids:
        piece = stream.step(tokenizer.backend, token)
        if piece:
            yield piece
