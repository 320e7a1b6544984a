"""The ingest front end over a real repository nobody here wrote: CPython's standard library.

    python bench/bench_ingest.py            # writes bench/results/ingest_cpu.json and prints a table

What it measures, each in a fresh process (so peak memory is that run's own):
- a fresh ingest of the stdlib (this interpreter's `sysconfig` stdlib path, leaving out site-packages/
  and __pycache__/) into a new store: files/s, tokens/s, peak RSS;
- a no-change re-run through the API, and through the `engine ingest --no-process` command
  (interpreter start included; the model's pass is the engine's bench);
- the same fresh ingest over the stdlib without test/ (about half the tokens): peak RSS must not grow
  with the corpus;
- beside them, the obvious alternative: the model's tokenizer alone, one `encode_batch` call over the
  same texts (already in memory), on the same cores.
Two cores here; the load averages at the start and end are recorded because other work on the machine
slows every figure (the alternative's too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
EXCLUDES = ("site-packages/", "__pycache__/")


def child(kind: str, store: str, corpus: str, tokenizer_json: str, excludes: list[str]) -> dict:
    """One measurement, run in its own process; returns figures and this process's peak RSS."""
    from tokenizers import Tokenizer

    from ingest.pipeline import IngestOptions, ingest
    from ingest.sources import WalkOptions
    from ingest.store import Store
    from ingest.tokens import sequence_tokenizer

    backend = Tokenizer.from_file(tokenizer_json)
    fingerprint = Path(tokenizer_json).with_suffix(".fingerprint").read_text()
    result: dict = {}
    if kind == "ingest":
        started = time.perf_counter()
        with Store.open(Path(store), write=True) as opened:
            summary = ingest(opened, [Path(corpus)], lambda: sequence_tokenizer(backend, fingerprint),
                             IngestOptions(walk=WalkOptions(excludes=tuple(excludes))), model_key="bench")
        seconds = time.perf_counter() - started
        result = {"seconds": round(seconds, 3), "read_seconds": summary.read_seconds, "files_listed":
                  summary.added + summary.updated + summary.unchanged + sum(summary.skipped.values()),
                  "files_read": summary.files_read, "files_stored": summary.added + summary.updated,
                  "skipped": summary.skipped, "tokens": summary.tokens_added, "unchanged": summary.unchanged,
                  "bytes_read": summary.bytes_read}
    elif kind == "tokenizer-alone":
        from ingest.sources import list_sources, normalize_roots

        listing = list_sources(normalize_roots([Path(corpus)]), WalkOptions(excludes=tuple(excludes)))
        texts = []
        for source in listing.sources:
            if source.skip is None:
                data = Path(source.path).read_bytes()
                if data and b"\0" not in data[:8000]:
                    texts.append(data.decode("utf-8", errors="replace"))
        started = time.perf_counter()
        encodings = backend.encode_batch(texts, add_special_tokens=False)
        seconds = time.perf_counter() - started
        result = {"seconds": round(seconds, 3), "texts": len(texts), "tokens": sum(len(e.ids) for e in encodings)}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM: ru_maxrss would include the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(kind: str, store: Path, corpus: Path, tokenizer_json: Path,
            excludes: tuple[str, ...] = EXCLUDES) -> dict:
    command = [sys.executable, __file__, "--child", kind, str(store), str(corpus), str(tokenizer_json), *excludes]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_rerun(store: Path, corpus: Path) -> dict:
    """A no-change re-run as a user types it, interpreter start and imports included."""
    command = [sys.executable, "-m", "engine", "ingest", str(corpus), "--store", str(store), "--json", "--no-process",
               *[arg for pattern in EXCLUDES for arg in ("--exclude", pattern)]]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    summary = json.loads(out.stdout)
    return {"seconds": round(time.perf_counter() - started, 3), "unchanged": summary["unchanged"],
            "tokens_appended": summary["tokens_added"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    args = parser.parse_args()
    if args.child:
        kind, store, corpus, tokenizer_json, *excludes = args.child
        print(json.dumps(child(kind, store, corpus, tokenizer_json, excludes)))
        return

    from engine.model.files import resolve_model_path
    from engine.model.weights import load_model_tokenizer

    load_before = os.getloadavg()[0]
    model_path = resolve_model_path(None)
    chat = load_model_tokenizer(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer_json = tmp / "tokenizer.json"
        tokenizer_json.write_text(chat.backend.to_str())
        tokenizer_json.with_suffix(".fingerprint").write_text(chat.fingerprint)
        cli_store = tmp / "store"
        fresh = measure("ingest", cli_store, args.corpus, tokenizer_json)
        fresh["files_per_s"] = round(fresh["files_listed"] / fresh["seconds"], 1)
        fresh["tokens_per_s"] = round(fresh["tokens"] / fresh["seconds"])
        fresh["tokens_per_s_reading"] = round(fresh["tokens"] / fresh["read_seconds"])
        rerun = measure("ingest", cli_store, args.corpus, tokenizer_json)
        subprocess.run([sys.executable, "-m", "engine", "ingest", str(args.corpus), "--store", str(cli_store),
                        *[a for p in EXCLUDES for a in ("--exclude", p)], "--json", "--no-process"], check=True, cwd=REPO,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # binds the model key
        cli = cli_rerun(cli_store, args.corpus)
        half = measure("ingest", tmp / "store-half", args.corpus, tokenizer_json, EXCLUDES + ("/test/",))
        alone = measure("tokenizer-alone", tmp / "unused", args.corpus, tokenizer_json)
        alone["tokens_per_s"] = round(alone["tokens"] / alone["seconds"])
    result = {
        "what": "ingest front end over CPython's standard library (site-packages/ and __pycache__/ left out)",
        "corpus": str(args.corpus),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": date.today().isoformat(),
        "load_average_at_start": round(load_before, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "command": "python bench/bench_ingest.py",
        "fresh": fresh,
        "no_change_rerun_api": rerun,
        "no_change_rerun_cli": cli,
        "fresh_without_test_dir": half,
        "tokenizer_alone_one_encode_batch": alone,
        "targets": {"tokens_per_s": 1_000_000, "no_change_rerun_s": 2.0},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'run':44} {'files':>6} {'tokens':>11} {'s':>7} {'cpu s':>7} {'files/s':>8} {'tok/s':>10} {'peak MB':>8}")
    print(f"{'fresh ingest':44} {fresh['files_listed']:6} {fresh['tokens']:11,} {fresh['seconds']:7.2f} "
          f"{fresh['cpu_seconds']:7.2f} {fresh['files_per_s']:8.0f} {fresh['tokens_per_s']:10,} {fresh['peak_rss_mb']:8}")
    print(f"{'no-change re-run (API)':44} {rerun['unchanged']:6} {rerun['tokens']:11,} "
          f"{rerun['seconds']:7.2f} {rerun['cpu_seconds']:7.2f} {'':8} {'':10} {rerun['peak_rss_mb']:8}")
    print(f"{'no-change re-run (engine ingest command)':44} {cli['unchanged']:6} {0:11,} {cli['seconds']:7.2f}")
    print(f"{'fresh ingest without test/':44} {half['files_listed']:6} {half['tokens']:11,} {half['seconds']:7.2f} "
          f"{half['cpu_seconds']:7.2f} {'':8} {'':10} {half['peak_rss_mb']:8}")
    print(f"{'tokenizer alone, one encode_batch':44} {alone['texts']:6} {alone['tokens']:11,} {alone['seconds']:7.2f} "
          f"{alone['cpu_seconds']:7.2f} {'':8} {alone['tokens_per_s']:10,} {alone['peak_rss_mb']:8}")
    print(f"load average at start: {load_before:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
