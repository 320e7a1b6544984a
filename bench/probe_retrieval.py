"""Which heads, and which scoring, let the model's own attention find a planted fact in natural text?

A probe for the engine's retrieval design (issue 5), on the real model and real prose: Python's
language reference (`pydoc_data.topics`, shipped with every CPython). The corpus is read in segments
of S tokens with full causal attention inside each; pre-RoPE keys of every layer are kept. Facts
written here are planted at random places, one per trial; each (layer, head) ranks the corpus' blocks
of B tokens for a question about the fact. "hit@8": the fact's block is among the head's 8 best.

Scorings compared (DESIGN.md's probes found naive scoring fails on diverse text):
- naive: raw q·k from the prompt's last 8 tokens, max over the block's keys;
- maxsim: keys centred by the head's corpus mean, cosine, summed over the question's own tokens of
  each token's best match in the block;
- maxsim4 / maxsim1: the same against 4 (or 1) representative keys per block — the mean of each
  16-token quarter (or of the whole block) of centred unit keys — which is what can be stored cheaply.

    python bench/probe_retrieval.py [--tokens 32768] [--trials 10]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import date
from pathlib import Path

import torch

from engine.runtime import load_runtime

FACTS = [
    ("The wifi password at the lake cabin is heron-4417.", "What is the wifi password at the lake cabin?"),
    ("Dr. Okafor moved the quarterly review meeting to the old library on Thursday afternoon.",
     "Where did Dr. Okafor move the quarterly review meeting?"),
    ("My grandmother's secret ingredient for the apple pie was a spoonful of cardamom.",
     "What was my grandmother's secret ingredient for the apple pie?"),
    ("The spare key to the boathouse is hidden under the blue flowerpot by the gate.",
     "Where is the spare key to the boathouse hidden?"),
    ("Invoice 5521 from Lindqvist Carpentry was paid on the third of March.",
     "When was the invoice from Lindqvist Carpentry paid?"),
]
BLOCK = 64
TOP = 8


def corpus_tokens(tokenizer, count: int) -> list[int]:
    import pydoc_data.topics

    text = "\n\n".join(pydoc_data.topics.topics.values())
    ids = tokenizer.encode(text)
    if len(ids) < count:
        raise SystemExit(f"the prose corpus has only {len(ids)} tokens")
    return ids[:count]


class KeyRecorder:
    """Forward hooks on every layer's k and q projections (pre-RoPE outputs)."""

    def __init__(self, model):
        self.keys: dict[int, torch.Tensor] = {}
        self.queries: dict[int, torch.Tensor] = {}
        for block in model.layers:
            block.k.register_forward_hook(self._keep(self.keys, block.index))
            block.q.register_forward_hook(self._keep(self.queries, block.index))

    @staticmethod
    def _keep(into, index):
        def hook(_module, _inputs, output):
            into[index] = output[0].detach()
        return hook


@torch.inference_mode()
def segment_keys(runtime, recorder, ids: list[int]) -> torch.Tensor:
    """(layers, tokens, kv_heads, dim) pre-RoPE keys of one segment, fp16."""
    runtime.model.hidden_states(torch.tensor([ids]))
    config = runtime.config
    return torch.stack([recorder.keys[i].view(len(ids), config.num_kv_heads, config.head_dim)
                        for i in range(config.num_layers)]).half()


@torch.inference_mode()
def question_queries(runtime, recorder, question: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-RoPE queries (layers, tokens, heads, dim): the question's own tokens, and the prompt's last 8."""
    tokenizer, config = runtime.tokenizer, runtime.config
    rendered = tokenizer.render_chat([{"role": "user", "content": question}])
    prefix = tokenizer.encode(rendered[:rendered.index(question)])
    prompt = tokenizer.encode(rendered)
    runtime.model.hidden_states(torch.tensor([prompt]))
    queries = torch.stack([recorder.queries[i].view(len(prompt), config.num_heads, config.head_dim)
                           for i in range(config.num_layers)]).float()
    own = len(tokenizer.encode(question))
    start = len(prefix)
    return queries[:, start:start + own], queries[:, -8:]


def representative(unit_keys: torch.Tensor, pieces: int) -> torch.Tensor:
    """(blocks, pieces, heads, dim): mean of each 1/pieces of a block's centred unit keys, renormalised."""
    blocks = unit_keys.shape[0] // BLOCK
    grouped = unit_keys[: blocks * BLOCK].view(blocks, pieces, BLOCK // pieces, *unit_keys.shape[1:]).mean(2)
    return torch.nn.functional.normalize(grouped, dim=-1)


def rank_of(scores: torch.Tensor, targets: set[int]) -> bool:
    return bool(set(scores.topk(TOP).indices.tolist()) & targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32768)
    parser.add_argument("--segment", type=int, default=2048)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runtime = load_runtime(None, "cpu")
    config = runtime.config
    recorder = KeyRecorder(runtime.model)
    ids = corpus_tokens(runtime.tokenizer, args.tokens)
    started = time.perf_counter()
    segments = [segment_keys(runtime, recorder, ids[s:s + args.segment]) for s in range(0, len(ids), args.segment)]
    print(f"encoded {len(ids)} tokens in {time.perf_counter() - started:.0f} s")
    base = torch.cat(segments, dim=1)  # (layers, tokens, kv_heads, dim)
    mean = base.float().mean(dim=1, keepdim=True)
    group = config.num_heads // config.num_kv_heads
    rng = random.Random(args.seed)
    names = ["naive", "maxsim", "maxsim4", "maxsim1"]
    hits = {name: torch.zeros(config.num_layers, config.num_heads) for name in names}
    for trial in range(args.trials):
        fact, question = FACTS[trial % len(FACTS)]
        fact_ids = runtime.tokenizer.encode("\n" + fact + "\n")
        segment = rng.randrange(len(segments))
        offset = rng.randrange(0, args.segment - len(fact_ids))
        start = segment * args.segment + offset
        planted = ids[segment * args.segment:(segment + 1) * args.segment]
        planted[offset:offset + len(fact_ids)] = fact_ids
        keys = base.clone()
        keys[:, segment * args.segment:(segment + 1) * args.segment] = segment_keys(runtime, recorder, planted)
        targets = {start // BLOCK, (start + len(fact_ids) - 1) // BLOCK}
        own, last = question_queries(runtime, recorder, question)
        unit = torch.nn.functional.normalize(keys.float() - mean, dim=-1)
        for layer in range(config.num_layers):
            layer_unit = unit[layer]
            reps = {4: representative(layer_unit, 4), 1: representative(layer_unit, 1)}
            for head in range(config.num_heads):
                kv = head // group
                raw = keys[layer, :, kv].float()
                blocks = raw.shape[0] // BLOCK
                naive = (last[layer, :, head] @ raw.T).view(len(last[layer]), blocks, BLOCK).amax(dim=(0, 2))
                q = torch.nn.functional.normalize(own[layer, :, head], dim=-1)
                sim = (q @ layer_unit[:, kv].T).view(len(q), blocks, BLOCK).amax(-1).sum(0)
                sim4 = torch.einsum("qd,bpd->qbp", q, reps[4][:, :, kv]).amax(-1).sum(0)
                sim1 = torch.einsum("qd,bpd->qbp", q, reps[1][:, :, kv]).amax(-1).sum(0)
                for name, scores in zip(names, (naive, sim, sim4, sim1)):
                    hits[name][layer, head] += rank_of(scores, targets)
        print(f"trial {trial}: fact {trial % len(FACTS)} in segment {segment}, block(s) {sorted(targets)}")
    report = {"date": date.today().isoformat(), "machine": "CPU, 2 cores", "tokens": args.tokens,
              "segment": args.segment, "block": BLOCK, "trials": args.trials, "top": TOP, "best": {}}
    for name in names:
        rate = hits[name] / args.trials
        order = rate.flatten().argsort(descending=True)[:8]
        best = [(int(i) // config.num_heads, int(i) % config.num_heads, float(rate.flatten()[i])) for i in order]
        report["best"][name] = best
        print(f"{name:8s} best heads (layer, head, hit@{TOP}): " + ", ".join(f"({l},{h}) {r:.0%}" for l, h, r in best))
    out = Path(__file__).parent / "results" / f"probe_retrieval_{args.tokens // 1024}k.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
