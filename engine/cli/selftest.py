"""`engine selftest passkey`: prove the memory works, beside the same model with plain full attention."""

from __future__ import annotations

import argparse
import json
import re

from rich.console import Console
from rich.table import Table

from engine.errors import UsageError
from engine.runtime import load_runtime
from engine.selftest.passkey import TrialResult, run_passkey, summarise


def parse_lengths(text: str) -> list[int]:
    """'4k,32k,1M,1500' -> [4096, 32768, 1048576, 1500]."""
    lengths = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", item)
        if not match:
            raise UsageError(f"--lengths: {item!r} is not a length like 4k, 32k, 1M or 1500")
        value = int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
        if value < 256:
            raise UsageError(f"--lengths: {item!r} is too short for a haystack (at least 256 tokens)")
        lengths.append(value)
    return lengths


def run(args: argparse.Namespace) -> int:
    lengths = parse_lengths(args.lengths)
    if args.trials < 1:
        raise UsageError(f"--trials must be at least 1 (got {args.trials})")
    runtime = load_runtime(args.model, args.device)
    console = Console(stderr=True)

    def show(result: TrialResult) -> None:
        if not args.json:
            if result.passed:
                mark = "pass"
            else:
                mark = "FAIL (needle read, not answered)" if result.needle_read else "FAIL (retrieval missed the needle)"
            console.print(f"{result.length:>9,} tokens  depth {result.depth:4.0%}  {mark}  {result.answer.strip()[:60]!r}")

    results = run_passkey(runtime, lengths, args.trials, seed=args.seed, on_result=show)
    summary = summarise(results)
    if args.json:
        print(json.dumps({"lengths": summary, "trials": [vars(result) for result in results]}))
        return 0
    table = Table("length (tokens)", "engine", "needle retrieved", "full attention", title="passkey retrieval",
                  title_justify="left")
    for row in summary:
        baseline = "—" if row["baseline_accuracy"] is None else f"{row['baseline_accuracy']:.0%}"
        retrieved = "—" if row["retrieved"] is None else f"{row['retrieved']:.0%}"
        table.add_row(f"{row['length']:,}", f"{row['accuracy']:.0%} of {row['trials']}", retrieved, baseline)
    Console().print(table)
    return 0
