"""Segment processing, its two halves side by side: encoding segments in batches, and writing their states.

    python bench/bench_segments.py     # writes bench/results/segments_cpu.json and prints a table

What it measures, in one run on the CPU:
- encode: the real embedded model (`load_runtime(None, "cpu")`, the store's engine config from the
  shipped calibration) reading the same 4 segments of 2048 tokens of prose (Python's pydoc topics) with
  `batch_segments` 1, 2 and 4 (`engine.memory.segments.encode_segments`); tokens/s of wall time and tokens per
  CPU-second of this process (less swayed by other jobs on the cores), and how far the batched keys are
  from batch 1's (int8 steps). One round by default (about a minute on idle cores, four at a load of 8);
  `--rounds 2` adds one in the opposite order, so that drifting load weighs on every size alike.
- the state writer alone, no model: random int8 keys of the stored shape (2048 tokens x retrieval heads x
  64) for 128 segments, each way five times (interleaved, `sync` between), median segments/s and tokens/s:
  `per_segment` is what `process_store` did before, a state file made durable (fsync, rename, directory
  fsync) and one catalog transaction per segment; `per_segment_files` keeps a durable file at a time but
  one transaction per step (what the sharded path did); `step` is `engine.memory.states.write_states`, a step's
  files fsynced together from a thread pool, renamed, one directory fsync, one transaction. Steps of 8
  and 32 segments; for 32 also the pool's size (1 = the step's fsyncs one after another).
The stores go to a temporary folder on the file system of `--dir` (default: the system's temporary
folder), which the JSON names: fsync costs are the disk's. Two cores here, shared with other jobs: the
load averages at the start and end are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SEGMENT_TOKENS = 2048
ENCODE_SEGMENTS = 4
BATCH_SIZES = (1, 2, 4)
WRITER_SEGMENTS = 128
WRITER_ROUNDS = 5


def measure_encode(runtime, config, rounds: int) -> dict:
    from engine.memory.calibration import prose_tokens
    from engine.memory.segments import encode_segments

    ids = np.array(prose_tokens(runtime.tokenizer, ENCODE_SEGMENTS * SEGMENT_TOKENS), dtype=np.int64)
    segments = list(ids.reshape(ENCODE_SEGMENTS, SEGMENT_TOKENS))
    encode_segments(runtime, config, segments[:1])  # warm-up: first-call allocations, rope tables
    wall: dict[int, list[float]] = {size: [] for size in BATCH_SIZES}
    cpu: dict[int, list[float]] = {size: [] for size in BATCH_SIZES}
    keys: dict[int, list[np.ndarray]] = {}
    tokens = ENCODE_SEGMENTS * SEGMENT_TOKENS
    for round_ in range(rounds):
        for size in BATCH_SIZES if round_ % 2 == 0 else tuple(reversed(BATCH_SIZES)):
            started, cpu_started = time.perf_counter(), time.process_time()
            encoded = []
            for first in range(0, ENCODE_SEGMENTS, size):
                encoded += encode_segments(runtime, config, segments[first:first + size])
            wall[size].append(round(tokens / (time.perf_counter() - started), 1))
            cpu[size].append(round(tokens / (time.process_time() - cpu_started), 1))
            keys[size] = encoded
    steps_from_batch_1 = {size: int(max(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()
                                        for a, b in zip(keys[size], keys[1]))) for size in BATCH_SIZES}
    return {"segments": ENCODE_SEGMENTS, "segment_tokens": SEGMENT_TOKENS, "rounds": rounds,
            "order": "batch sizes ascending in even rounds, descending in odd ones",
            "torch_threads": torch.get_num_threads(), "layers_run": max(layer for layer, _ in config.heads) + 1,
            "tokens_per_second_runs": {str(size): wall[size] for size in BATCH_SIZES},
            "tokens_per_second_mean": {str(size): round(statistics.mean(wall[size]), 1) for size in BATCH_SIZES},
            "tokens_per_cpu_second_runs": {str(size): cpu[size] for size in BATCH_SIZES},
            "tokens_per_cpu_second_mean": {str(size): round(statistics.mean(cpu[size]), 1) for size in BATCH_SIZES},
            "max_int8_steps_from_batch_1": {str(size): steps_from_batch_1[size] for size in BATCH_SIZES}}


def write_once(folder: Path, way: str, step: int, threads: int, heads: int) -> float:
    """Seconds to store WRITER_SEGMENTS segments one way into a new store under `folder`."""
    from engine.memory import states
    from ingest import catalog
    from ingest.store import Store

    keys = np.random.default_rng(0).integers(-127, 128, (SEGMENT_TOKENS, heads, 64), dtype=np.int8)
    states.SYNC_THREADS = threads
    with tempfile.TemporaryDirectory(dir=folder) as tmp, Store.open(Path(tmp) / "store", write=True) as store:
        started = time.perf_counter()
        for first in range(0, WRITER_SEGMENTS, step):
            batch = [(index * SEGMENT_TOKENS, (index + 1) * SEGMENT_TOKENS, keys)
                     for index in range(first, min(first + step, WRITER_SEGMENTS))]
            work = [catalog.SegmentWork(start, end, "bench", 0, 1, "bench", "cpu", 0.0) for start, end, _ in batch]
            if way == "step":
                states.write_states(store.root, batch)
            else:
                for one in batch:
                    states.write_states(store.root, [one])
            if way == "per_segment":
                for item in work:
                    catalog.record_segments(store.db, [item])
            else:
                catalog.record_segments(store.db, work)
        seconds = time.perf_counter() - started
    os.sync()  # the deleted store's writes and discards land here, not in the next measurement
    return seconds


def measure_writer(folder: Path, heads: int) -> dict:
    from engine.memory import states

    default_threads = states.SYNC_THREADS
    os.sync()
    ways = [("per_segment", 1, 1)]
    for step in (8, 32):
        ways += [("per_segment_files", step, 1), ("step", step, default_threads)]
    ways += [("step", 32, threads) for threads in (1, 4, 32) if threads != default_threads]
    seconds: dict[tuple, list[float]] = {way: [] for way in ways}
    for _ in range(WRITER_ROUNDS):
        for way in ways:
            seconds[way].append(write_once(folder, *way, heads))
    states.SYNC_THREADS = default_threads
    results = []
    for (way, step, threads), runs in seconds.items():
        median = statistics.median(runs)
        results.append({"way": way, "step_segments": step, "sync_threads": threads if way == "step" else None,
                         "seconds_runs": [round(run, 3) for run in runs],
                         "segments_per_second": round(WRITER_SEGMENTS / median, 1),
                         "tokens_per_second": round(WRITER_SEGMENTS * SEGMENT_TOKENS / median)})
    return {"segments": WRITER_SEGMENTS, "segment_tokens": SEGMENT_TOKENS, "key_shape": [SEGMENT_TOKENS, heads, 64],
            "rounds": WRITER_ROUNDS, "figure": "median of the rounds", "default_sync_threads": default_threads,
            "runs": results}


def file_system(path: Path) -> str:
    """The mount (device, type) holding `path`, from /proc/mounts: fsync figures belong to it."""
    path, best = path.resolve(), ("?", "?", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, kind = line.split()[:3]
        if (path == Path(mount) or Path(mount) in path.parents) and len(mount) > len(best[2]):
            best = (device, kind, mount)
    return f"{best[0]} ({best[1]}) mounted on {best[2]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the writer's stores go (default: the system's temporary folder)")
    parser.add_argument("--rounds", type=int, default=1, help="encode rounds, alternating order (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "segments_cpu.json")
    args = parser.parse_args()

    from engine.memory.calibration import calibration_for
    from engine.memory.config import EngineConfig
    from engine.runtime import load_runtime

    load_start = os.getloadavg()
    runtime = load_runtime(None, "cpu")
    config = EngineConfig.from_calibration(runtime, calibration_for(runtime))
    encode = measure_encode(runtime, config, args.rounds)
    writer = measure_writer(args.dir, len(config.heads))
    load_end = os.getloadavg()
    result = {
        "what": "segment processing on the CPU: encode tokens/s by batch_segments on the embedded model, and the "
                "state writer alone (per-segment fsync vs the per-step writer)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "torch": torch.__version__,
        "model": f"{runtime.source.name} ({runtime.digest[:12]})",
        "date": date.today().isoformat(),
        "load_average_at_start": [round(value, 2) for value in load_start],
        "load_average_at_end": [round(value, 2) for value in load_end],
        "command": "nice -n 19 python bench/bench_segments.py" + (f" --rounds {args.rounds}" * (args.rounds > 1)),
        "writer_file_system": file_system(args.dir),
        "encode": encode,
        "writer": writer,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for size in BATCH_SIZES:
        print(f"encode, batch_segments {size}: {encode['tokens_per_second_mean'][str(size)]:,.0f} tokens/s, "
              f"{encode['tokens_per_cpu_second_mean'][str(size)]:,.0f} tokens per CPU-second (keys within "
              f"{encode['max_int8_steps_from_batch_1'][str(size)]} int8 step(s) of batch 1)")
    for run in writer["runs"]:
        threads = f", {run['sync_threads']} sync threads" if run["sync_threads"] else ""
        print(f"writer {run['way']}, step {run['step_segments']}{threads}: {run['segments_per_second']:,.0f} "
              f"segments/s, {run['tokens_per_second']:,} tokens/s")
    print(f"load average {load_start[0]:.2f} -> {load_end[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
