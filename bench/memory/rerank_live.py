"""Can the model's live attention re-rank a wide candidate set? (exploration for the memory issue)

    python bench/memory/rerank_live.py --store .qa-store --keys /tmp/keys-w2048 --heads-scores scores-train-own-mean.npy
        --background scores-bg_corpus-own-mean.npy [--split train] [--candidates 32]

Candidates per question: reciprocal-rank fusion of the full-text, MiniLM and background-centred heads rankings
(top 16 each), first `--candidates` blocks. Their tokens, in corpus order, one line each, then the chat prompt
asking the question, go through the model in one causal pass; the attention weight the question's own tokens put
on each block is summed per (layer, head). Writes `rerank-<split>.npz`: mass (questions, layers, heads,
candidates) and the candidate blocks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BLOCK = 64


class MassByHead:
    """Causal attention recording, per layer and head, the weight rows [first, last) put on each key."""

    def __init__(self, cos, sin, first: int, last: int):
        self.cos, self.sin, self.first, self.last = cos, sin, first, last
        self.mass: dict[int, torch.Tensor] = {}

    def __call__(self, q, k, v, *, layer: int, start: int):
        from engine.model.llama import apply_rope, sdpa_causal

        cos, sin = self.cos[:q.shape[1]], self.sin[:q.shape[1]]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rows = q[0, self.first:self.last].float()  # r, h, d
        keys = k[0].float().repeat_interleave(q.shape[2] // k.shape[2], dim=1)  # t, h, d
        scores = torch.einsum("rhd,thd->hrt", rows, keys) / q.shape[-1] ** 0.5
        allowed = torch.ones(rows.shape[0], k.shape[1], dtype=torch.bool).tril(self.first)
        self.mass[layer] = scores.masked_fill(~allowed, float("-inf")).softmax(-1).sum(dim=1)  # h, t
        return sdpa_causal(q, k, v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--heads-scores", required=True)
    parser.add_argument("--background", required=True)
    parser.add_argument("--set", default="17:5,5:6,17:3,18:6", help="heads summed for the heads ranking")
    parser.add_argument("--split", default="train")
    parser.add_argument("--candidates", type=int, default=32)
    args = parser.parse_args()
    import engine
    from bench.memory.analyse_heads import rrf, zscore
    from engine.model.generate import question_prompt
    from ingest.sequence import read_tokens

    torch.set_grad_enabled(False)
    questions = json.loads((ROOT / "bench" / "qa" / f"questions_{args.split}.json").read_text(encoding="utf-8"))
    other = json.loads((args.keys / f"rankings-{args.split}.json").read_text())
    scores = np.load(args.keys / args.heads_scores)
    centred = zscore(scores - np.load(args.keys / args.background).mean(axis=2, keepdims=True))
    chosen = [tuple(int(x) for x in part.split(":")) for part in args.set.split(",")]
    heads_scores = sum(centred[h] for h in chosen)
    masses, candidates = [], []
    with engine.open_store(args.store, device="cpu") as store:
        runtime = store.runtime
        tokens_total = store.store.tokens_path.stat().st_size // 4
        newline = runtime.tokenizer.encode("\n")
        for number, item in enumerate(questions):
            heads_rank = list(map(int, np.argsort(-heads_scores[number])[:16]))
            fused = rrf(other["fulltext"][number][:16], other["minilm"][number][:16], heads_rank)[:args.candidates]
            blocks = sorted(fused)
            ids, spans = [], []
            for block in blocks:
                part = read_tokens(store.store.tokens_path, block * BLOCK, min((block + 1) * BLOCK, tokens_total)).tolist()
                spans.append((len(ids), len(ids) + len(part)))
                ids += part + newline
            prompt, start, own = question_prompt(runtime.tokenizer, item["question"])
            first = len(ids) + start
            ids += prompt
            recorder = MassByHead(*runtime.model.rope(len(ids)), first, first + own)
            runtime.model.run_layers(torch.tensor([ids]), recorder, runtime.config.num_layers)
            mass = torch.stack([recorder.mass[layer] for layer in range(runtime.config.num_layers)])  # L, H, T
            per_block = torch.stack([mass[:, :, a:b].sum(-1) for a, b in spans], dim=-1)
            padded = torch.zeros(*per_block.shape[:2], args.candidates)
            padded[:, :, :len(blocks)] = per_block
            masses.append(padded.numpy())
            candidates.append(blocks + [-1] * (args.candidates - len(blocks)))
            print(f"[{number + 1}/{len(questions)}] {len(ids)} tokens", file=sys.stderr, flush=True)
    np.savez(args.keys / f"rerank-{args.split}.npz", mass=np.stack(masses), blocks=np.array(candidates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
