"""Every layer's pre-RoPE keys of a processed store, for exploring which states retrieve best (issue: memory).

    python bench/memory/dump_keys.py --store .qa-store --out /tmp/keys-w2048 [--segment 2048] [--pattern 2048:1]

Reads the store's tokens segment by segment through all of the model's layers with the given dilated pattern
(`--pattern 2048:1,8192:4` = segment lengths and dilation rates) and writes `keys.f16` (tokens, layers, KV heads,
head_dim) as a raw float16 memmap plus `meta.json`. Exploration only: the store is not changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--segment", type=int, default=2048)
    parser.add_argument("--pattern", default="2048:1")
    parser.add_argument("--rope-mode", default="true")
    parser.add_argument("--layers", type=int, default=0, help="read this many layers (0: all)")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    import engine
    from engine.model.attention import DilatedAttention, KeyRecorder
    from ingest.sequence import read_tokens

    lengths = [int(part.split(":")[0]) for part in args.pattern.split(",")]
    rates = [int(part.split(":")[1]) for part in args.pattern.split(",")]
    torch.set_grad_enabled(False)
    with engine.open_store(args.store, device="cpu") as store:
        runtime = store.runtime
        cfg = runtime.config
        layers = args.layers or cfg.num_layers
        total = store.store.tokens_path.stat().st_size // 4
        args.out.mkdir(parents=True, exist_ok=True)
        keys = np.lib.format.open_memmap(args.out / "keys.npy", mode="w+", dtype=np.float16,
                                         shape=(total, layers, cfg.num_kv_heads, cfg.head_dim))
        cos, sin = runtime.model.rope(args.segment)
        starts = list(range(0, total, args.segment))
        began = time.perf_counter()
        done = 0
        for first in range(0, len(starts), args.batch):
            group = [(s, min(s + args.segment, total)) for s in starts[first:first + args.batch]]
            by_length: dict[int, list[tuple[int, int]]] = {}
            for s, e in group:
                by_length.setdefault(e - s, []).append((s, e))
            for segs in by_length.values():
                recorder = KeyRecorder(DilatedAttention(cos, sin, lengths, rates, args.rope_mode), set(range(layers)))
                tokens = torch.as_tensor(np.stack([read_tokens(store.store.tokens_path, s, e) for s, e in segs])
                                         .astype(np.int64))
                runtime.model.run_layers(tokens, recorder, layers)
                stacked = torch.stack([recorder.keys[layer] for layer in range(layers)], dim=2)  # B,T,L,H,D
                for row, (s, e) in enumerate(segs):
                    keys[s:e] = stacked[row].to(torch.float16).numpy()
                    done += e - s
            rate = done / (time.perf_counter() - began)
            print(f"{done}/{total} tokens, {rate:.0f} tok/s", file=sys.stderr, flush=True)
        keys.flush()
        (args.out / "meta.json").write_text(json.dumps({"tokens": total, "layers": layers, "segment": args.segment,
                                                          "pattern": args.pattern, "rope_mode": args.rope_mode,
                                                          "seconds": time.perf_counter() - began}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
