"""The citations of a recorded train run of bench_qa.py, re-scored as the engine kept them before (`pinned`: every
passage with 2% of the answer's attention, the one holding the evidence first) and as it keeps them now
(`supporting`: only those that support the answer, `engine.answer.citations.supporting`, and none when the
question was not found), beside the recorded baseline's, without asking anything again: a citation is decided from the answer, the question, the
evidence and the excerpt that holds it, all recorded. No model is loaded.

    python bench/qa/rescore_supported.py RECORDS.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from bench_qa import SYSTEMS, summarise  # noqa: E402

from engine.answer.citations import Citation, pinned_to_evidence, supporting  # noqa: E402
from engine.answer.evidence import Evidence  # noqa: E402

FIGURES = ("n", "citations_per_answer", "cited_not_supporting", "first_citation_right", "top3_right")


def as_citation(citation: dict, excerpts: list[dict]) -> Citation | None:
    """A recorded citation with the recorded excerpt that holds its lines as its context."""
    for excerpt in excerpts:
        first, last = excerpt["start_line"], excerpt["end_line"]
        if excerpt["path"] == citation["path"] and first <= citation["start_line"] and citation["end_line"] <= last:
            lines = excerpt["text"].split("\n")[citation["start_line"] - first:citation["end_line"] - first + 1]
            return Citation(path=citation["path"], paths=[citation["path"]], page=None,
                            start_line=citation["start_line"], end_line=citation["end_line"], text="\n".join(lines),
                            context=excerpt["text"], context_lines=[first, last], score=citation["score"])
    return None


def kept(item: dict, record: dict, support: bool) -> list[dict]:
    """The recorded engine citations as `EngineStore.ask` kept them before (pinned to the evidence) or, with
    `support`, as it keeps them now."""
    evidence = [Evidence(e["path"], None, e["start_line"], e["end_line"], e["text"]) for e in record["evidence"]]
    citations = [c for c in (as_citation(c, record["excerpts"]) for c in record["citations"]) if c is not None]
    first = next(iter(evidence), None)
    chosen = pinned_to_evidence(citations, first)
    if support:
        chosen = supporting(chosen, first, record["answer"], item["question"]) if record.get("found") else []
    return [{"path": c.path, "start_line": c.start_line, "end_line": c.end_line, "score": c.score} for c in chosen]


def figures(summary: dict) -> dict:
    return {system: {kind: {name: value for name, value in per_kind.items() if name in FIGURES}
                     for kind, per_kind in summary[system].items()} for system in SYSTEMS}


def main() -> int:
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines()]
    items = json.loads((ROOT / "bench/qa/questions_train.json").read_text(encoding="utf-8"))
    by_id = {item["id"]: item for item in items}
    recorded = {(row["id"], row["system"]): row["record"] for row in rows}
    result = {"what": __doc__.split("\n\n")[0], "command": "python bench/qa/rescore_supported.py RECORDS.jsonl"}
    for name, support in (("pinned", False), ("supporting", True)):
        rescored = {key: ({**record, "citations": kept(by_id[key[0]], record, support)} if key[1] == "engine"
                          else record) for key, record in recorded.items()}
        result[name] = figures(summarise(items, rescored))
    (ROOT / "bench/results/qa_train_supported_citations.json").write_text(json.dumps(result, indent=1) + "\n")
    for name in ("pinned", "supporting"):
        print(name, json.dumps({system: result[name][system]["answerable"] for system in SYSTEMS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
