"""First-principles dilated attention for the tests: explicit Python index lists and loops, fp64.

Nothing here imports the code under test. It is slow on purpose and only used on small inputs.
"""

from __future__ import annotations

import math

import torch


def llama_tables(max_positions: int, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables the way Llama builds them: frequencies repeated over the two halves."""
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = torch.arange(max_positions, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, position: int) -> torch.Tensor:
    """Rotate one vector ``x`` of size dim at ``position``: halves (x1, x2) -> x*cos + (-x2, x1)*sin."""
    half = x.shape[-1] // 2
    x = x.double()
    rotated_half = torch.cat((-x[half:], x[:half]))
    return x * cos[position].double() + rotated_half * sin[position].double()


def softmax_rows(q_rows, k_rows, v_rows, scale, visible):
    """For each query row i: softmax over the keys j with visible(i, j); returns (out, lse) lists."""
    outs, lses = [], []
    for i, qi in enumerate(q_rows):
        keys = [j for j in range(len(k_rows)) if visible(i, j)]
        if not keys:
            outs.append(torch.zeros(v_rows[0].shape[-1], dtype=torch.float64))
            lses.append(-math.inf)
            continue
        scores = torch.stack([qi @ k_rows[j] for j in keys]) * scale
        top = scores.max()
        weights = torch.exp(scores - top)
        total = weights.sum()
        outs.append(sum(weights[n] * v_rows[j] for n, j in enumerate(keys)) / total)
        lses.append(float(top + torch.log(total)))
    return outs, lses


def dilated(q, k, v, segment_lengths, dilation_rates, causal=True, scale=None, rope=None):
    """Dilated attention by the paper's recipe, one pattern, segment and head at a time.

    ``rope`` is ``(cos, sin, mode, offset)`` or None. Returns fp64 ``out (b, n, h, d)`` and
    ``lse (b, h, n)``.
    """
    batch, seq, heads, dim = q.shape
    group = heads // k.shape[2]
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    per_pattern = []
    for w, r in zip(segment_lengths, dilation_rates):
        out = torch.zeros(batch, seq, heads, dim, dtype=torch.float64)
        lse = torch.full((batch, heads, seq), -math.inf, dtype=torch.float64)
        for b in range(batch):
            for h in range(heads):
                for start in range(0, seq, w):
                    rows = [p for p in range(start + h % r, min(start + w, seq), r)]
                    if not rows:
                        continue
                    q_rows = [q[b, p, h].double() for p in rows]
                    k_rows = [k[b, p, h // group].double() for p in rows]
                    v_rows = [v[b, p, h // group].double() for p in rows]
                    if rope is not None:
                        cos, sin, mode, offset = rope
                        positions = [offset + (p if mode == "true" else j) for j, p in enumerate(rows)]
                        q_rows = [rotate(x, cos, sin, pos) for x, pos in zip(q_rows, positions)]
                        k_rows = [rotate(x, cos, sin, pos) for x, pos in zip(k_rows, positions)]
                    visible = (lambda i, j: j <= i) if causal else (lambda i, j: True)
                    outs, lses = softmax_rows(q_rows, k_rows, v_rows, scale, visible)
                    for p, o, row_lse in zip(rows, outs, lses):
                        out[b, p, h] = o
                        lse[b, h, p] = row_lse
        per_pattern.append((out, lse))
    return merge_by_hand(per_pattern)


def merge_by_hand(parts):
    """Softmax-denominator weighting: out = sum_i exp(lse_i) out_i / sum_i exp(lse_i), per row."""
    out = torch.zeros_like(parts[0][0])
    lse = torch.full_like(parts[0][1], -math.inf)
    batch, seq, heads, _ = out.shape
    for b in range(batch):
        for h in range(heads):
            for p in range(seq):
                lses = [float(part_lse[b, h, p]) for _, part_lse in parts]
                top = max(lses)
                if top == -math.inf:
                    continue
                weights = [math.exp(x - top) for x in lses]
                total = sum(weights)
                out[b, p, h] = sum(wt * part_out[b, p, h].double() for wt, (part_out, _) in zip(weights, parts)) / total
                lse[b, h, p] = top + math.log(total)
    return out, lse


def dense(q, k, v, causal_offset, causal=True, scale=None, rope=None):
    """Dense attention of query row i (at key index causal_offset + i) over all keys, fp64.

    ``rope`` is ``(cos, sin, offset)`` or None (true positions).
    """
    batch, m, heads, dim = q.shape
    group = heads // k.shape[2]
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    out = torch.zeros(batch, m, heads, dim, dtype=torch.float64)
    lse = torch.full((batch, heads, m), -math.inf, dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            q_rows = [q[b, i, h].double() for i in range(m)]
            k_rows = [k[b, j, h // group].double() for j in range(k.shape[1])]
            v_rows = [v[b, j, h // group].double() for j in range(k.shape[1])]
            if rope is not None:
                cos, sin, offset = rope
                q_rows = [rotate(x, cos, sin, offset + causal_offset + i) for i, x in enumerate(q_rows)]
                k_rows = [rotate(x, cos, sin, offset + j) for j, x in enumerate(k_rows)]
            visible = (lambda i, j: j <= causal_offset + i) if causal else (lambda i, j: True)
            outs, lses = softmax_rows(q_rows, k_rows, v_rows, scale, visible)
            for i in range(m):
                out[b, i, h] = outs[i]
                lse[b, h, i] = lses[i]
    return out, lse
