"""Passkey retrieval through the whole ingest + engine path, beside the same model with full attention.

    python bench/bench_passkey.py --lengths 4k,32k --trials 20 [--device cuda]

Writes bench/results/passkey_<device>.json (accuracy by length and depth, seconds per trial).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from engine.commands.selftest import parse_lengths, summarise
from engine.runtime import load_runtime
from engine.selftest.passkey import run_passkey


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="4k,32k")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    runtime = load_runtime(None, args.device)
    started = time.perf_counter()
    results = run_passkey(runtime, parse_lengths(args.lengths), args.trials,
                          on_result=lambda r: print(f"{r.length:>9,} depth {r.depth:4.0%} engine {r.passed} "
                                                    f"full-attention {r.baseline_passed}", flush=True))
    report = {"date": date.today().isoformat(), "device": args.device, "model": runtime.source.name,
              "seconds": time.perf_counter() - started, "lengths": summarise(results)}
    out = Path(__file__).parent / "results" / f"passkey_{runtime.device.type}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for row in report["lengths"]:
        print(f"{row['length']:>9,} tokens: engine {row['accuracy']:.0%} of {row['trials']}, "
              f"full attention {row['baseline_accuracy']}")


if __name__ == "__main__":
    main()
