"""One process's place in a run on several devices.

Apart from `devices` (which starts and joins the processes) so that `sharded` (what each rank computes)
can name it without importing `devices`, which starts ranks that run `sharded`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """One process's place in a run: its rank, the run's size, its device and how ranks meet."""

    rank: int
    world_size: int
    device: str
    backend: str
    init_method: str
