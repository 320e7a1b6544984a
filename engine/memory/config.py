"""The store's engine settings (model digest, retrieval heads, segment and block sizes, attention patterns).

Kept apart from `engine.memory.segments` so that reading them never imports torch: `engine status` shows them
from the catalog alone, in well under the seconds that loading torch takes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.errors import UsageError
from ingest import catalog

if TYPE_CHECKING:
    from engine.memory.calibration import Calibration
    from engine.runtime import Runtime

ENGINE_FORMAT = 1
# What a store's memory keeps, chosen when it is first processed (`engine ingest --memory`): "fast" keeps the
# keys of two heads of an early layer, so the model reads only the layers up to it; "best" keeps four heads
# reaching deeper. Each head costs 64 bytes a token (int8 keys of head_dim 64). Measured on real prose
# (bench/memory, docs/benchmarks.md): the fusion with full-text search finds the same blocks with either,
# and "fast" reads about three times as many tokens a second on a CPU.
MEMORY_SETTINGS = ("fast", "best")
DEFAULT_MEMORY = "fast"
# A model without a measured head set for a setting (another model than the embedded one) keeps this many
# of its calibrated heads.
RETRIEVAL_HEADS = {"fast": 1, "best": 2}


@dataclass
class EngineConfig:
    """The store's fixed engine settings, recorded in the catalog at its first processing."""

    model_digest: str
    heads: list[tuple[int, int]]  # (layer, query head)
    kv_heads: list[int]  # the KV head each retrieval head reads
    key_means: list[list[float]]  # per retrieval head
    segment_tokens: int = 2048
    block_tokens: int = 64
    segment_lengths: list[int] = field(default_factory=lambda: [2048])
    dilation_rates: list[int] = field(default_factory=lambda: [1])
    rope_mode: str = "true"
    format: int = ENGINE_FORMAT
    memory: str = ""  # the setting it was built with ("" for a store from before the settings)
    background: list[str] = field(default_factory=list)  # passages the hub scores are measured against

    @classmethod
    def from_calibration(cls, runtime: Runtime, calibration: Calibration, memory: str = DEFAULT_MEMORY,
                         background: list[str] | None = None) -> EngineConfig:
        if memory not in MEMORY_SETTINGS:
            raise UsageError(f"--memory must be one of {', '.join(MEMORY_SETTINGS)} (got {memory!r})")
        group = runtime.config.num_heads // runtime.config.num_kv_heads
        chosen = [tuple(head) for head in calibration.memory_heads.get(memory, [])] \
            or list(calibration.heads[:RETRIEVAL_HEADS[memory]])
        kv_heads = [head // group for _, head in chosen]
        means = [calibration.key_means[layer][kv] for (layer, _), kv in zip(chosen, kv_heads)]
        return cls(model_digest=runtime.digest, heads=chosen, kv_heads=kv_heads, key_means=means, memory=memory,
                   background=list(background or []))

    @property
    def layers_read(self) -> int:
        """Layers the model runs over each segment: up to the deepest retrieval head."""
        return max(layer for layer, _ in self.heads) + 1


def load_config(db) -> EngineConfig | None:
    raw = catalog.get_meta(db, "engine_config")
    if raw is None:
        return None
    return config_from_values(json.loads(raw))


def config_from_values(values: dict) -> EngineConfig:
    """An EngineConfig from its JSON form (the catalog's, or what rank 0 sends the other ranks)."""
    if values.get("format", 0) > ENGINE_FORMAT:
        raise UsageError(f"the store's engine state has format {values['format']}, newer than this wholecorpus "
                         f"reads ({ENGINE_FORMAT}): upgrade wholecorpus or use another --store")
    return EngineConfig(**(values | {"heads": [tuple(head) for head in values["heads"]]}))
