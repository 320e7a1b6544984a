"""The memory settings side by side: what the model's pass costs and what its heads find.

    python bench/bench_memory.py --corpus DIR [--qa-corpus bench/qa/corpus]
        [--out bench/results/memory_cpu.json]

For each setting — `fast` and `best` (`engine ingest --memory`), and the single head of layer 21 that stores
used before the settings, without hub scores (`before`) — in one run on the same cores:
- the model's pass over DIR (e.g. `python bench/corpus_stdlib.py DIR --tokens 131072`): tokens/s of
  the pass and of the whole `add` + pass + index, state bytes per token;
- over the QA corpus (bench/qa, public-domain PEPs), with the train split's answerable questions: hit@1/@4 of
  the block holding the gold lines for the heads alone, full-text search alone and the engine's fusion
  (`retrieve`), per question kind. The test split is not read here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETTINGS = ("fast", "best", "before")


def make_store(root: Path, corpus: Path, runtime, setting: str) -> dict:
    """A store of `corpus` read with `setting`; the pass's figures."""
    from engine.api import open_store
    from engine.memory.calibration import calibration_for
    from engine.memory.config import EngineConfig
    from engine.memory.states import recorded_state_bytes
    from ingest import catalog

    began = time.perf_counter()
    with open_store(root, runtime=runtime, write=True) as store:
        store.add([corpus])
        if setting == "before":
            calibration = calibration_for(runtime)
            layer, head = calibration.heads[0]
            group = runtime.config.num_heads // runtime.config.num_kv_heads
            config = replace(EngineConfig.from_calibration(runtime, calibration), heads=[(layer, head)],
                             kv_heads=[head // group], key_means=[calibration.key_means[layer][head // group]],
                             memory="", background=[])
            catalog.set_meta(store.store.db, "engine_config", json.dumps(asdict(config)))
        report = store.process(memory="fast" if setting == "before" else setting)
        store.index()
        _, tokens, state_bytes = recorded_state_bytes(store.store)
    seconds = time.perf_counter() - began
    return {"tokens": report.tokens, "pass_seconds": round(report.seconds, 1),
            "pass_tokens_per_s": round(report.tokens_per_second), "end_to_end_seconds": round(seconds, 1),
            "end_to_end_tokens_per_s": round(report.tokens / seconds),
            "state_bytes_per_token": round(state_bytes / max(tokens, 1), 1)}


def retrieval_hits(root: Path, runtime) -> dict:
    from bench.qa.gold import block_lines, overlaps_gold
    from engine.answer.retrieval import (
        lexical_block_ranking,
        model_block_scores,
        question_queries,
        retrieve,
        text_reader,
    )
    from engine.api import open_store

    items = [item for item in json.loads((ROOT / "bench" / "qa" / "questions_train.json").read_text(encoding="utf-8"))
             if item["kind"] != "absent"]
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with open_store(root, runtime=runtime) as store:
        config = store.config

        def gold(item: dict, block: int) -> bool:
            return overlaps_gold(block_lines(runtime, store.store, block, config.block_tokens), item)

        for item in items:
            scores = model_block_scores(store.index(), question_queries(runtime, config, item["question"]),
                                        config.block_tokens)
            rankings = {
                "heads": sorted(scores, key=lambda block: -scores[block])[:4],
                "fulltext": lexical_block_ranking(store.store.db, item["question"], config.block_tokens,
                                                  text_reader(runtime, store.store))[:4],
                "fusion": [block for block, _ in retrieve(runtime, config, store.index(), store.store,
                                                           item["question"], 4)],
            }
            for name, top in rankings.items():
                flags = [gold(item, block) for block in top]
                for kind in (item["kind"], "answerable"):
                    rows[name][kind].append((bool(flags) and flags[0], any(flags)))
    return {name: {kind: {"n": len(v), "hit@1": round(sum(a for a, _ in v) / len(v), 3),
                          "hit@4": round(sum(b for _, b in v) / len(v), 3)} for kind, v in per_kind.items()}
            for name, per_kind in rows.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a folder of text to time the pass on")
    parser.add_argument("--qa-corpus", type=Path, default=ROOT / "bench" / "qa" / "corpus")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--no-qa", action="store_true", help="time the pass only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_cpu.json")
    args = parser.parse_args()
    from engine.runtime import load_runtime

    runtime = load_runtime(None, "cpu")
    result = {"date": date.today().isoformat(), "machine": f"CPU, {os.cpu_count()} cores",
              "command": "python bench/bench_memory.py " + " ".join(sys.argv[1:]), "load_start": os.getloadavg(),
              "settings": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for setting in args.settings.split(","):
            figures = {"speed": make_store(Path(scratch) / f"speed-{setting}", args.corpus, runtime, setting)}
            print(setting, figures["speed"], file=sys.stderr, flush=True)
            if not args.no_qa:
                qa_root = Path(scratch) / f"qa-{setting}"
                figures["qa_store"] = make_store(qa_root, args.qa_corpus, runtime, setting)
                figures["retrieval_train"] = retrieval_hits(qa_root, runtime)
                print(setting, figures["retrieval_train"]["fusion"]["answerable"], file=sys.stderr, flush=True)
            result["settings"][setting] = figures
            result["load_end"] = os.getloadavg()
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
