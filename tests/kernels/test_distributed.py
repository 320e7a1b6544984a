"""Distributed dilated attention on 2 and 4 CPU ranks (gloo) equals the single-device kernel over the
whole sequence: patterns local to a rank, patterns whose segments span 2 or 4 ranks, and one longer
than the whole sequence; causal and not; RoPE at true and compressed positions; grouped-query heads."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from distributed_ranks import ROWS_PER_RANK, Case, run_rank

import kernels

CASES = {
    2: [
        Case((8, 32), (1, 2), causal=True, rope_mode="true"),
        Case((16, 64), (2, 4), causal=False, rope_mode="compressed"),
        Case((32,), (4,), causal=True, rope_mode=None, heads=6, kv_heads=3),  # rows no pattern keeps
    ],
    4: [
        Case((8, 32, 64), (1, 2, 4), causal=True, rope_mode="true"),
        Case((16, 32, 128), (1, 4, 8), causal=True, rope_mode="compressed"),
        Case((32, 64), (2, 2), causal=False, rope_mode="true", heads=6, kv_heads=3),
    ],
}


@pytest.fixture(scope="module", params=[2, 4])
def ranks_output(request, tmp_path_factory):
    world = request.param
    folder = tmp_path_factory.mktemp(f"world{world}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # the ranks share two cores
        mp.spawn(run_rank, args=(world, f"file://{folder / 'rendezvous'}", CASES[world], str(folder)), nprocs=world)
    return world, [torch.load(folder / f"rank{rank}.pt") for rank in range(world)]


def test_each_rank_holds_the_single_device_rows(ranks_output):
    world, per_rank = ranks_output
    for i, case in enumerate(CASES[world]):
        q, k, v = case.tensors(world)
        expected_out, expected_lse = kernels.dilated_attention(
            q, k, v, segment_lengths=list(case.segment_lengths), dilation_rates=list(case.dilation_rates),
            causal=case.causal, rope=case.rope(world), backend="reference")
        out = torch.cat([results[i]["out"] for results in per_rank], dim=1)
        lse = torch.cat([results[i]["lse"] for results in per_rank], dim=2)
        torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lse, expected_lse, atol=1e-5, rtol=1e-5)


def test_only_spanning_patterns_exchange_their_dilated_rows(ranks_output):
    world, per_rank = ranks_output
    for i, case in enumerate(CASES[world]):
        for rank, results in enumerate(per_rank):
            received = results[i]["received"]
            for w, r in zip(case.segment_lengths, case.dilation_rates):
                if w <= ROWS_PER_RANK:
                    assert (w, r) not in received
                    continue
                first = rank - rank % (w // ROWS_PER_RANK)
                others = min(w // ROWS_PER_RANK, world - first) - 1
                # Every KV head's rows at each offset some of its query heads keep; k and v, fp32.
                group = case.heads // case.kv_heads
                offsets = sum(len({h % r for h in range(kv * group, (kv + 1) * group)}) for kv in range(case.kv_heads))
                rows = case.batch * (ROWS_PER_RANK // r) * offsets
                assert received[(w, r)] == others * 2 * rows * case.dim * 4
