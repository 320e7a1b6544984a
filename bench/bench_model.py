"""Model load time, prefill and decode speed: our Llama code beside transformers, in one run.

    python bench/bench_model.py                 # CPU: load (first/cached), prefill 512/2k, decode
    python bench/bench_model.py --device cuda   # adds prefill at 2k and 8k tokens on the GPU

Writes bench/results/model_<device>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from engine.model.files import resolve_model_path
from engine.model.generate import generate_tokens
from engine.runtime import default_dtype, load_runtime

RESULTS = Path(__file__).parent / "results"


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of `fn` after one warm-up, synchronising the GPU around each run."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def load_times(model_path: Path, device: str) -> dict:
    """First load (dequantise + write cache) in a fresh cache, then a cached load, then transformers'."""
    import os

    import transformers

    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("ENGINE_CACHE")
        os.environ["ENGINE_CACHE"] = cache
        try:
            first = load_runtime(str(model_path), device).load_seconds
            cached = load_runtime(str(model_path), device).load_seconds
        finally:
            if previous is None:
                os.environ.pop("ENGINE_CACHE")
            else:
                os.environ["ENGINE_CACHE"] = previous
    started = time.perf_counter()
    transformers.AutoModelForCausalLM.from_pretrained(model_path.parent, gguf_file=model_path.name)
    return {"ours_first_s": first, "ours_cached_s": cached, "transformers_s": time.perf_counter() - started}


def prefill_rates(ours, theirs, device: torch.device, lengths: list[int], repeats: int) -> list[dict]:
    rows = []
    for length in lengths:
        tokens = torch.randint(100, 40000, (1, length), device=device, generator=None)
        with torch.inference_mode():
            mine = timed(lambda tokens=tokens: ours.model.hidden_states(tokens), device, repeats)
            ref = timed(lambda tokens=tokens: theirs.model(tokens), device, repeats)
        rows.append({"tokens": length, "ours_tok_s": length / mine, "transformers_tok_s": length / ref})
    return rows


def decode_rates(ours, theirs, device: torch.device, new_tokens: int) -> dict:
    prompt = ours.tokenizer.encode("Write a long story about a lighthouse keeper and the sea.")
    started = time.perf_counter()
    produced = sum(1 for _ in generate_tokens(ours.model, prompt, new_tokens, stop_ids=set()))
    mine = produced / (time.perf_counter() - started)
    ids = torch.tensor([prompt], device=device)
    started = time.perf_counter()
    with torch.inference_mode():
        out = theirs.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                              eos_token_id=None, pad_token_id=None)
    theirs_rate = (out.shape[1] - ids.shape[1]) / (time.perf_counter() - started)
    return {"new_tokens": new_tokens, "ours_tok_s": mine, "transformers_tok_s": theirs_rate}


def main() -> None:
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    model_path = resolve_model_path(None)
    lengths = [2048, 8192] if device.type == "cuda" else [512, 2048]
    result = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                         f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device),
              "device": str(device), "date": date.today().isoformat(), "torch": torch.__version__,
              "transformers": transformers.__version__, "model": model_path.name,
              "dtype": str(default_dtype(device)).replace("torch.", "")}
    result["load"] = load_times(model_path, args.device)
    ours = load_runtime(str(model_path), args.device)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        model_path.parent, gguf_file=model_path.name, dtype=default_dtype(device)).to(device).eval()
    result["prefill"] = prefill_rates(ours, theirs, device, lengths, args.repeats)
    result["decode"] = decode_rates(ours, theirs, device, 64)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"model_{device.type}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    load = result["load"]
    print(f"load: ours first {load['ours_first_s']:.1f} s, cached {load['ours_cached_s']:.2f} s; "
          f"transformers {load['transformers_s']:.1f} s")
    for row in result["prefill"]:
        print(f"prefill {row['tokens']:>6} tokens: ours {row['ours_tok_s']:>10,.0f} tok/s   "
              f"transformers {row['transformers_tok_s']:>10,.0f} tok/s")
    decode = result["decode"]
    print(f"decode {decode['new_tokens']} tokens: ours {decode['ours_tok_s']:.1f} tok/s   "
          f"transformers {decode['transformers_tok_s']:.1f} tok/s")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
