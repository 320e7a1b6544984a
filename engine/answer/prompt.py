"""The prompt an answer is generated from: the chat template around the labelled excerpts and the question."""

from __future__ import annotations

from engine.answer.excerpts import Excerpt
from engine.runtime import Runtime

SYSTEM = ("You answer questions about the user's own files. Use the excerpts given with the question; "
          "answer briefly.")
PLACEHOLDER = "\x00EXCERPTS\x00"


def _label(excerpt: Excerpt) -> str:
    where = f", page {excerpt.citation.page}" if excerpt.citation.page else ""
    return f"[{excerpt.citation.paths[0]}{where}]\n"


def build_prompt(runtime: Runtime, excerpts: list[Excerpt], question: str) -> list[int]:
    """Prompt token ids: the chat template around the excerpts (a label, then their own stored tokens)
    and the question; sets each excerpt's place in the prompt."""
    tokenizer = runtime.tokenizer
    rendered = tokenizer.render_chat([{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": f"Excerpts from my files:\n\n{PLACEHOLDER}"
                                                                  f"Question: {question}"}])
    before, after = rendered.split(PLACEHOLDER)
    ids = tokenizer.encode(before)
    for excerpt in excerpts:
        ids += tokenizer.encode(_label(excerpt))
        excerpt.prompt_start = len(ids)
        ids += excerpt.ids
        excerpt.prompt_end = len(ids)
        ids += tokenizer.encode("\n\n")
    return ids + tokenizer.encode(after)


def fit_excerpts(runtime: Runtime, excerpts: list[Excerpt], question: str, max_prompt_tokens: int) -> list[Excerpt]:
    """The excerpts, the last ones dropped until the whole prompt fits `max_prompt_tokens`.

    Excerpts are chosen by a token budget, but each grows to whole lines and gets a label, so the prompt
    can exceed the budget a little; this bounds it for certain, whatever the excerpts and the question."""
    kept = list(excerpts)
    while kept and len(build_prompt(runtime, kept, question)) > max_prompt_tokens:
        kept.pop()
    return kept
