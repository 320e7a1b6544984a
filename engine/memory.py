"""The compressed segment states: reading the corpus through the model and keeping what retrieval needs.

The unprocessed token ranges of the store (`ingest.catalog.unprocessed_ranges`) are cut into segments
of `segment_tokens`; each goes through the model with dilated attention as far as the deepest
retrieval layer, and the pre-RoPE keys of the calibrated retrieval heads are kept for every token:
centred by the head's mean key, scaled to unit length and stored as int8 (one byte a dimension).
No K/V payload is stored: answering re-reads the few retrieved spans from their tokens, which costs
far less than a payload's bytes on disk.

A segment's state file is written to a temporary name, fsynced and renamed into `states/`, and only
then recorded in the catalog (one transaction), so a run killed at any moment leaves a store whose
recorded segments all have whole state files, and a re-run carries on from the first unrecorded one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from engine.attention import DilatedAttention, KeyRecorder
from engine.calibration import Calibration
from engine.config import EngineConfig, load_config
from engine.errors import UsageError
from engine.runtime import Runtime
from engine.states import write_state
from ingest import catalog
from ingest.sequence import read_tokens


def config_for_store(db, runtime: Runtime, calibration: Callable[[], Calibration]) -> EngineConfig:
    """The store's config; a store without one gets this model's, one from another model is refused."""
    config = load_config(db)
    if config is None:
        config = EngineConfig.from_calibration(runtime, calibration())
        catalog.set_meta(db, "engine_config", json.dumps(asdict(config)))
    require_same_model(config, runtime)
    return config


def require_same_model(config: EngineConfig | None, runtime: Runtime) -> None:
    """Stored keys mean nothing to another model's queries: a store read by another model is refused."""
    if config is not None and config.model_digest != runtime.digest:
        raise UsageError(f"this store was processed by another model (digest {config.model_digest[:12]}…, "
                         f"this one is {runtime.digest[:12]}…): use that model with --model, or another --store")


@torch.inference_mode()
def encode_segment(runtime: Runtime, config: EngineConfig, ids: np.ndarray) -> np.ndarray:
    """int8 keys (tokens, retrieval heads, head_dim) of one segment: centred, unit length, times 127."""
    model = runtime.model
    deepest = max(layer for layer, _ in config.heads)
    cos, sin = model.rope(config.segment_tokens)
    recorder = KeyRecorder(DilatedAttention(cos, sin, config.segment_lengths, config.dilation_rates, config.rope_mode),
                           {layer for layer, _ in config.heads})
    model.run_layers(torch.as_tensor(ids.astype(np.int64), device=runtime.device)[None], recorder, deepest + 1)
    keys = []
    for (layer, _), kv, mean in zip(config.heads, config.kv_heads, config.key_means):
        centred = recorder.keys[layer][:, kv].float() - torch.tensor(mean, device=runtime.device)
        keys.append(F.normalize(centred, dim=-1))
    unit = torch.stack(keys, dim=1)
    return (unit * 127).round().clamp(-127, 127).to(torch.int8).cpu().numpy()


@dataclass
class ProcessReport:
    segments: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def process_store(root: Path, db, runtime: Runtime, config: EngineConfig,
                  progress: Callable[[int, int], None] | None = None) -> ProcessReport:
    """Reads every unprocessed range through the model; `progress(done_tokens, total_tokens)` after each segment."""
    ranges = catalog.unprocessed_ranges(db)
    total = sum(end - start for start, end in ranges)
    report = ProcessReport()
    started = time.perf_counter()
    tokens_file = root / "tokens.u32"
    for range_start, range_end in ranges:
        for start in range(range_start, range_end, config.segment_tokens):
            end = min(start + config.segment_tokens, range_end)
            keys = encode_segment(runtime, config, read_tokens(tokens_file, start, end))
            write_state(root, start, end, keys)
            catalog.record_segment(db, start, end)
            report.segments += 1
            report.tokens += end - start
            report.seconds = time.perf_counter() - started
            if progress is not None:
                progress(report.tokens, total)
    return report
