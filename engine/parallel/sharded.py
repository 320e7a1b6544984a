"""Segment processing across ranks with one writer: rank 0 keeps the store, the others only compute.

Rank 0 holds the store's write lock, its catalog and its token file; the other ranks never open the
store, so they may run on other machines. The segments a pass must read are dealt out in steps: in each
step every rank takes a batch of up to its `batch_segments` equal-length segments (one forward pass;
the device's default unless `--batch-segments` says otherwise for all). Rank 0 scatters to each rank its
batch's token ids, every rank encodes its batch on its device, rank 0 gathers the int8 keys, writes the
step's state files durably together (`engine.memory.states.write_states`) and records the whole step in one
catalog transaction. A step is stored whole or not at all.

A rank that dies makes rank 0's next collective fail: the pass stops with `RankLost`, what was
recorded stays, and the next run plans again from the catalog. Each segment is encoded by the same
code from the same tokens whichever rank reads it, so the re-run's store equals a one-process store.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist

from engine.errors import UsageError
from engine.memory.config import EngineConfig, config_from_values
from engine.memory.queries import background_queries
from engine.memory.segments import (
    ProcessReport,
    RankLoad,
    deal,
    default_batch_segments,
    encode_segments,
    pass_stamp,
    planned_segments,
    segment_hubs,
)
from engine.memory.states import write_states
from engine.model.files import ModelError
from engine.parallel.placement import Placement
from engine.runtime import Runtime
from ingest import catalog
from ingest.sequence import read_tokens
from ingest.store import Store


class RankLost(Exception):
    """A collective failed mid-pass: some rank is gone. `stored` of `planned` segments were committed."""

    def __init__(self, stored: int, planned: int, cause: BaseException):
        super().__init__(f"{stored} of {planned} segments stored ({cause})")
        self.stored, self.planned, self.cause = stored, planned, cause


@dataclass
class Plan:
    """What rank 0 tells the others before a pass: the engine config and the steps, or why not.

    `steps[s][r]` is rank r's batch in step s (possibly empty); every rank's token and key tensors hold
    `rows` segments, padded, because a collective moves tensors of one shape."""

    config: dict | None
    steps: list[list[list[tuple[int, int]]]]
    rows: int = 1
    stop: str | None = None


def coordinate(store: Store, runtime: Runtime, config: EngineConfig,
               progress: Callable[[int, int], None] | None = None,
               batch_segments: int | None = None) -> ProcessReport:
    """Rank 0's pass: deal the unprocessed segments out, write and record what comes back, step by step.

    Each rank reads `batch_segments` segments a step, or its own device's default when None."""
    world = dist.get_world_size()
    segments = planned_segments(store.db, config)
    try:
        ranks = _handshake({"host": socket.gethostname(), "device": str(runtime.device), "digest": runtime.digest})
        problems = [f"rank {rank} ({status['device']}): {status['error']}" for rank, status in enumerate(ranks)
                    if status.get("error")]
        problems += [f"rank {rank} ({status['device']}) loaded another model (digest {status['digest'][:12]}…)"
                     for rank, status in enumerate(ranks) if status.get("digest") not in (None, runtime.digest)]
        sizes = [batch_segments or default_batch_segments(status["device"]) for status in ranks]
        steps, rows = deal(segments, sizes), max(sizes)
        _send_plan(Plan(None, [], stop="; ".join(problems)) if problems else Plan(asdict(config), steps, rows))
    except (RuntimeError, dist.DistError) as error:
        raise RankLost(0, len(segments), error) from error
    if problems:
        raise UsageError("; ".join(problems))

    loads = [RankLoad(rank, status["device"]) for rank, status in enumerate(ranks)]
    report = ProcessReport(ranks=loads)
    total = sum(end - start for start, end in segments)
    started, stamp = time.perf_counter(), pass_stamp()
    comm = _comm_device(runtime)
    if progress is not None and total:
        progress(0, total)
    queries = background_queries(runtime, config) if config.background and steps else None
    for step in steps:
        outgoing = [_token_tensor([read_tokens(store.tokens_path, *segment) for segment in batch], config, rows, comm)
                    for batch in step]
        try:
            keys, seconds = _step(runtime, config, step[0], rows, outgoing, comm)
        except (RuntimeError, dist.DistError) as error:
            raise RankLost(report.segments, len(segments), error) from error
        states, work = [], []
        for rank, batch in enumerate(step):
            for row, (start, end) in enumerate(batch):
                states.append((start, end, keys[rank][row, :end - start].cpu().numpy()))
                work.append(catalog.SegmentWork(start, end, stamp, rank, world, ranks[rank]["host"],
                                                ranks[rank]["device"], seconds[rank] / len(batch)))
            loads[rank].segments += len(batch)
            loads[rank].tokens += sum(end - start for start, end in batch)
            loads[rank].seconds += seconds[rank]
            if rank and batch:
                report.exchanged_bytes += outgoing[rank].numel() * outgoing[rank].element_size()
                report.exchanged_bytes += keys[rank].numel() * keys[rank].element_size()
        write_states(store.root, states, segment_hubs(config, queries, [keys for _, _, keys in states]))
        catalog.record_segments(store.db, work)
        report.segments += len(work)
        report.tokens += sum(end - start for start, end, _ in states)
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress(report.tokens, total)
    return report


def release() -> None:
    """Rank 0 with nothing to process: the other ranks (waiting for a plan) are told to stop."""
    _handshake({"host": socket.gethostname(), "device": None, "digest": None})
    _send_plan(Plan(None, [], stop="nothing to process"))


def serve(placement: Placement, load: Callable[[], Runtime]) -> None:
    """A rank other than 0: load the model, report, then encode the segments rank 0 deals out until done."""
    status = {"host": socket.gethostname(), "device": placement.device, "digest": None}
    runtime = None
    try:
        runtime = load()
        status["digest"] = runtime.digest
    except (ModelError, UsageError, OSError, RuntimeError) as error:
        status["error"] = str(error)
    _handshake(status)
    plan = _receive_plan()
    if plan.stop is not None or runtime is None:
        return
    config = config_from_values(plan.config)
    comm = _comm_device(runtime)
    for step in plan.steps:
        _step(runtime, config, step[placement.rank], plan.rows, None, comm)


def _step(runtime: Runtime, config: EngineConfig, batch: list[tuple[int, int]], rows: int,
          outgoing: list[torch.Tensor] | None, comm: torch.device) -> tuple[list[torch.Tensor], list[float]]:
    """One step on any rank: receive token ids (rank 0 sends them), encode its batch, hand the keys to rank 0.

    Returns, on rank 0, every rank's padded keys (rows, segment_tokens, heads, dim) and seconds; elsewhere
    empty lists.
    """
    ids = torch.empty(rows, config.segment_tokens, dtype=torch.int32, device=comm)
    dist.scatter(ids, outgoing, src=0)
    keys = torch.zeros(rows, config.segment_tokens, len(config.heads), runtime.config.head_dim, dtype=torch.int8,
                       device=comm)
    seconds = torch.zeros(1, dtype=torch.float64, device=comm)
    if batch:
        began = time.perf_counter()
        length = batch[0][1] - batch[0][0]
        encoded = encode_segments(runtime, config, list(ids[:len(batch), :length].cpu().numpy()))
        seconds[0] = time.perf_counter() - began
        keys[:len(batch), :length] = torch.from_numpy(np.stack(encoded)).to(comm)
    rank0 = dist.get_rank() == 0
    gathered_keys = [torch.empty_like(keys) for _ in range(dist.get_world_size())] if rank0 else None
    gathered_seconds = [torch.empty_like(seconds) for _ in range(dist.get_world_size())] if rank0 else None
    dist.gather(keys, gathered_keys, dst=0)
    dist.gather(seconds, gathered_seconds, dst=0)
    if not rank0:
        return [], []
    return gathered_keys, [float(value.item()) for value in gathered_seconds]


def _token_tensor(batch: list[np.ndarray], config: EngineConfig, rows: int, comm: torch.device) -> torch.Tensor:
    """A batch's token ids, one row a segment, padded to `rows` x `segment_tokens` (int32: every vocabulary fits)."""
    padded = torch.zeros(rows, config.segment_tokens, dtype=torch.int32)
    for row, ids in enumerate(batch):
        padded[row, :len(ids)] = torch.from_numpy(ids.astype(np.int32))
    return padded.to(comm)


def _comm_device(runtime: Runtime) -> torch.device:
    """Where tensors must sit for the backend: the GPU for NCCL, the CPU for gloo."""
    return runtime.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _handshake(status: dict) -> list[dict]:
    every: list[dict | None] = [None] * dist.get_world_size()
    dist.all_gather_object(every, status)
    return every


def _send_plan(plan: Plan) -> None:
    dist.broadcast_object_list([plan], src=0)


def _receive_plan() -> Plan:
    box: list[Plan | None] = [None]
    dist.broadcast_object_list(box, src=0)
    return box[0]

