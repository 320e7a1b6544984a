"""Loaded at start-up by every Python process of a two-rank test run (this folder leads its PYTHONPATH):
makes one rank die where the test asks, as a lost machine would, without a hook in the engine.

`ENGINE_TEST_RANK_EXIT`: "RANK:N" ends that rank's process abruptly (exit code 3) once it has handed over
N segments; "RANK:join" ends that spawned rank before it joins the process group.
"""

import os

_WANTED = os.environ.get("ENGINE_TEST_RANK_EXIT", "")

if _WANTED:
    from engine.parallel import devices, sharded

    _rank, _when = _WANTED.split(":")
    _join, _step = devices.join, sharded._step
    _handed = 0

    def _join_or_die(placement):
        if _when == "join" and placement.rank == int(_rank):
            os._exit(3)
        _join(placement)

    def _step_then_maybe_die(runtime, config, batch, rows, outgoing, comm):
        global _handed
        result = _step(runtime, config, batch, rows, outgoing, comm)
        _handed += len(batch)
        if _when != "join" and sharded.dist.get_rank() == int(_rank) and _handed >= int(_when):
            os._exit(3)
        return result

    devices.join = _join_or_die
    sharded._step = _step_then_maybe_die
