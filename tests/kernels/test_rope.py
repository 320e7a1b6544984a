"""RoPE's rotate_half convention, checked against rotation by complex numbers."""

import math

import pytest
import torch
from dilated_oracle import llama_tables, rotate

from kernels.rope import RoPE, apply_rope


def rotate_by_complex(x: torch.Tensor, position: int, base: float = 10000.0) -> torch.Tensor:
    """Pair element i with element i + dim/2 as one complex number and turn it by position * theta_i."""
    half = x.shape[-1] // 2
    z = torch.complex(x[:half].double(), x[half:].double())
    theta = torch.tensor([position / base ** (2 * i / x.shape[-1]) for i in range(half)], dtype=torch.float64)
    turned = z * torch.polar(torch.ones_like(theta), theta)
    return torch.cat((turned.real, turned.imag))


def test_oracle_rotation_is_complex_rotation():
    cos, sin = llama_tables(50, 16)
    x = torch.randn(16, dtype=torch.float64)
    for position in (0, 1, 7, 49):
        torch.testing.assert_close(rotate(x, cos, sin, position), rotate_by_complex(x, position))


def test_apply_rope_is_complex_rotation_at_each_position():
    cos, sin = llama_tables(40, 8)
    x = torch.randn(2, 5, 3, 8)
    positions = torch.tensor([0, 3, 4, 17, 39])
    rotated = apply_rope(x, cos.float(), sin.float(), positions)
    for b in range(2):
        for i, p in enumerate(positions.tolist()):
            for h in range(3):
                torch.testing.assert_close(rotated[b, i, h].double(), rotate_by_complex(x[b, i, h], p), atol=1e-5, rtol=1e-5)


def test_rotation_keeps_scores_relative():
    """q.k after RoPE depends only on the distance: shifting both positions changes nothing."""
    cos, sin = llama_tables(100, 8)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    near = rotate(q, cos, sin, 10) @ rotate(k, cos, sin, 4)
    far = rotate(q, cos, sin, 90) @ rotate(k, cos, sin, 84)
    assert math.isclose(float(near), float(far), rel_tol=1e-9)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(cos=torch.zeros(4, 8, 1), sin=torch.zeros(4, 8)), "cos"),
        (dict(cos=torch.zeros(4, 8), sin=[0.0]), "sin"),
        (dict(cos=torch.zeros(4, 8, dtype=torch.int32), sin=torch.zeros(4, 8)), "cos"),
        (dict(cos=torch.zeros(4, 8), sin=torch.zeros(5, 8)), "sin"),
        (dict(cos=torch.zeros(4, 7), sin=torch.zeros(4, 7)), "cos"),
        (dict(cos=torch.zeros(4, 8), sin=torch.zeros(4, 8), mode="halved"), "mode"),
        (dict(cos=torch.zeros(4, 8), sin=torch.zeros(4, 8), offset=-1), "offset"),
        (dict(cos=torch.zeros(4, 8), sin=torch.zeros(4, 8), offset=1.5), "offset"),
    ],
)
def test_bad_tables_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RoPE(**kwargs)
