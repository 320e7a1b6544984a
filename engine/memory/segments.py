"""The compressed segment states: reading the corpus through the model and keeping what retrieval needs.

The unprocessed token ranges of the store (`ingest.catalog.unprocessed_ranges`) are cut into segments
of `segment_tokens`; each goes through the model with dilated attention as far as the deepest
retrieval layer, and the pre-RoPE keys of the calibrated retrieval heads are kept for every token:
centred by the head's mean key, scaled to unit length and stored as int8 (one byte a dimension).
No K/V payload is stored: answering re-reads the few retrieved spans from their tokens, which costs
far less than a payload's bytes on disk and, measured beside fp16/int4/int2 payloads on the same prompts
(bench/bench_payload.py), answered more questions and passkeys right.

Segments of one length go through the model `batch_segments` at a time, as the rows of one batch (they
never see each other); the default suits the device (`default_batch_segments`) and is not part of the
store's config: a store's keys do not depend on it (batched and single passes agree within an int8
step in fp32, a few in bf16). On a CPU with bf16 instructions the pass computes in bf16 under autocast
(`engine.runtime.reading_dtype`): measured, 1.5-1.6x the tokens a second, the same retrieval. Each batch is
stored as one step: its state files made whole and durable together (`engine.memory.states.write_states`),
then recorded in the catalog in one transaction, so a run killed at any moment leaves a store whose recorded
segments all have whole state files, and a re-run carries on from the first unrecorded one.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import UsageError
from engine.memory.calibration import Calibration
from engine.memory.config import DEFAULT_MEMORY, EngineConfig, load_config
from engine.memory.hubs import background_sample, block_hubs
from engine.memory.queries import background_queries
from engine.memory.states import recorded_state_bytes, write_states
from engine.model.attention import DilatedAttention, KeyRecorder
from engine.runtime import Runtime
from ingest import catalog
from ingest.sequence import read_tokens
from ingest.store import Store


def config_for_store(store: Store, runtime: Runtime, calibration: Callable[[], Calibration],
                     memory: str = DEFAULT_MEMORY) -> EngineConfig:
    """The store's config; a store without one gets this model's for the `memory` setting, with its background
    passages sampled from the text it holds now; one from another model is refused. A store keeps the config
    it was first processed with, whatever `memory` says later."""
    config = load_config(store.db)
    if config is None:
        def text_of(start: int, end: int) -> str:
            return runtime.tokenizer.decode(read_tokens(store.tokens_path, start, end).tolist())

        background = background_sample(catalog.unprocessed_ranges(store.db), text_of)
        config = EngineConfig.from_calibration(runtime, calibration(), memory, background)
        catalog.set_meta(store.db, "engine_config", json.dumps(asdict(config)))
    require_same_model(config, runtime)
    return config


def require_same_model(config: EngineConfig | None, runtime: Runtime) -> None:
    """Stored keys mean nothing to another model's queries: a store read by another model is refused."""
    if config is not None and config.model_digest != runtime.digest:
        raise UsageError(f"this store was processed by another model (digest {config.model_digest[:12]}…, "
                         f"this one is {runtime.digest[:12]}…): use that model with --model, or another --store")


# Segments a forward pass reads when not told. On a GPU a batch fills the device that one 2048-token
# segment of a small model leaves mostly idle: on one H200, 32 read about 1.9x the tokens/s of 8 and 64 no
# more than 32 (bench/results/gpu_check_h200_batch.json), under 1 GB of GPU memory. On the CPU, measured (bench/results/segments_cpu.json):
# 4 segments a pass read 20-30% more tokens per CPU-second than 1 over three runs on 2 busy cores (the
# recorded one: 240 against 184), 2 about half that gain; the keys came out identical.
BATCH_SEGMENTS_CUDA = 32
BATCH_SEGMENTS_CPU = 4


def default_batch_segments(device: torch.device | str) -> int:
    """How many segments one forward pass reads on `device` unless told (`--batch-segments`)."""
    return BATCH_SEGMENTS_CUDA if torch.device(device).type == "cuda" else BATCH_SEGMENTS_CPU


@torch.inference_mode()
def encode_segments(runtime: Runtime, config: EngineConfig, segments: list[np.ndarray]) -> list[np.ndarray]:
    """int8 keys (tokens, retrieval heads, head_dim) of each segment, centred, unit length, times 127.

    The segments, all of one length, are the rows of one batch: one forward pass reads them all, and
    each row attends only within itself, so every segment gets the keys it would get alone.
    """
    if len({len(ids) for ids in segments}) != 1:
        raise ValueError(f"segments: a batch takes segments of one length (got {sorted({len(i) for i in segments})})")
    model = runtime.model
    cos, sin = model.rope(config.segment_tokens)
    recorder = KeyRecorder(DilatedAttention(cos, sin, config.segment_lengths, config.dilation_rates, config.rope_mode),
                           {layer for layer, _ in config.heads})
    tokens = torch.as_tensor(np.stack(segments).astype(np.int64), device=runtime.device)
    with torch.autocast(runtime.device.type, dtype=runtime.reading_dtype, enabled=runtime.reading_dtype is not None):
        model.run_layers(tokens, recorder, config.layers_read)
    keys = []
    for (layer, _), kv, mean in zip(config.heads, config.kv_heads, config.key_means):
        centred = recorder.keys[layer][:, :, kv].float() - torch.tensor(mean, device=runtime.device)
        keys.append(F.normalize(centred, dim=-1))
    unit = torch.stack(keys, dim=2)
    return list((unit * 127).round().clamp(-127, 127).to(torch.int8).cpu().numpy())


def batch_end(segments: list[tuple[int, int]], first: int, size: int) -> int:
    """Where the batch starting at `segments[first]` ends: up to `size` consecutive segments of its length
    (a range's shorter last segment goes alone)."""
    length = segments[first][1] - segments[first][0]
    end = first + 1
    while end < min(first + size, len(segments)) and segments[end][1] - segments[end][0] == length:
        end += 1
    return end


def deal(segments: list[tuple[int, int]], sizes: list[int]) -> list[list[list[tuple[int, int]]]]:
    """The segments in order, dealt in steps: in each, rank r takes the next batch of up to `sizes[r]`
    equal-length segments (`batch_end`); the last step may leave ranks without work."""
    steps, first = [], 0
    while first < len(segments):
        step = []
        for size in sizes:
            end = batch_end(segments, first, size) if first < len(segments) else first
            step.append(segments[first:end])
            first = end
        steps.append(step)
    return steps


def segment_batches(segments: list[tuple[int, int]], size: int) -> list[list[tuple[int, int]]]:
    """The segments in order, cut into batches of up to `size` equal-length segments: one rank's deal."""
    if size < 1:
        raise ValueError(f"size: at least one segment a batch (got {size})")
    return [batch for batch, in deal(segments, [size])]


@dataclass
class RankLoad:
    """What one rank computed in a pass: its segments, tokens and its own seconds on them."""

    rank: int
    device: str
    segments: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class ProcessReport:
    segments: int = 0
    tokens: int = 0
    seconds: float = 0.0
    ranks: list[RankLoad] = field(default_factory=list)
    exchanged_bytes: int = 0  # tokens sent to other ranks and keys received from them

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def planned_segments(db, config: EngineConfig) -> list[tuple[int, int]]:
    """The unprocessed ranges cut into segments of `segment_tokens` (the last of a range may be shorter)."""
    return [(start, min(start + config.segment_tokens, range_end))
            for range_start, range_end in catalog.unprocessed_ranges(db)
            for start in range(range_start, range_end, config.segment_tokens)]


def segment_hubs(config: EngineConfig, queries: list[np.ndarray] | None, keys: list[np.ndarray]) -> list[np.ndarray] | None:
    """The block hub scores of each segment's keys; None for a store without background passages (from before)."""
    if queries is None:
        return None
    return [block_hubs(segment_keys, queries, config.block_tokens) for segment_keys in keys]


def pass_stamp() -> str:
    """When a processing pass started, precise enough that two passes never share it."""
    return datetime.now().astimezone().isoformat(timespec="microseconds")


def process_store(store: Store, runtime: Runtime, config: EngineConfig,
                  progress: Callable[[int, int], None] | None = None,
                  batch_segments: int | None = None) -> ProcessReport:
    """Reads every unprocessed range through the model, `batch_segments` segments a forward pass (the
    device's default when None), storing each batch as one step; `progress(done_tokens, total_tokens)`
    before the first step and after each. A segment's recorded seconds are its share of its batch's forward pass."""
    segments = planned_segments(store.db, config)
    batches = segment_batches(segments, batch_segments or default_batch_segments(runtime.device))
    total = sum(end - start for start, end in segments)
    load = RankLoad(0, str(runtime.device))
    report = ProcessReport(ranks=[load])
    started, stamp, host = time.perf_counter(), pass_stamp(), socket.gethostname()
    if progress is not None and total:
        progress(0, total)
    queries = background_queries(runtime, config) if config.background and batches else None
    for batch in batches:
        began = time.perf_counter()
        keys = encode_segments(runtime, config, [read_tokens(store.tokens_path, start, end) for start, end in batch])
        hubs = segment_hubs(config, queries, keys)
        seconds = time.perf_counter() - began
        write_states(store.root, [(start, end, segment_keys) for (start, end), segment_keys in zip(batch, keys)], hubs)
        catalog.record_segments(store.db, [catalog.SegmentWork(start, end, stamp, 0, 1, host, load.device,
                                                         seconds / len(batch)) for start, end in batch])
        load.segments += len(batch)
        load.tokens += sum(end - start for start, end in batch)
        load.seconds += seconds
        report.segments, report.tokens = load.segments, load.tokens
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress(report.tokens, total)
    return report


@dataclass
class StoreFigures:
    """What a store holds and costs, for the app's corpus page."""

    documents: int
    tokens: int  # live tokens of the corpus
    processed_tokens: int
    unprocessed_tokens: int
    bytes_on_disk: int
    state_bytes: int
    model: str

    @property
    def state_bytes_per_token(self) -> float:
        return self.state_bytes / self.processed_tokens if self.processed_tokens else 0.0


def store_figures(store: Store, runtime: Runtime) -> StoreFigures:
    _segments, processed, state_bytes = recorded_state_bytes(store)
    backlog = sum(end - start for start, end in catalog.unprocessed_ranges(store.db))
    return StoreFigures(catalog.live_documents(store.db), catalog.live_tokens(store.db), processed, backlog, store.size_on_disk(), state_bytes,
                        f"{runtime.source.name} ({runtime.digest[:12]})")
