"""The first-citation figures of a recorded train run of bench_qa.py, re-scored as `pinned_to_evidence` now
orders citations (the one whose passage holds the evidence first, marking the evidence's lines), without
asking anything again: the recorded citations, excerpts and evidence are all it needs.

    python bench/qa/rescore_pinned.py RECORDS.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def overlaps(item: dict, path: str, first: int, last: int) -> bool:
    return path == item["path"] and first <= item["end_line"] and last >= item["start_line"]


def pinned(record: dict) -> list[tuple[str, int, int]]:
    citations = [(c["path"], c["start_line"], c["end_line"]) for c in record["citations"]]
    evidence = (record.get("evidence") or [None])[0]
    if evidence is None:
        return citations
    for number, (path, first, _) in enumerate(citations):
        holders = [e for e in record["excerpts"] if e["path"] == path and e["start_line"] <= first <= e["end_line"]]
        if any(e["path"] == evidence["path"] and e["start_line"] <= evidence["start_line"]
               and evidence["end_line"] <= e["end_line"] for e in holders):
            return [(evidence["path"], evidence["start_line"], evidence["end_line"]),
                    *citations[:number], *citations[number + 1:]]
    return citations


def main() -> int:
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines()]
    items = {item["id"]: item for item in json.loads((ROOT / "bench/qa/questions_train.json").read_text())}
    result = {"what": __doc__.split("\n\n")[0], "command": "python bench/qa/rescore_pinned.py RECORDS.jsonl",
              "engine": {}}
    for kind in ("fact", "paraphrase", "why_how", "answerable"):
        chosen = [row for row in rows if row["system"] == "engine" and items[row["id"]]["kind"] != "absent"
                  and kind in ("answerable", items[row["id"]]["kind"])]
        hits = [[overlaps(items[row["id"]], *c) for c in pinned(row["record"])] for row in chosen]
        result["engine"][kind] = {"n": len(chosen),
                                  "first_citation_right": round(sum(h[:1] == [True] for h in hits) / len(hits), 3),
                                  "top3_right": round(sum(any(h[:3]) for h in hits) / len(hits), 3)}
    (ROOT / "bench/results/qa_train_pinned_citations.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["engine"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
