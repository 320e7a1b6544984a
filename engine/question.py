"""What a question may be: long enough to mean something, short enough that no question can stall the engine.

A question is read twice by the model, once alone for retrieval (its queries) and once inside the
answer's prompt, and both passes cost time and memory quadratic in its length: a 100,000-character
question ran for over 14 minutes of CPU and 2.6 GB before its first token, and in the chat it held the
one reader every other user waits for. So it is capped in tokens before the model sees it.
"""

from __future__ import annotations

from engine.errors import UsageError
from engine.model.tokenizer import ChatTokenizer

# 512 tokens (about 2,000 characters of English, a long paragraph) is far more than any question needs,
# and keeps the answer's prompt well inside the context the model was trained on: the chat template
# (~40 tokens) + excerpts (engine.api.MAX_CONTEXT_TOKENS = 1024, plus their labels and whole-line edges)
# + this question + the answer (128 tokens) stays under 2,048, the smallest context a Llama-family
# model loaded here declares, and a quarter of SmolLM2-135M's 8,192.
MAX_QUESTION_TOKENS = 512
# No tokenizer makes a token of more than a few dozen characters of text; past this many characters the
# question is refused before it is tokenized, so a pasted book costs nothing either.
MAX_QUESTION_CHARS = MAX_QUESTION_TOKENS * 32
MIN_QUESTION_CHARS = 2  # one character ("?", "a") is not a question any excerpt could answer


def question_limit(trained_context: int) -> int:
    """The most tokens a question may have for a model trained on `trained_context` tokens: MAX_QUESTION_TOKENS,
    or a quarter of a smaller model's context, so the excerpts and the answer always keep room."""
    return min(MAX_QUESTION_TOKENS, trained_context // 4)


def check_question(tokenizer: ChatTokenizer, question: str, trained_context: int) -> None:
    """Raises UsageError, with one line saying what is wrong, for an empty, 1-character or too long question."""
    limit = question_limit(trained_context)
    text = question.strip()
    if not text:
        raise UsageError("the question is empty")
    if len(text) < MIN_QUESTION_CHARS:
        raise UsageError(f"the question {text!r} is too short: ask in words")
    if len(text) > MAX_QUESTION_CHARS:
        raise UsageError(f"the question is too long ({len(text):,} characters; at most {limit} tokens, about "
                         f"{limit * 4:,} characters): ask it in fewer words")
    tokens = len(tokenizer.encode(text))
    if tokens > limit:
        raise UsageError(f"the question is too long ({tokens:,} tokens; at most {limit}): ask it in fewer words")
