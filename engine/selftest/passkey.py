"""The passkey-retrieval self-test, in the standard protocol (Landmark Attention, LongLLaMA).

A haystack of repeated filler hides one sentence with a random number at a chosen depth; the model is
asked for the number. A trial passes when the answer contains it. The haystack here is plain text so
it can go through the same ingest and engine path as real documents; `full_attention_answer` is the
baseline: the same model reading the whole haystack in its context with plain causal attention.
"""

from __future__ import annotations

import random
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from engine.answer.generation import Answer
from engine.model.generate import generate_tokens, stream_text
from engine.runtime import Runtime
from ingest.pipeline import IngestOptions
from ingest.sources import WalkOptions

TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
        "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key?"


def needle(passkey: int) -> str:
    return f"The pass key is {passkey}. Remember it. {passkey} is the pass key."


@dataclass(frozen=True)
class PasskeyTrial:
    passkey: int
    depth: float
    haystack: str
    tokens: int

    def passes(self, answer: str) -> bool:
        return str(self.passkey) in answer


def make_trial(tokenizer, target_tokens: int, rng: random.Random, depth: float | None = None) -> PasskeyTrial:
    """A haystack of about `target_tokens` tokens with the needle at `depth` (0 = start, 1 = end)."""
    if target_tokens < 64:
        raise ValueError(f"target_tokens: a haystack needs at least 64 tokens (got {target_tokens})")
    passkey = rng.randint(10000, 99999)
    depth = rng.random() if depth is None else depth
    filler_tokens = len(tokenizer.encode(" " + FILLER))
    fixed = len(tokenizer.encode(TASK + " " + needle(passkey)))
    repeats = max(1, (target_tokens - fixed) // filler_tokens)
    before = round(repeats * depth)
    parts = [TASK] + [FILLER] * before + [needle(passkey)] + [FILLER] * (repeats - before)
    haystack = " ".join(parts)
    return PasskeyTrial(passkey, depth, haystack, len(tokenizer.encode(haystack)))


def full_attention_answer(runtime: Runtime, trial: PasskeyTrial, max_new_tokens: int = 24) -> str:
    """The baseline: haystack and question in one user turn, read with the model's own causal attention."""
    tokenizer = runtime.tokenizer
    prompt = tokenizer.render_chat([{"role": "user", "content": f"{trial.haystack}\n\n{QUESTION}"}])
    prompt_ids = tokenizer.encode(prompt) + tokenizer.encode("The pass key is")
    ids = generate_tokens(runtime.model, prompt_ids, max_new_tokens, tokenizer.stop_ids)
    return "".join(stream_text(tokenizer, ids))


@dataclass
class TrialResult:
    length: int
    depth: float
    passed: bool
    baseline_passed: bool | None
    answer: str
    # whether retrieval put the passkey in the prompt, which tells a retrieval miss from a misread needle
    # (None in reports written before it was recorded)
    needle_read: bool | None = None


def engine_answer(runtime: Runtime, trial: PasskeyTrial, workdir: Path) -> tuple[str, bool]:
    """The haystack as a file, through the same ingest and engine path as real documents, in a fresh store.
    Returns the answer and whether the passkey was in the excerpts the model read."""
    from engine.api import open_store

    corpus = workdir / "corpus"
    corpus.mkdir(parents=True)
    haystack = corpus / "haystack.txt"
    haystack.write_text(trial.haystack)
    # a 10M-token haystack is one file of about 40 MB, over the ingest's default cap for a single file
    options = IngestOptions(walk=WalkOptions(max_file_bytes=max(WalkOptions.max_file_bytes, haystack.stat().st_size)))
    with open_store(workdir / "store", runtime=runtime, write=True) as memory:
        memory.add([corpus], options=options)
        memory.process()
        answer = next(event for event in memory.ask(QUESTION, max_new_tokens=24) if isinstance(event, Answer))
    read = any(str(trial.passkey) in runtime.tokenizer.decode(excerpt.ids) for excerpt in answer.excerpts)
    return answer.text, read


def run_passkey(runtime: Runtime, lengths: list[int], trials: int, seed: int = 0,
                baseline_limit: int | None = None, on_result=None, skip=None) -> list[TrialResult]:
    """`trials` haystacks per length at depths spread evenly; the full-attention baseline where it fits.
    `skip(length, depth)` true leaves a trial out (its haystack is still drawn, so the others stay the same
    as in a full run: how a long run stopped early is finished)."""
    baseline_limit = baseline_limit if baseline_limit is not None else runtime.config.trained_context
    rng = random.Random(seed)
    results = []
    for length in lengths:
        for index in range(trials):
            depth = (index + 0.5) / trials
            trial = make_trial(runtime.tokenizer, length, rng, depth)
            if skip is not None and skip(length, depth):
                continue
            with tempfile.TemporaryDirectory(prefix="passkey-") as workdir:
                answer, needle_read = engine_answer(runtime, trial, Path(workdir))
            baseline = None
            if trial.tokens + 64 <= baseline_limit:
                baseline = trial.passes(full_attention_answer(runtime, trial))
            result = TrialResult(length, depth, trial.passes(answer), baseline, answer, needle_read)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def summarise(results: list[TrialResult]) -> list[dict]:
    """Per length: trials, engine accuracy, the share of trials in which retrieval put the needle in the
    prompt, the full-attention baseline's accuracy (None where no trial fitted its context), pass/fail by depth."""
    by_length: dict[int, list[TrialResult]] = defaultdict(list)
    for result in results:
        by_length[result.length].append(result)
    rows = []
    for length, group in by_length.items():
        baselines = [r.baseline_passed for r in group if r.baseline_passed is not None]
        known = [r.needle_read for r in group if r.needle_read is not None]
        rows.append({"length": length, "trials": len(group), "accuracy": sum(r.passed for r in group) / len(group),
                     "retrieved": sum(known) / len(known) if known else None,
                     "baseline_accuracy": sum(baselines) / len(baselines) if baselines else None,
                     "by_depth": {f"{r.depth:.2f}": r.passed for r in group}})
    return rows
