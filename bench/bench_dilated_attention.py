"""Dilated attention forward time against sequence length, beside dense causal attention.

For each head shape and pattern configuration, at sequence lengths doubling from ``--min-seq``,
it times every method it can still run:

* ``triton``: ``kernels.dilated_attention`` on CUDA (fused kernel, patterns merged in-kernel);
* ``triton-separate``: the same kernel with per-pattern buffers merged afterwards (CUDA only),
  which is how the in-kernel merge was chosen;
* ``reference``: the PyTorch reference (the CPU engine path);
* ``dense-sdpa``: full causal attention, ``torch.nn.functional.scaled_dot_product_attention``
  (flash attention on CUDA), which does not depend on the configuration.

A method stops at the first length where it runs out of memory or where its time, predicted from
its last length by FLOP count, would exceed ``--max-call-s``. Effective TFLOP/s counts only the
work each method's pattern does (``kernels.flops``: 4 * dim FLOPs per attended query-key pair),
so dense and dilated figures compare useful work per second.

Configurations: ``longnet`` is the paper's w = 2048, 4096, 8192, 16384, 32768 with
r = 1, 2, 4, 6, 12, except that 16384 and 32768 are not multiples of 6 and 12, which the kernels
require, so they become 16386 and 32772 (2731 kept rows per segment); ``window2048`` is one
(2048, 1) window.

Results go to ``bench/results/dilated_attention_<device>.json`` (records of shapes not measured
in this run are kept from the file, so shapes can be run as separate commands) and, when
matplotlib is importable, a plot next to it. Targets for the GPU (see the JSON's ``summary``): time per token
flat within +-20% from 64k to 1M tokens; effective TFLOP/s at 8k at least 60% of dense flash;
at 1M at least 100x faster than dense.

    python bench/bench_dilated_attention.py --shapes 9x64-kv3 --stop-after-s 480  # CUDA if present
    python bench/bench_dilated_attention.py --shapes 16x128 --stop-after-s 480
    python bench/bench_dilated_attention.py --device cpu --max-seq 32768
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels import reference  # noqa: E402
from kernels.flops import dense_attention_flops, dilated_attention_flops  # noqa: E402

CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "longnet": ((2048, 4096, 8192, 16386, 32772), (1, 2, 4, 6, 12)),
    "window2048": ((2048,), (1,)),
}
SHAPES: dict[str, tuple[int, int, int]] = {  # heads, kv_heads, head_dim
    "9x64-kv3": (9, 3, 64),
    "16x128": (16, 16, 128),
}
DENSE = "dense-sdpa"
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    out_json = Path(args.out_dir) / f"dilated_attention_{device_slug(device)}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    earlier = kept_records(out_json, args)
    load_before = os.getloadavg()[0]
    records: list[dict] = []
    for _ in measure_all(args, device, records):
        # After every length, so a run stopped by a time limit still leaves its results.
        write_results(out_json, earlier + records, args, device, load_before)
    write_results(out_json, earlier + records, args, device, load_before)
    print(f"wrote {out_json}")
    for line in summarise(earlier + records):
        print(json.dumps(line))
    plot_path = plot(earlier + records, out_json.with_suffix(".png"), device_name(device), args.dtype)
    print(f"wrote {plot_path}" if plot_path else "matplotlib not importable: no plot")


def measure_all(args: argparse.Namespace, device: torch.device, records: list[dict]):
    """Append records shape by shape, length by length; yield after each length."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    methods = args.methods or (["triton", "triton-separate", "reference", DENSE] if device.type == "cuda" else ["reference", DENSE])
    started = time.monotonic()
    for shape_name in args.shapes:
        heads, kv_heads, dim = SHAPES[shape_name]
        limits: dict[tuple[str, str], tuple[int, float] | str] = {}
        seq = args.min_seq
        while seq <= args.max_seq:
            if args.stop_after_s is not None and time.monotonic() - started > args.stop_after_s:
                print(f"--stop-after-s reached: not starting {shape_name} at {seq} tokens", flush=True)
                return
            q, k, v = make_inputs(seq, heads, kv_heads, dim, dtype, device)
            for config_name in [*args.configs, "dense"]:
                for method in methods:
                    if (config_name == "dense") != (method == DENSE):
                        continue
                    record = run_one(shape_name, config_name, method, q, k, v, limits, args.max_call_s)
                    records.append(record)
                    print(format_record(record), flush=True)
            del q, k, v
            if device.type == "cuda":
                torch.cuda.empty_cache()
            yield
            if limits and all(isinstance(state, str) for state in limits.values()):
                break
            seq *= 2


def write_results(path: Path, records: list[dict], args: argparse.Namespace, device: torch.device, load_before: float) -> None:
    result = {
        "device": device_name(device),
        "device_slug": device_slug(device),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "triton": triton_version(),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        # Other work on the machine skews CPU timings; the load average says how much there was.
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "configs": {name: {"segment_lengths": w, "dilation_rates": r} for name, (w, r) in CONFIGS.items()},
        "shapes": {name: dict(zip(("heads", "kv_heads", "head_dim"), s)) for name, s in SHAPES.items()},
        "records": records,
        "summary": summarise(records),
    }
    path.write_text(json.dumps(result, indent=1) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if cuda else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"], help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--min-seq", type=int, default=None, help="default: 8192 on CUDA, 1024 on CPU")
    parser.add_argument("--max-seq", type=int, default=None, help="default: 2**24 on CUDA (until memory runs out), 32768 on CPU")
    parser.add_argument("--max-call-s", type=float, default=None, help="skip a method once one call would take longer; default: 20 on CUDA, 60 on CPU")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--methods", nargs="+", default=None, choices=["triton", "triton-separate", "reference", DENSE])
    parser.add_argument("--stop-after-s", type=float, default=None, help="start no new length after this many seconds")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    on_cuda = args.device == "cuda"
    args.dtype = args.dtype or ("bf16" if on_cuda else "fp32")
    args.min_seq = args.min_seq or (8192 if on_cuda else 1024)
    args.max_seq = args.max_seq or (2**24 if on_cuda else 32768)
    args.max_call_s = args.max_call_s or (20.0 if on_cuda else 60.0)
    return args


def kept_records(path: Path, args: argparse.Namespace) -> list[dict]:
    """Records of shapes this run does not measure, from an earlier run with the same dtype, so the
    shapes can be measured in separate commands (the GPU machine allows 10 minutes per command)."""
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    if earlier.get("dtype") != args.dtype:
        return []
    return [r for r in earlier.get("records", []) if r["shape"] not in args.shapes]


def make_inputs(seq, heads, kv_heads, dim, dtype, device):
    gen = torch.Generator(device=device).manual_seed(seq)
    return tuple(torch.randn(1, seq, h, dim, generator=gen, device=device, dtype=dtype) for h in (heads, kv_heads, kv_heads))


def run_one(shape_name, config_name, method, q, k, v, limits, max_call_s) -> dict:
    """Time one method at one length unless it already stopped; update its stopping state."""
    _, seq, heads, dim = q.shape
    if config_name == "dense":
        flops = dense_attention_flops(seq, heads, dim)
        segment_lengths, dilation_rates = None, None
    else:
        segment_lengths, dilation_rates = CONFIGS[config_name]
        flops = dilated_attention_flops(seq, heads, dim, segment_lengths, dilation_rates)
    record = {"shape": shape_name, "config": config_name, "method": method, "seq_len": seq, "flops": flops}
    key = (config_name, method)
    state = limits.get(key)
    if isinstance(state, str):
        return {**record, "status": f"stopped: {state}"}
    if state is not None:
        last_flops, last_s = state
        predicted = last_s * flops / last_flops
        if predicted > max_call_s:
            limits[key] = f"predicted {predicted:.0f} s per call at {seq} tokens > --max-call-s"
            return {**record, "status": f"stopped: {limits[key]}"}
    fn = make_call(method, q, k, v, segment_lengths, dilation_rates)
    try:
        seconds = measure(fn, q.device)
    except torch.cuda.OutOfMemoryError:
        limits[key] = f"out of memory at {seq} tokens"
        torch.cuda.empty_cache()
        return {**record, "status": f"stopped: {limits[key]}"}
    limits[key] = (flops, seconds)
    return {
        **record,
        "status": "ok",
        "ms": seconds * 1e3,
        "us_per_token": seconds * 1e6 / seq,
        "tflops": flops / seconds / 1e12,
    }


def make_call(method, q, k, v, segment_lengths, dilation_rates) -> Callable[[], object]:
    if method == DENSE:
        qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))
        return lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)
    patterns = dict(segment_lengths=segment_lengths, dilation_rates=dilation_rates)
    if method == "reference":
        return lambda: reference.dilated_attention(q, k, v, **patterns)
    from kernels.dilated_attention import dilated_attention_triton

    merge = "separate" if method == "triton-separate" else "fused"
    return lambda: dilated_attention_triton(q, k, v, **patterns, merge=merge)


def measure(fn: Callable[[], object], device: torch.device, budget_s: float = 1.0) -> float:
    """Median seconds per call. The first call warms up (and compiles Triton kernels); on the CPU
    a first call over 2 s is the measurement, to keep long lengths affordable."""
    if device.type == "cuda":
        fn()
        torch.cuda.synchronize()
        times: list[float] = []
        while len(times) < 3 or (sum(times) < budget_s and len(times) < 50):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
            if times[0] > 5.0:
                break
        return statistics.median(times)
    first = _wall(fn)
    if first > 2.0:
        return first
    times = []
    while len(times) < 3 or sum(times) < budget_s:
        times.append(_wall(fn))
    return statistics.median(times)


def _wall(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summarise(records: list[dict]) -> list[dict]:
    """The three GPU targets, per shape and configuration, for each dilated method."""
    ok = [r for r in records if r["status"] == "ok"]
    dense = {(r["shape"], r["seq_len"]): r for r in ok if r["method"] == DENSE}
    lines = []
    for shape, config, method in sorted({(r["shape"], r["config"], r["method"]) for r in ok if r["method"] != DENSE}):
        runs = {r["seq_len"]: r for r in ok if (r["shape"], r["config"], r["method"]) == (shape, config, method)}
        per_token = [r["us_per_token"] for n, r in runs.items() if 65536 <= n <= 2**20]
        flat = None
        if len(per_token) >= 2:
            middle = statistics.median(per_token)
            flat = max(abs(x / middle - 1) for x in per_token)
        at_8k = runs.get(8192)
        dense_8k = dense.get((shape, 8192))
        at_1m = runs.get(2**20)
        dense_1m = dense.get((shape, 2**20))
        longest = max(runs)
        dense_longest = dense.get((shape, longest))
        lines.append({
            "shape": shape,
            "config": config,
            "method": method,
            "per_token_max_deviation_64k_to_1m": flat,
            "tflops_fraction_of_dense_at_8k": at_8k["tflops"] / dense_8k["tflops"] if at_8k and dense_8k else None,
            "speedup_over_dense_at_1m": dense_1m["ms"] / at_1m["ms"] if at_1m and dense_1m else None,
            "longest_seq_len": longest,
            "speedup_over_dense_at_longest_both_ran": dense_longest["ms"] / runs[longest]["ms"] if dense_longest else None,
        })
    return lines


def format_record(r: dict) -> str:
    head = f"{r['shape']:>9} {r['config']:>10} {r['method']:>15} {r['seq_len']:>9}"
    if r["status"] != "ok":
        return f"{head}  {r['status']}"
    return f"{head}  {r['ms']:12.2f} ms  {r['us_per_token']:9.3f} us/token  {r['tflops']:8.3f} TFLOP/s"


def plot(records: list[dict], path: Path, device: str, dtype: str) -> Path | None:
    """Time per token and effective TFLOP/s against length, one row of panels per shape."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ok = [r for r in records if r["status"] == "ok"]
    shapes = sorted({r["shape"] for r in ok})
    if not shapes:
        return None
    fig, axes = plt.subplots(len(shapes), 2, figsize=(12, 4.2 * len(shapes)), squeeze=False)
    for row, shape in zip(axes, shapes):
        series = sorted({(r["config"], r["method"]) for r in ok if r["shape"] == shape})
        for config, method in series:
            runs = sorted((r for r in ok if (r["shape"], r["config"], r["method"]) == (shape, config, method)), key=lambda r: r["seq_len"])
            label = method if config == "dense" else f"{config} / {method}"
            style = "k--" if config == "dense" else "-o"
            xs = [r["seq_len"] for r in runs]
            row[0].plot(xs, [r["us_per_token"] for r in runs], style, label=label, markersize=3)
            row[1].plot(xs, [r["tflops"] for r in runs], style, label=label, markersize=3)
        for ax, ylabel in zip(row, ("time per token (us)", "effective TFLOP/s")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length (tokens)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{shape}, {dtype}")
            ax.grid(True, which="both", alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle(f"dilated attention forward, {device}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


if __name__ == "__main__":
    main()
