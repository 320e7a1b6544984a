"""What the 135M reader is shown, measured on the train split: the same retrieval and evidence as `engine ask`
had before the evidence was quoted, then several prompts, each scored by whether the generated answer holds an
acceptable answer string (greedy, 64 new tokens, cut before it repeats).

    python bench/qa/reader_prompts.py --store S [--variants current,passage,...] [--kinds fact,why_how]

Variants: `current`, the four excerpts with the evidence's last (the prompt before); `passage`, the evidence's
excerpt alone; `window1` / `window2`, the evidence sentence with 1 / 2 sentences either side; `current_quote`,
`current` with the evidence sentence quoted again under the question. Writes
bench/results/qa_reader_prompts_train.json (per variant and kind: answer right, median answer length) with the
answers themselves per question.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QA = ROOT / "bench" / "qa"
sys.path.insert(0, str(QA))

from check_questions import answer_strings, contains  # noqa: E402

MAX_NEW_TOKENS = 64


def context_window(text: str, evidence: str, reach: int) -> str:
    """The evidence sentence with up to `reach` sentences either side of it in its excerpt's text."""
    from engine.answer.evidence import SENTENCE_BREAK

    pieces = [piece.strip() for piece in SENTENCE_BREAK.split(text) if piece and piece.strip()]
    at = next((n for n, piece in enumerate(pieces) if evidence.strip()[:60] in piece or piece[:60] in evidence), None)
    if at is None:
        return evidence
    return " ".join(" ".join(piece.split()) for piece in pieces[max(0, at - reach):at + reach + 1])


def generate(runtime, prompt: list[int]) -> str:
    """The greedy answer text, cut before it repeats, as `engine ask` streams it."""
    from engine.answer.repeats import without_repeats
    from engine.model.generate import generate_tokens, stream_text

    tokens = generate_tokens(runtime.model, prompt, MAX_NEW_TOKENS, runtime.tokenizer.stop_ids)
    return "".join(without_repeats(stream_text(runtime.tokenizer, tokens)))


def chat(runtime, system: str, user: str) -> list[int]:
    tokenizer = runtime.tokenizer
    return tokenizer.encode(tokenizer.render_chat([{"role": "system", "content": system},
                                                   {"role": "user", "content": user}]))


def prompts(store, question: str):
    """Per variant the prompt's token ids, from `engine ask`'s own retrieval and evidence."""
    from engine.answer.evidence import choose_evidence
    from engine.answer.prompt import SYSTEM, build_prompt, fit_excerpts

    runtime = store.runtime
    excerpts = store.passages(question)
    texts = [runtime.tokenizer.decode(e.ids) for e in excerpts]
    choice = choose_evidence(excerpts, texts, question)
    if choice.excerpt is None:
        return None, choice
    own = excerpts[choice.excerpt]
    own_text = runtime.tokenizer.decode(own.ids)
    ordered = list(excerpts)
    ordered.insert(0, ordered.pop(choice.excerpt))
    ordered = fit_excerpts(runtime, ordered, question, runtime.config.trained_context - MAX_NEW_TOKENS)
    ordered.append(ordered.pop(0))
    evidence = choice.evidence[0].text
    label = f"[{Path(own.citation.paths[0]).name}]"
    window1, window2 = context_window(own_text, evidence, 1), context_window(own_text, evidence, 2)
    variants = {
        "current": build_prompt(runtime, ordered, question),
        "passage": chat(runtime, SYSTEM, f"Excerpt from my files:\n\n{label}\n{own_text}\n\nQuestion: {question}"),
        "window1": chat(runtime, SYSTEM, f"Excerpt from my files:\n\n{label}\n{window1}\n\nQuestion: {question}"),
        "window2": chat(runtime, SYSTEM, f"Excerpt from my files:\n\n{label}\n{window2}\n\nQuestion: {question}"),
        "current_quote": build_prompt(runtime, ordered, question, (own, evidence)),
    }
    return variants, choice


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--variants", default="current,passage,window1,window2,current_quote")
    parser.add_argument("--kinds", default="fact,why_how")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "qa_reader_prompts_train.json")
    args = parser.parse_args()
    import engine

    items = [item for item in json.loads((QA / "questions_train.json").read_text(encoding="utf-8"))
             if item["kind"] in args.kinds.split(",")]
    wanted = args.variants.split(",")
    rows, started = [], time.time()
    with engine.open_store(args.store, device="cpu") as store:
        for item in items:
            variants, choice = prompts(store, item["question"])
            row = {"id": item["id"], "kind": item["kind"], "question": item["question"], "answers": {}}
            for name in wanted:
                if variants is None:
                    row["answers"][name] = None
                    continue
                text = generate(store.runtime, variants[name])
                row["answers"][name] = {"text": text, "right": any(contains(text, a) for a in answer_strings(item))}
            rows.append(row)
            print(item["id"], {n: (a or {}).get("right") for n, a in row["answers"].items()}, flush=True)
    summary = {}
    for name in wanted:
        for kind in [*args.kinds.split(","), "all"]:
            chosen = [r for r in rows if kind in ("all", r["kind"])]
            answered = [r["answers"][name] for r in chosen]
            summary.setdefault(name, {})[kind] = {
                "n": len(chosen),
                "answer_right": round(sum(bool(a and a["right"]) for a in answered) / len(chosen), 3),
                "median_chars": statistics.median(len(a["text"]) if a else 0 for a in answered)}
    args.out.write_text(json.dumps({"benchmark": "the reader's prompt, train split", "command":
                                    "python bench/qa/reader_prompts.py --store S", "seconds": round(time.time() - started),
                                    "summary": summary, "per_question": rows}, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
