"""The engine's pass on the CPU, its cheaper variants side by side: dtype, threads, torch.compile, batching.

    python bench/bench_cpu_pass.py [--memory fast] [--rounds 5] [--segments 8] [--qa]
        # writes bench/results/cpu_pass.json and prints a table

What it measures, in one run on the CPU: the real embedded model reading the same `--segments` segments of
2048 tokens of real prose (windows spread evenly over the QA corpus, bench/qa/corpus, public-domain PEPs)
through `engine.memory.segments.encode_segments`, the function `process_store` turns a batch of segments
into stored keys with, as far as the store's deepest kept layer (6 of 30 layers for `--memory fast`), for
each option:
- `fp32`: the float32 path (float32 weights and activations, torch's default threads, 4 segments a pass);
- `fp32_threads1`, `fp32_batch1`: one thread; one segment a pass;
- `bf16_autocast`: float32 weights, the pass under `torch.autocast("cpu", torch.bfloat16)` (`reading_dtype`
  bf16: the engine's default on a CPU with bf16 instructions, `engine.runtime.reading_dtype`);
- `bf16`, `bf16_threads1`, `fp16`: a copy of the model with its weights in that dtype (activations follow);
- `fp32_compiled`, `bf16_compiled`: a copy whose blocks are `torch.compile`d (compile time reported apart).
The options are interleaved (A, B, C, ..., then reversed in the next round) so that the load of other jobs
on the shared cores weighs on all alike; the figure is the median over `--rounds` of tokens/s of wall time
(and per CPU-second of this process). Each option's first call is a warm-up outside the timing (for the
compiled ones, the compile).

Beside the speed, whether an option changes the stored keys, against `fp32`'s: largest and mean difference
of the int8 values, share identical, cosine of each token's stored key (dequantised, as retrieval reads it),
and what retrieval would rank: the engine's block scores (`model_block_scores` on an exact `KeyIndex`, hub
scores against background passages sampled from the same text, all through the product code) for the
questions of the QA train split, each asked with float32 queries; share of questions whose top block is
the same, mean overlap of the top 4, share whose top 4 are the same set. Rankings over a few hundred blocks
move with any change of the keys (near ties), so `--qa` also measures what counts: the whole QA corpus read
into a store with fp32 and with the default reading (`bench/bench_memory.py`'s store and scoring), hit@1/@4
of the gold block on the train split for the heads alone, full-text search and the fusion, per question kind.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
QA = REPO / "bench" / "qa"
SEGMENT_TOKENS = 2048
BATCH = 4
TOP = 4
# Set to measure what a CPU without some instructions would do (e.g. ONEDNN_MAX_CPU_ISA=AVX2
# ATEN_CPU_CAPABILITY=avx2: no bf16 instructions); recorded in the command when set.
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


@dataclasses.dataclass
class Option:
    name: str
    runtime: object  # engine.runtime.Runtime, possibly with another copy of the model
    threads: int
    batch: int = BATCH
    failure: str | None = None


def corpus_segments(tokenizer, count: int) -> tuple[list[np.ndarray], list[int]]:
    """`count` windows of SEGMENT_TOKENS tokens spread evenly over the QA corpus read as one sequence (files in
    name order, as `engine ingest` appends them), and the first token position of each."""
    ids: list[int] = []
    for path in sorted((QA / "corpus").glob("*")):
        ids += tokenizer.encode(path.read_text())
    step = (len(ids) - SEGMENT_TOKENS) // max(count - 1, 1) // SEGMENT_TOKENS * SEGMENT_TOKENS
    starts = [index * step for index in range(count)]
    return [np.array(ids[start:start + SEGMENT_TOKENS], dtype=np.int64) for start in starts], starts


def compiled_copy(model):
    """A copy of `model` whose blocks are torch.compile'd (each block compiles on its first call)."""
    twin = copy.deepcopy(model)
    for block in twin.layers:
        block.compile()
    return twin


def build_options(runtime, threads: int) -> list[Option]:
    fp32 = dataclasses.replace(runtime, reading_dtype=None)
    bf16 = dataclasses.replace(fp32, model=copy.deepcopy(runtime.model).to(torch.bfloat16))
    fp16 = dataclasses.replace(fp32, model=copy.deepcopy(runtime.model).to(torch.float16))
    options = [Option("fp32", fp32, threads), Option("fp32_threads1", fp32, 1),
               Option("fp32_batch1", fp32, threads, batch=1),
               Option("bf16_autocast", dataclasses.replace(runtime, reading_dtype=torch.bfloat16), threads),
               Option("bf16", bf16, threads), Option("bf16_threads1", bf16, 1), Option("fp16", fp16, threads)]
    # Each block compiles once per distinct layer index (an int attribute torch.compile treats as static):
    # the default limit of 8 compilations of one function would fall back to eager mode part of the way.
    torch._dynamo.config.recompile_limit = 64
    for name, source in (("fp32_compiled", fp32), ("bf16_compiled", bf16)):
        options.append(Option(name, dataclasses.replace(source, model=compiled_copy(source.model)), threads))
    return options


def encode_all(option: Option, config, segments: list[np.ndarray]) -> list[np.ndarray]:
    from engine.memory.segments import encode_segments

    torch.set_num_threads(option.threads)
    keys: list[np.ndarray] = []
    for first in range(0, len(segments), option.batch):
        keys += encode_segments(option.runtime, config, segments[first:first + option.batch])
    return keys


def warm_up(option: Option, config, segments: list[np.ndarray], threads: int) -> float | None:
    """Seconds of the option's first call (a compile for the compiled ones); None, with the reason kept, when
    it fails."""
    started = time.perf_counter()
    try:
        encode_all(option, config, segments[:option.batch])
    except Exception as error:  # e.g. a compiler missing or failing: recorded, the option left out
        option.failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        return None
    finally:
        torch.set_num_threads(threads)
    return round(time.perf_counter() - started, 2)


def key_agreement(keys: list[np.ndarray], reference: list[np.ndarray]) -> dict:
    a = np.concatenate(keys).astype(np.int16)
    b = np.concatenate(reference).astype(np.int16)
    steps = np.abs(a - b)
    unit_a, unit_b = a.astype(np.float32) / 127, b.astype(np.float32) / 127
    cosine = (unit_a * unit_b).sum(-1) / (np.linalg.norm(unit_a, axis=-1) * np.linalg.norm(unit_b, axis=-1))
    return {"max_int8_steps": int(steps.max()), "mean_int8_steps": round(float(steps.mean()), 4),
            "share_identical": round(float((steps == 0).mean()), 4),
            "key_cosine_min": round(float(cosine.min()), 5), "key_cosine_mean": round(float(cosine.mean()), 6)}


def top_blocks(runtime, config, keys: list[np.ndarray], starts: list[int], queries: list[list[np.ndarray]],
               background: list[np.ndarray]) -> list[list[int]]:
    """Per question, the TOP blocks the engine's model scores rank first over these keys."""
    from engine.answer.retrieval import model_block_scores
    from engine.memory.key_index import KeyIndex
    from engine.memory.segments import segment_hubs

    index = KeyIndex.exact(len(config.heads), len(config.key_means[0]))
    for start, segment_keys, hubs in zip(starts, keys, segment_hubs(config, background, keys)):
        index.add_keys(np.arange(start, start + len(segment_keys)), segment_keys)
        index.set_hubs(start // config.block_tokens, hubs)
    ranked = []
    for question_queries in queries:
        scores = model_block_scores(index, question_queries, config.block_tokens)
        ranked.append(sorted(scores, key=scores.get, reverse=True)[:TOP])
    return ranked


def ranking_agreement(ranked: list[list[int]], reference: list[list[int]]) -> dict:
    return {"same_top1": round(statistics.mean(a[0] == b[0] for a, b in zip(ranked, reference)), 4),
            f"top{TOP}_overlap": round(statistics.mean(len(set(a) & set(b)) / TOP for a, b in zip(ranked, reference)), 4),
            f"same_top{TOP}_set": round(statistics.mean(set(a) == set(b) for a, b in zip(ranked, reference)), 4)}


def qa_hits(runtime, memory: str) -> dict:
    """The QA corpus read into a store with fp32 and with the default reading; the pass's tokens/s and the train
    split's hit rates of each."""
    import tempfile

    from bench.bench_memory import make_store, retrieval_hits

    readings = {"fp32": dataclasses.replace(runtime, reading_dtype=None), "default": runtime}
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, reader in readings.items():
            root = Path(scratch) / name
            speed = make_store(root, QA / "corpus", reader, memory)
            figures[name] = {"reading_dtype": dtype_name(reader.reading_dtype), "pass": speed,
                             "hits": retrieval_hits(root, runtime)}
            print(name, speed, figures[name]["hits"]["heads"]["answerable"], figures[name]["hits"]["fusion"]["answerable"],
                  flush=True)
    return figures


def dtype_name(dtype: torch.dtype | None) -> str | None:
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def cpu_flags() -> list[str]:
    flags = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return sorted(flag for flag in flags if flag.startswith(("avx512_bf16", "avx512_fp16", "amx", "avx2")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", default="fast", help="the store setting whose layers are read (default fast)")
    parser.add_argument("--segments", type=int, default=8, help="segments of 2048 tokens per option and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="comma-separated option names (default: all); fp32 is always run")
    parser.add_argument("--qa", action="store_true", help="also the QA train split's hit rates, fp32 and default")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu_pass.json")
    args = parser.parse_args()

    from engine.memory.calibration import calibration_for
    from engine.memory.config import EngineConfig
    from engine.memory.hubs import background_sample
    from engine.memory.queries import background_queries, question_queries
    from engine.runtime import load_runtime

    load_start = os.getloadavg()
    threads = torch.get_num_threads()
    runtime = load_runtime(None, "cpu")
    segments, starts = corpus_segments(runtime.tokenizer, args.segments)
    by_start = dict(zip(starts, segments))

    def text_of(start: int, end: int) -> str:  # a window inside one segment (segments start on multiples of 2048)
        first = start - start % SEGMENT_TOKENS
        return runtime.tokenizer.decode(by_start[first][start - first:end - first].tolist())

    ranges = [(start, start + SEGMENT_TOKENS) for start in starts]
    config = EngineConfig.from_calibration(runtime, calibration_for(runtime), args.memory,
                                           background_sample(ranges, text_of))
    questions = [item["question"] for item in json.loads((QA / "questions_train.json").read_text())]
    with torch.inference_mode():
        queries = [question_queries(runtime, config, question) for question in questions]
    background = background_queries(runtime, config)

    options = build_options(runtime, threads)
    if args.only:
        wanted = {"fp32", *args.only.split(",")}
        options = [option for option in options if option.name in wanted]
    warm = {option.name: warm_up(option, config, segments, threads) for option in options}
    failed = {option.name: option.failure for option in options if option.failure is not None}
    options = [option for option in options if option.failure is None]
    tokens = len(segments) * SEGMENT_TOKENS
    wall: dict[str, list[float]] = {option.name: [] for option in options}
    cpu: dict[str, list[float]] = {option.name: [] for option in options}
    keys: dict[str, list[np.ndarray]] = {}
    for round_ in range(args.rounds):
        for option in options if round_ % 2 == 0 else list(reversed(options)):
            started, cpu_started = time.perf_counter(), time.process_time()
            keys[option.name] = encode_all(option, config, segments)
            wall[option.name].append(round(tokens / (time.perf_counter() - started), 1))
            cpu[option.name].append(round(tokens / (time.process_time() - cpu_started), 1))
        torch.set_num_threads(threads)
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{name} {runs[-1]:,.0f}" for name, runs in wall.items()),
              flush=True)
    reference_ranked = top_blocks(runtime, config, keys["fp32"], starts, queries, background)
    baseline = statistics.median(wall["fp32"])
    results = {}
    for option in options:
        median = statistics.median(wall[option.name])
        ranked = top_blocks(runtime, config, keys[option.name], starts, queries, background)
        results[option.name] = {
            "threads": option.threads, "batch_segments": option.batch,
            "autocast": dtype_name(option.runtime.reading_dtype),
            "weights_dtype": dtype_name(next(option.runtime.model.parameters()).dtype),
            "first_call_seconds": warm[option.name],
            "tokens_per_second_median": round(median, 1), "speedup_over_fp32": round(median / baseline, 3),
            "tokens_per_second_runs": wall[option.name],
            "tokens_per_cpu_second_median": round(statistics.median(cpu[option.name]), 1),
            "keys_against_fp32": key_agreement(keys[option.name], keys["fp32"]),
            "retrieval_against_fp32": ranking_agreement(ranked, reference_ranked)}
    load_end = os.getloadavg()
    result = {
        "what": "the engine's model pass on the CPU (encode_segments, as process_store calls it) by option: tokens/s "
                "median over interleaved rounds, and how far each option's stored keys and block ranking are from "
                "float32's",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'}), "
                   f"Python {platform.python_version()}; cpu flags: {' '.join(cpu_flags())}",
        "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "model": f"{runtime.source.name} ({runtime.digest[:12]})",
        "date": date.today().isoformat(),
        "command": "".join(f"{name}={os.environ[name]} " for name in ISA_LIMITS if name in os.environ) +
                   f"python bench/bench_cpu_pass.py --memory {args.memory} --segments {args.segments} "
                   f"--rounds {args.rounds}" + (f" --only {args.only}" if args.only else "") + (" --qa" if args.qa else ""),
        "load_average_at_start": [round(value, 2) for value in load_start],
        "load_average_at_end": [round(value, 2) for value in load_end],
        "memory": args.memory, "layers_read": config.layers_read, "heads": config.heads,
        "segments": len(segments), "segment_tokens": SEGMENT_TOKENS, "segment_starts": starts,
        "rounds": args.rounds, "order": "options in order in even rounds, reversed in odd ones",
        "questions": f"bench/qa/questions_train.json, {len(questions)} questions, float32 queries",
        "default_threads": threads, "default_reading_dtype": dtype_name(runtime.reading_dtype),
        "options": results, "failed": failed}
    if args.qa:
        result["qa_train"] = qa_hits(runtime, args.memory)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, figures in results.items():
        keys_, ranks = figures["keys_against_fp32"], figures["retrieval_against_fp32"]
        print(f"{name:14} {figures['tokens_per_second_median']:8,.0f} tokens/s  x{figures['speedup_over_fp32']:.2f}  "
              f"first call {figures['first_call_seconds']} s  keys: max {keys_['max_int8_steps']} steps, "
              f"{keys_['share_identical']:.1%} identical, cosine min {keys_['key_cosine_min']}  retrieval: "
              f"top1 {ranks['same_top1']:.0%}, top{TOP} overlap {ranks[f'top{TOP}_overlap']:.0%}")
    print(f"load average {load_start[0]:.2f} -> {load_end[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
