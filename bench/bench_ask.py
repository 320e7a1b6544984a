"""Time to first token of `ask` over a large store: ten questions about CPython's standard library.

    python bench/corpus_stdlib.py /tmp/corpus-1m                    # ~1M tokens of top-level stdlib modules
    engine ingest /tmp/corpus-1m --store /tmp/store-1m --device cpu  # ingest + the engine's pass (~40 min on 2 cores)
    python bench/bench_ask.py --store /tmp/store-1m                  # writes bench/results/ask_cpu.json

The store is opened once (model load and the faiss index build at open are timed apart: the app pays
them once); then every question is asked with the lexical path fused in (the default) and with the
model's heads alone. Each question has one known answer, checked by grep when the questions were
written: the module that defines the function it describes. A question counts as answered right when
the answer names that function (as a word), as cited right when a citation points into that module,
and as retrieved right when a retrieved block lies in it. The first ask after opening is timed on its
own as a warm-up (one-off costs: the first forward passes allocate their buffers). Beside the wall-clock
timings, the CPU seconds the process spent (both threads): other work on the machine stretches the first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from engine.answer.generation import Answer, Token
from engine.answer.retrieval import TOP_K, retrieve
from engine.api import open_store
from engine.memory.states import recorded_state_bytes
from engine.runtime import load_runtime
from ingest import catalog

RESULTS = Path(__file__).resolve().parent / "results"
WARM_UP = "Which function returns the median of numeric data?"
QUESTIONS = [  # (question, module that defines the answer, the function or class it names)
    ("Which function generates a random URL-safe text string for password resets?", "secrets.py", "token_urlsafe"),
    ("Which function tells whether a year is a leap year?", "calendar.py", "isleap"),
    ("How do I convert an RGB colour to HSV?", "colorsys.py", "rgb_to_hsv"),
    ("Which class sorts the nodes of a graph topologically?", "graphlib.py", "TopologicalSorter"),
    ("Which function encodes bytes with the URL- and filesystem-safe Base64 alphabet?", "base64.py",
     "urlsafe_b64encode"),
    ("Which function tests whether a filename matches a shell pattern, case-sensitively?", "fnmatch.py",
     "fnmatchcase"),
    ("Which method finds the longest matching block in two sequences?", "difflib.py", "find_longest_match"),
    ("Which function inserts an item into a sorted list, keeping it sorted?", "bisect.py", "insort"),
    ("Which function copies a whole directory tree recursively?", "shutil.py", "copytree"),
    ("Which function removes any common leading whitespace from every line of a text?", "textwrap.py", "dedent"),
]


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__}


def store_figures(store) -> dict:
    root, db = store.root, store.db
    segments, tokens, state_bytes = recorded_state_bytes(store)
    catalog_bytes = sum((root / name).stat().st_size for name in ("catalog.db", "catalog.db-wal")
                        if (root / name).exists())
    return {"sequence_tokens": catalog.sequence_length(db), "processed_tokens": tokens, "segments": segments,
            "state_bytes": state_bytes, "state_bytes_per_token": state_bytes / tokens,
            "tokens_file_bytes": (root / "tokens.u32").stat().st_size, "catalog_bytes": catalog_bytes}


def ask_once(store, question: str, top_k: int, lexical: bool, max_new_tokens: int) -> dict:
    """The answer, its timings, and the CPU seconds this process spent until the first token and in all:
    on a machine shared with other work the wall-clock figures stretch, the CPU seconds much less."""
    cpu_started = time.process_time()
    first_token_cpu = None
    for event in store.ask(question, top_k=top_k, max_new_tokens=max_new_tokens, lexical=lexical):
        if isinstance(event, Answer):
            answer = event
        elif isinstance(event, Token) and first_token_cpu is None:
            first_token_cpu = time.process_time() - cpu_started
    return {"answer": answer.text, "found": answer.found, "citations": [c.path for c in answer.citations],
            "grounded": answer.grounded,
            **{name: round(seconds, 3) for name, seconds in answer.timings.items()},
            "first_token_cpu_s": round(first_token_cpu or 0.0, 3),
            "total_cpu_s": round(time.process_time() - cpu_started, 3)}


def retrieved_files(store, question: str, top_k: int, lexical: bool) -> list[str]:
    """The files the retrieved blocks fall in (what retrieval alone found, before the answer)."""
    blocks = retrieve(store.runtime, store.config, store.index(), store.store, question, top_k, lexical)
    block_tokens = store.config.block_tokens
    return sorted({span.paths[0] for block, _ in blocks
                   for span in catalog.citations(store.store.db, block * block_tokens, (block + 1) * block_tokens)})


def summary(rows: list[dict]) -> dict:
    """Medians and maxima of the timings, and counts. The first token and the whole answer are timed over the
    questions found: one not found gets no answer, its reply (that, and the closest passages) whole at once."""
    answered = [row for row in rows if row["found"]] or rows
    figures = {"retrieve_s": {"median": round(statistics.median(row["retrieve_s"] for row in rows), 3),
                              "max": round(max(row["retrieve_s"] for row in rows), 3)}}
    for name in ("first_token_s", "total_s", "first_token_cpu_s", "total_cpu_s"):
        values = [row[name] for row in answered]
        figures[name] = {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}
    for name in ("found", "answer_right", "cited_right", "retrieved_right"):
        figures[name] = sum(row[name] for row in rows)
    return figures


def run_questions(store, top_k: int, lexical: bool, max_new_tokens: int) -> list[dict]:
    rows = []
    for question, module, name in QUESTIONS:
        row = {"question": question, "module": module, "expects": name}
        row |= ask_once(store, question, top_k, lexical, max_new_tokens)
        row["answer_right"] = re.search(rf"\b{re.escape(name)}\b", row["answer"], re.IGNORECASE) is not None
        row["cited_right"] = any(path.endswith("/" + module) for path in row["citations"])
        row["retrieved_right"] = any(path.endswith("/" + module)
                                     for path in retrieved_files(store, question, top_k, lexical))
        print(f"lexical={lexical!s:5} first token {row['first_token_s']:6.2f} s  retrieve {row['retrieve_s']:5.2f} s  "
              f"total {row['total_s']:6.2f} s  answer={row['answer_right']!s:5} cited={row['cited_right']!s:5} "
              f"retrieved={row['retrieved_right']!s:5} {row['answer'].strip()[:60]!r}", flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--top-k", type=int, default=TOP_K)
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="answer budget (default 64; `engine ask` allows 128): the answers here are a name")
    parser.add_argument("--label", default="", help="a note stored with the results (e.g. 'before the fix')")
    parser.add_argument("--out", type=Path, help="default: bench/results/ask_<device>.json")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    runtime = load_runtime(None, args.device)
    load_s = time.perf_counter() - started
    with open_store(args.store, runtime=runtime) as store:
        started = time.perf_counter()
        index = store.index()
        index_s = time.perf_counter() - started
        report = {"date": date.today().isoformat(), "label": args.label, "machine": machine(),
                  "device": runtime.device.type, "load_average_start": load_at_start, "top_k": args.top_k,
                  "max_new_tokens": args.max_new_tokens,
                  "store": store_figures(store.store), "index_tokens": index.tokens,
                  "model_load_s": round(load_s, 3), "index_build_s": round(index_s, 3),
                  "warm_up": ask_once(store, WARM_UP, args.top_k, True, args.max_new_tokens)}
        fused = run_questions(store, args.top_k, True, args.max_new_tokens)
        heads_only = run_questions(store, args.top_k, False, args.max_new_tokens)
    report |= {"load_average_end": os.getloadavg(), "fused": summary(fused), "heads_only": summary(heads_only),
               "questions": {"fused": fused, "heads_only": heads_only}}
    out = args.out or RESULTS / f"ask_{runtime.device.type}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"index build at open {index_s:.2f} s over {index.tokens:,} tokens; model load {load_s:.2f} s")
    for name in ("fused", "heads_only"):
        figures = report[name]
        print(f"{name:10s} first token median {figures['first_token_s']['median']:.2f} s max "
              f"{figures['first_token_s']['max']:.2f} s (CPU {figures['first_token_cpu_s']['median']:.2f} s); retrieve median {figures['retrieve_s']['median']:.2f} s; "
              f"total median {figures['total_s']['median']:.2f} s; found {figures['found']}/10, "
              f"answer right {figures['answer_right']}/10, "
              f"cited right {figures['cited_right']}/10, retrieved right {figures['retrieved_right']}/10")


if __name__ == "__main__":
    main()
