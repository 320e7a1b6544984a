"""How strongly to hold the reader to a quotation of its evidence, measured on the questions one works on.

    python bench/qa/copy_strength.py --store S [--strengths 0,3,6]

Asks every fact and why/how question of questions_train.json and questions_train_extra.json (never a held-out
one) through `store.ask`, as `engine ask` does, once per strength of the copy bias
(`engine.answer.generation.COPY_STRENGTH`; 0 is the reader left alone), and scores each answer by whether it
holds an acceptable answer string. Also counts the answers with names or numbers no passage holds
(`unsupported`) and the answers that fell into a loop (a word or two repeated five times running). Writes
bench/results/qa_copy_strength_train.json (per strength and kind, and every answer).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QA = ROOT / "bench" / "qa"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(QA))
LOOP = re.compile(r"(\S+\s+)\1{4,}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--strengths", default="0,3,6")
    args = parser.parse_args()
    from check_questions import WORK_SETS, answer_strings, contains, load

    import engine
    from engine.answer import generation
    from engine.api import MAX_NEW_TOKENS

    items = [item for item in load(*WORK_SETS) if item["kind"] in ("fact", "why_how")]
    summary, answers = {}, {}
    with engine.open_store(args.store, device="cpu") as store:
        for strength in [float(s) for s in args.strengths.split(",")]:
            generation.COPY_STRENGTH = strength
            started, rows = time.perf_counter(), []
            for item in items:
                answer = [event for event in store.ask(item["question"])
                          if isinstance(event, engine.Answer)][0]
                rows.append({"id": item["id"], "kind": item["kind"], "found": answer.found,
                             "right": any(contains(answer.text, a) for a in answer_strings(item)),
                             "unsupported": answer.unsupported, "loop": bool(LOOP.search(answer.text)),
                             "text": answer.text})
            summary[str(strength)] = {kind: {
                "n": len(group), "answer_right": f"{sum(r['right'] for r in group)}/{len(group)}",
                "with_unsupported": sum(bool(r["unsupported"]) for r in group), "loops": sum(r["loop"] for r in group),
                "median_chars": statistics.median(len(r["text"]) for r in group)}
                for kind in ("fact", "why_how") for group in [[r for r in rows if r["kind"] == kind]]}
            summary[str(strength)]["seconds"] = round(time.perf_counter() - started)
            answers[str(strength)] = rows
            print(strength, summary[str(strength)], flush=True)
    (ROOT / "bench" / "results" / "qa_copy_strength_train.json").write_text(json.dumps({
        "questions": list(WORK_SETS), "command": f"python bench/qa/copy_strength.py --store S --strengths {args.strengths}",
        "max_new_tokens": MAX_NEW_TOKENS, "summary": summary, "answers": answers}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
