"""Passkey retrieval through the whole ingest + engine path, beside the same model with full attention.

    python bench/bench_passkey.py --lengths 4k,32k --trials 20 [--device cuda] [--out FILE]

Writes bench/results/passkey_<device>.json, or FILE, after every trial: accuracy by length and depth, each trial's answer
and whether retrieval put the needle in the prompt (so a failure can be told apart: a retrieval miss,
or a needle read and not answered), the machine's load average at the start and end (other work slows every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

from engine.cli.selftest import parse_lengths
from engine.runtime import load_runtime
from engine.selftest.passkey import TrialResult, run_passkey, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="4k,32k")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="default: bench/results/passkey_<device>.json")
    parser.add_argument("--resume", action="store_true",
                        help="keep the trials already in --out and run only the others (same seed, same haystacks)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    runtime = load_runtime(None, args.device)
    out = args.out or Path(__file__).parent / "results" / f"passkey_{runtime.device.type}.json"
    started = time.perf_counter()
    results: list[TrialResult] = []
    if args.resume and out.exists():
        results = [TrialResult(**trial) for trial in json.loads(out.read_text())["trials"]]
    done = {(r.length, round(r.depth, 3)) for r in results}

    def record(result: TrialResult) -> None:
        """Prints the trial and rewrites the report: a long run stopped early keeps the trials it finished."""
        print(f"{result.length:>9,} depth {result.depth:4.0%} engine {result.passed} needle read {result.needle_read} "
              f"full-attention {result.baseline_passed} {result.answer.strip()[:60]!r}", flush=True)
        results.append(result)
        report = {"date": date.today().isoformat(), "device": args.device, "model": runtime.source.name,
                  "seconds": time.perf_counter() - started, "load_average_start": load_at_start,
                  "load_average_end": os.getloadavg(), "lengths": summarise(results),
                  "trials": [dict(asdict(r), depth=round(r.depth, 3)) for r in results]}
        out.write_text(json.dumps(report, indent=2) + "\n")

    run_passkey(runtime, parse_lengths(args.lengths), args.trials, on_result=record,
                skip=lambda length, depth: (length, round(depth, 3)) in done)
    report = json.loads(out.read_text())
    for row in report["lengths"]:
        print(f"{row['length']:>9,} tokens: engine {row['accuracy']:.0%} of {row['trials']}, "
              f"full attention {row['baseline_accuracy']}")


if __name__ == "__main__":
    main()
