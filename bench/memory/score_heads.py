"""Block scores of every (layer, query head) for the QA questions, from dumped keys (bench/memory/dump_keys.py).

    python bench/memory/score_heads.py --store .qa-store --keys /tmp/keys-w2048 [--split train] [--query own]
        [--centre mean|none]

For each question the model encodes the chat prompt asking it; the queries of the question's own tokens
(`--query own`), of the whole prompt (`all`) or of its last 8 tokens (`last8`) search every head's keys
(centred by the head's corpus mean and unit length, or only unit length); a block's score is the mean over
query tokens of the best match inside the block (MaxSim). Writes `scores-<split>-<query>-<centre>.npy`
(layers, heads, questions, blocks) and, once, `blocks.json` (each block's file and lines) beside the keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BLOCK = 64
CHUNK_BLOCKS = 256


def question_queries(runtime, question: str, mode: str) -> dict[int, torch.Tensor]:
    from engine.model.attention import QueryRecorder
    from engine.model.generate import question_prompt

    prompt, start, own = question_prompt(runtime.tokenizer, question)
    layers = runtime.config.num_layers
    recorder = QueryRecorder(*runtime.model.rope(len(prompt)), set(range(layers)))
    runtime.model.run_layers(torch.tensor([prompt]), recorder, layers)
    rows = {"own": slice(start, start + own), "all": slice(0, len(prompt)), "last8": slice(len(prompt) - 8, None)}[mode]
    return {layer: F.normalize(recorder.queries[layer][rows].float(), dim=-1) for layer in range(layers)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--questions", type=Path, help="a question file of one's own instead of the split's")
    parser.add_argument("--query", default="own", choices=["own", "all", "last8"])
    parser.add_argument("--centre", default="mean", choices=["mean", "none"])
    args = parser.parse_args()
    import engine
    from bench.qa.gold import block_lines

    torch.set_grad_enabled(False)
    keys = np.load(args.keys / "keys.npy", mmap_mode="r")
    tokens, layers, kv_heads, _ = keys.shape
    blocks = (tokens + BLOCK - 1) // BLOCK
    source = args.questions or ROOT / "bench" / "qa" / f"questions_{args.split}.json"
    questions = json.loads(source.read_text(encoding="utf-8"))
    name = args.questions.stem if args.questions else args.split
    with engine.open_store(args.store, device="cpu") as store:
        runtime = store.runtime
        if not (args.keys / "blocks.json").exists():
            (args.keys / "blocks.json").write_text(json.dumps([block_lines(runtime, store.store, block, BLOCK)
                                                               for block in range(blocks)]))
        group = runtime.config.num_heads // kv_heads
        queries = [question_queries(runtime, item["question"], args.query) for item in questions]
    heads = kv_heads * group
    scores = np.zeros((layers, heads, len(questions), blocks), dtype=np.float32)
    padded = blocks * BLOCK
    for layer in range(layers):
        layer_keys = torch.from_numpy(np.ascontiguousarray(keys[:, layer])).float()  # tokens, kv, dim
        if args.centre == "mean":
            layer_keys = layer_keys - layer_keys.mean(dim=0, keepdim=True)
        layer_keys = F.normalize(layer_keys, dim=-1)
        layer_keys = F.pad(layer_keys, (0, 0, 0, 0, 0, padded - tokens), value=0.0)
        for kv in range(kv_heads):
            k = layer_keys[:, kv]
            for head in range(kv * group, (kv + 1) * group):
                q = torch.cat([qs[layer][:, head] for qs in queries])
                sizes = [qs[layer].shape[0] for qs in queries]
                best = torch.empty(q.shape[0], blocks)
                for first in range(0, blocks, CHUNK_BLOCKS):
                    last = min(first + CHUNK_BLOCKS, blocks)
                    sims = q @ k[first * BLOCK:last * BLOCK].T
                    best[:, first:last] = sims.view(q.shape[0], last - first, BLOCK).amax(dim=-1)
                scores[layer, head] = torch.stack([part.mean(dim=0) for part in best.split(sizes)]).numpy()
        print(f"layer {layer} done", file=sys.stderr, flush=True)
    np.save(args.keys / f"scores-{name}-{args.query}-{args.centre}.npy", scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
