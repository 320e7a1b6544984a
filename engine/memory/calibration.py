"""Which of the model's own attention heads can find a fact in a corpus, and how to score them.

Calibration reads natural prose (Python's language reference, `pydoc_data.topics`, which ships with
every CPython) in segments with the model, plants facts written here at random places, asks about
them, and counts for each (layer, query head) how often the fact's block is among the head's best
blocks. Naive q·k scoring is dominated by outlier keys on diverse text (docs/design.md);
the scoring that works is MaxSim over mean-centred unit keys, so the calibration also records each
KV head's mean key, which the store needs to centre its keys.

The result for a model is cached by the model file's digest (`calibration-<digest>.json` in the user
cache); for the embedded default model it ships with the package (`engine/memory/calibration_default.json`).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.model.files import cache_dir
from engine.model.generate import question_prompt
from engine.runtime import Runtime
from ingest import durable

# Facts unlike anything in data/ (whose questions evaluate the engine), so calibration cannot overfit them.
FACTS = [
    ("The combination of the garden shed lock is 3-9-1-4, written on the back of the calendar.",
     "What is the combination of the garden shed lock?"),
    ("Professor Lindahl postponed the glacier field trip to the second week of October.",
     "When was the glacier field trip postponed to?"),
    ("Aunt Rosalind's famous lemon cake uses a tablespoon of lavender honey in the glaze.",
     "What does Aunt Rosalind's lemon cake use in the glaze?"),
    ("The blue kayak is stored upside down behind the boathouse, under a green tarp.",
     "Where is the blue kayak stored?"),
    ("Our landlord, Mr. Abernathy, agreed to replace the broken dishwasher before the end of July.",
     "What did Mr. Abernathy agree to replace?"),
]
log = logging.getLogger(__name__)
SHIPPED = Path(__file__).with_name("calibration_default.json")
SCORINGS = ("naive", "maxsim", "maxsim4", "maxsim1")


@dataclass
class Calibration:
    """Retrieval heads as (layer, query head), best first, and every layer's mean pre-RoPE key per KV head."""

    model_digest: str
    heads: list[tuple[int, int]]
    hit_rates: list[float]
    key_means: dict[int, list[list[float]]]
    tokens: int
    trials: int
    # Head sets per memory setting, measured on a question-answering task (bench/memory/analyse_heads.py);
    # empty for a model calibrated here on planted facts alone.
    memory_heads: dict[str, list[list[int]]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        with durable.written(path) as partial:
            partial.write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def load(cls, path: Path) -> Calibration:
        raw = json.loads(path.read_text())
        raw["heads"] = [tuple(head) for head in raw["heads"]]
        raw["key_means"] = {int(layer): value for layer, value in raw["key_means"].items()}
        return cls(**raw)


def calibration_for(runtime: Runtime, heads: int = 2) -> Calibration:
    """The shipped or cached calibration of this model, measured (minutes on a CPU) when there is none."""
    for path in (SHIPPED, cache_dir() / f"calibration-{runtime.digest[:32]}.json"):
        if path.exists():
            calibration = Calibration.load(path)
            if calibration.model_digest == runtime.digest:
                return calibration
    log.info("no calibration for model %s: measuring it (minutes on a CPU)", runtime.digest[:12])
    calibration = calibrate(runtime, tokens=16384, trials=10, keep=heads)
    calibration.save(cache_dir() / f"calibration-{runtime.digest[:32]}.json")
    return calibration


def prose_tokens(tokenizer, count: int) -> list[int]:
    import pydoc_data.topics

    ids = tokenizer.encode("\n\n".join(pydoc_data.topics.topics.values()))
    if len(ids) < count:
        raise ValueError(f"count: the calibration prose has only {len(ids)} tokens")
    return ids[:count]


class ProjectionRecorder:
    """Forward hooks keeping the last output of every layer's q and k projections (pre-RoPE)."""

    def __init__(self, model):
        self.keys: dict[int, torch.Tensor] = {}
        self.queries: dict[int, torch.Tensor] = {}
        self.handles = []
        for block in model.layers:
            self.handles.append(block.k.register_forward_hook(self._keep(self.keys, block.index)))
            self.handles.append(block.q.register_forward_hook(self._keep(self.queries, block.index)))

    @staticmethod
    def _keep(into, index):
        def hook(_module, _inputs, output):
            into[index] = output[0].detach().float()
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.inference_mode()
def _segment_keys(runtime: Runtime, recorder: ProjectionRecorder, ids: list[int]) -> torch.Tensor:
    """(layers, tokens, kv_heads, dim) pre-RoPE keys, fp16 to halve the memory of a long corpus."""
    config = runtime.config
    runtime.model.hidden_states(torch.tensor([ids], device=runtime.device))
    return torch.stack([recorder.keys[i].view(len(ids), config.num_kv_heads, config.head_dim).cpu()
                        for i in range(config.num_layers)]).half()


@torch.inference_mode()
def question_queries(runtime: Runtime, recorder: ProjectionRecorder, question: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-RoPE queries (layers, tokens, heads, dim) of the question's own tokens and of the prompt's last 8."""
    config = runtime.config
    prompt, start, own = question_prompt(runtime.tokenizer, question)
    runtime.model.hidden_states(torch.tensor([prompt], device=runtime.device))
    queries = torch.stack([recorder.queries[i].view(len(prompt), config.num_heads, config.head_dim).cpu()
                           for i in range(config.num_layers)])
    return queries[:, start:start + own], queries[:, -8:]


def _representatives(unit_keys: torch.Tensor, block: int, pieces: int) -> torch.Tensor:
    blocks = unit_keys.shape[0] // block
    grouped = unit_keys[: blocks * block].view(blocks, pieces, block // pieces, *unit_keys.shape[1:]).mean(2)
    return F.normalize(grouped, dim=-1)


def head_hit_rates(runtime: Runtime, tokens: int, trials: int, segment: int = 2048, block: int = 64, top: int = 8,
                   seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """hit@top per scoring as (layers, heads) tensors, and the mean key (layers, kv_heads, dim)."""
    config = runtime.config
    recorder = ProjectionRecorder(runtime.model)
    try:
        ids = prose_tokens(runtime.tokenizer, tokens)
        base = torch.cat([_segment_keys(runtime, recorder, ids[s:s + segment]) for s in range(0, tokens, segment)], 1)
        mean = base.float().mean(dim=1)
        group = config.num_heads // config.num_kv_heads
        rng = random.Random(seed)
        hits = {name: torch.zeros(config.num_layers, config.num_heads) for name in SCORINGS}
        for trial in range(trials):
            fact, question = FACTS[trial % len(FACTS)]
            fact_ids = runtime.tokenizer.encode("\n" + fact + "\n")
            index = rng.randrange(len(range(0, tokens, segment)))
            offset = rng.randrange(0, min(segment, tokens - index * segment) - len(fact_ids))
            start = index * segment + offset
            planted = ids[index * segment:(index + 1) * segment]
            planted[offset:offset + len(fact_ids)] = fact_ids
            keys = base.clone()
            keys[:, index * segment:index * segment + len(planted)] = _segment_keys(runtime, recorder, planted)
            targets = {start // block, (start + len(fact_ids) - 1) // block}
            own, last = question_queries(runtime, recorder, question)
            for layer in range(config.num_layers):
                unit = F.normalize(keys[layer].float() - mean[layer], dim=-1)
                reps = {pieces: _representatives(unit, block, pieces) for pieces in (4, 1)}
                blocks = unit.shape[0] // block
                for head in range(config.num_heads):
                    kv = head // group
                    q = F.normalize(own[layer, :, head], dim=-1)
                    scores = {
                        "naive": (last[layer, :, head] @ keys[layer, :blocks * block, kv].float().T)
                        .view(-1, blocks, block).amax(dim=(0, 2)),
                        "maxsim": (q @ unit[:blocks * block, kv].T).view(len(q), blocks, block).amax(-1).sum(0),
                        "maxsim4": torch.einsum("qd,bpd->qbp", q, reps[4][:, :, kv]).amax(-1).sum(0),
                        "maxsim1": torch.einsum("qd,bpd->qbp", q, reps[1][:, :, kv]).amax(-1).sum(0),
                    }
                    for name, score in scores.items():
                        hits[name][layer, head] += bool(set(score.topk(top).indices.tolist()) & targets)
        return {name: value / trials for name, value in hits.items()}, mean
    finally:
        recorder.remove()


def calibrate(runtime: Runtime, tokens: int, trials: int, keep: int = 2) -> Calibration:
    rates, mean = head_hit_rates(runtime, tokens, trials)
    return choose_heads(runtime, rates, mean, tokens, trials, keep)


def choose_heads(runtime: Runtime, rates: dict[str, torch.Tensor], mean: torch.Tensor, tokens: int, trials: int,
                 keep: int) -> Calibration:
    """The `keep` best heads under MaxSim scoring, with the means that centre their keys."""
    maxsim = rates["maxsim"]
    order = maxsim.flatten().argsort(descending=True)[:keep].tolist()
    heads = [(i // runtime.config.num_heads, i % runtime.config.num_heads) for i in order]
    return Calibration(model_digest=runtime.digest, heads=heads, hit_rates=[float(maxsim.flatten()[i]) for i in order],
                       key_means={layer: mean[layer].tolist() for layer in range(runtime.config.num_layers)},
                       tokens=tokens, trials=trials)
