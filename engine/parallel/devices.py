"""Which processes and devices a run uses, and the torch.distributed process group that joins them.

Two ways in, one process per device either way:
- `engine ingest --devices cpu,cpu` (or `cuda:0,cuda:1`): this process is rank 0 and starts one
  process for every further device (multiprocessing, spawn), meeting them on a local TCP port.
- `torchrun --nproc-per-node N -m engine ingest ...`: torchrun started the processes and set RANK,
  WORLD_SIZE, LOCAL_RANK and the rendezvous address; each rank takes cuda:LOCAL_RANK when there are
  GPUs (the CPU with `--device cpu`). The same command spans machines through torchrun's rendezvous.

NCCL carries the exchange when every rank has a GPU of its own; gloo otherwise (CPU ranks, or several
processes sharing one GPU, which NCCL refuses). What travels (token ids out, int8 keys back) is small
and starts and ends on the CPU, so gloo costs little even next to GPUs.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from engine.errors import RunError, UsageError
from engine.parallel.placement import Placement
from engine.runtime import choose_device

# How long a rank waits in a collective; rank 0 may spend this long on the front-end ingest first.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
WORKER_EXIT_WAIT_S = 5.0
# How often rank 0, waiting for the ranks it started to join, checks that they are still alive.
JOIN_POLL_S = 0.5


def parse_devices(text: str) -> list[str]:
    """`cpu,cpu` or `cuda:0,cuda:1` into device names, each checked to exist."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise UsageError(f"--devices wants a comma-separated list such as cpu,cpu or cuda:0,cuda:1 (got {text!r})")
    devices = [choose_device(name) for name in names]
    if any(device.type == "cuda" and device.index is None for device in devices):
        raise UsageError(f"--devices names each GPU by its index, e.g. cuda:0,cuda:1 (got {text!r})")
    return [str(device) for device in devices]


def backend_for(devices: list[str]) -> str:
    if all(name.startswith("cuda") for name in devices) and len(set(devices)) == len(devices):
        return "nccl"
    return "gloo"


def torchrun_placement(device: str | None) -> Placement | None:
    """This process's placement when torchrun started it with other ranks; None otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cpu" or (device is None and not torch.cuda.is_available()):
        name = "cpu"
    else:
        name = str(choose_device(f"cuda:{local}"))
    return Placement(rank, world, name, "nccl" if name.startswith("cuda") else "gloo", "env://")


def share_cpu(world_size: int) -> None:
    """CPU ranks on one machine split its cores instead of each starting a thread per core."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))


def join(placement: Placement) -> None:
    """Joins the process group (blocks until every rank has)."""
    if placement.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(placement.device))
    _init_group(placement)


def _init_group(placement: Placement) -> None:
    dist.init_process_group(placement.backend, init_method=placement.init_method, rank=placement.rank,
                            world_size=placement.world_size, timeout=COLLECTIVE_TIMEOUT)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass
class Cluster:
    """Rank 0's side of a run on several devices: its placement and the worker processes it started."""

    placement: Placement
    devices: list[str]
    workers: list[multiprocessing.Process] = field(default_factory=list)

    @classmethod
    def spawn(cls, devices: list[str], model: str | None) -> Cluster:
        """Starts one process per device after the first (this process, rank 0) and joins them."""
        backend, init_method = backend_for(devices), f"tcp://127.0.0.1:{_free_port()}"
        context = multiprocessing.get_context("spawn")
        workers = []
        for rank, device in enumerate(devices[1:], start=1):
            worker = context.Process(target=run_worker, name=f"engine-rank-{rank}", daemon=True,
                                     args=(Placement(rank, len(devices), device, backend, init_method), model))
            worker.start()
            workers.append(worker)
        cluster = cls(Placement(0, len(devices), devices[0], backend, init_method), devices, workers)
        if devices[0] == "cpu":
            share_cpu(len(devices))
        try:
            cluster.join_watching()
        except BaseException:
            cluster.close(failed=True)
            raise
        return cluster

    def join_watching(self) -> None:
        """Joins the process group while watching the processes this one started.

        The rendezvous waits for every rank as long as a collective may (30 minutes): a rank that dies
        before joining would leave rank 0 waiting that long. So the join runs in a daemon thread while
        this one polls the workers, and a dead one stops the run at once with RunError (the stuck join is
        left behind; the process is about to exit).
        """
        if self.placement.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(self.placement.device))  # per thread: set in the one that computes
        failure: list[BaseException] = []

        def init() -> None:
            try:
                _init_group(self.placement)
            except BaseException as error:
                failure.append(error)

        joining = threading.Thread(target=init, name="engine-join", daemon=True)
        joining.start()
        while joining.is_alive():
            joining.join(JOIN_POLL_S)
            dead = [(rank, worker.exitcode) for rank, worker in enumerate(self.workers, start=1)
                    if worker.exitcode is not None]
            if dead and joining.is_alive():
                rank, code = dead[0]
                raise RunError(f"rank {rank} ({self.devices[rank]}) exited with code {code} before joining the "
                               f"run; nothing was processed")
        if failure:
            raise failure[0]

    @classmethod
    def torchrun(cls, placement: Placement) -> Cluster:
        join(placement)
        return cls(placement, [placement.device] * placement.world_size)

    def who_stopped(self) -> str:
        """The ranks that are gone, as far as this process can see (torchrun's agent sees the rest)."""
        stopped = []
        for rank, worker in enumerate(self.workers, start=1):
            worker.join(WORKER_EXIT_WAIT_S if not stopped else 0)
            if worker.exitcode is not None:
                stopped.append(f"rank {rank} ({self.devices[rank]}, exit code {worker.exitcode})")
        return ", ".join(stopped) or "a rank"

    def close(self, failed: bool = False) -> None:
        """Leaves the process group; after a failure the workers this process started are ended first."""
        if failed:
            for worker in self.workers:
                if worker.is_alive():
                    worker.terminate()
        for worker in self.workers:
            worker.join()
        leave()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(failed=kind is not None)


def run_worker(placement: Placement, model: str | None) -> None:
    """A spawned rank: join, compute what rank 0 deals out, leave. Errors end the process non-zero."""
    from engine.parallel.sharded import serve
    from engine.runtime import load_runtime

    exit_with_rank_zero(placement)
    if placement.device == "cpu":
        share_cpu(placement.world_size)
    join(placement)
    try:
        serve(placement, lambda: load_runtime(model, placement.device))
    except Exception as error:
        print(f"engine rank {placement.rank} ({placement.device}): {error}", file=sys.stderr)
        raise SystemExit(1) from error
    leave()


def exit_with_rank_zero(placement: Placement) -> None:
    """Ends this spawned rank as soon as rank 0, the process that started it, is gone.

    Rank 0 ends its workers itself when it fails, but not when it is killed (SIGKILL, out of memory):
    then a worker waiting to join, or in a collective, would wait out COLLECTIVE_TIMEOUT (30 minutes).
    The parent's sentinel becomes ready the moment the parent dies, so a daemon thread waits on it.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        print(f"engine rank {placement.rank} ({placement.device}): rank 0 is gone; leaving the run",
              file=sys.stderr, flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="engine-watch-rank-0", daemon=True).start()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
