"""Which heads, and which scoring, let the model's own attention find a planted fact in natural text?

Runs `engine.memory.calibration.head_hit_rates` on the real model and real prose (Python's language
reference): the corpus in segments of 2048 tokens with full causal attention, facts planted at random,
hit@8 for every (layer, query head) under four scorings — naive q·k from the prompt's last 8 tokens;
MaxSim over mean-centred unit keys of the question's own tokens; the same against 4 or 1 representative
keys per 64-token block. Writes bench/results/probe_retrieval_<N>k.json and, with --save, the
embedded model's shipped calibration (engine/memory/calibration_default.json: the two best MaxSim heads).

    python bench/probe_retrieval.py [--tokens 32768] [--trials 10] [--save]
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from engine.memory.calibration import SCORINGS, SHIPPED, choose_heads, head_hit_rates
from engine.runtime import load_runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32768)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--save", action="store_true", help="write the shipped calibration of the default model")
    args = parser.parse_args()
    runtime = load_runtime(None, "cpu")
    heads = runtime.config.num_heads
    rates, mean = head_hit_rates(runtime, args.tokens, args.trials)
    report = {"date": date.today().isoformat(), "machine": "CPU, 2 cores", "tokens": args.tokens, "segment": 2048,
              "block": 64, "trials": args.trials, "top": 8, "best": {}}
    for name in SCORINGS:
        flat = rates[name].flatten()
        best = [(int(i) // heads, int(i) % heads, float(flat[i])) for i in flat.argsort(descending=True)[:8]]
        report["best"][name] = best
        print(f"{name:8s} best (layer, head) hit@8: " + ", ".join(f"({layer},{h}) {r:.0%}" for layer, h, r in best))
    out = Path(__file__).parent / "results" / f"probe_retrieval_{args.tokens // 1024}k.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.save:
        choose_heads(runtime, rates, mean, args.tokens, args.trials, keep=2).save(SHIPPED)
        print(f"calibration written to {SHIPPED}")


if __name__ == "__main__":
    main()
