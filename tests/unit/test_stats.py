"""Per-module statistics against torch's own computations, including sampled and odd tensors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorscope.hooks import fetch
from tensorscope.stats import HIST_BINS, activation_stats, decode_activation, sample_stats, total_norm


def _stats(x: torch.Tensor, sample: int = 4096) -> dict:
    head, part = activation_stats(x, sample)
    values = fetch([head, sample_stats([part])])
    return decode_activation(values[0] + values[1], x.numel(), sample)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), zeros=st.integers(0, 50), seed=st.integers(0, 1000))
def test_small_tensors_are_exact(n: int, zeros: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * 3 + 1
    x[: min(zeros, n)] = 0
    s = _stats(x)
    assert s["mean"] == pytest.approx(x.mean().item(), rel=1e-4, abs=1e-5)
    if n > 1:
        assert s["std"] == pytest.approx(x.std().item(), rel=1e-3, abs=1e-5)
    assert s["abs_max"] == x.abs().max().item()
    assert (s["min"], s["max"]) == (x.min().item(), x.max().item())
    assert s["zero_frac"] == pytest.approx((x == 0).float().mean().item(), rel=1e-6)
    assert s["nonfinite"] == 0 and s["sampled"] == n
    expected = torch.histc(x, HIST_BINS, min=x.min().item(), max=x.max().item()) if n > 1 else None
    assert sum(s["hist"]) == n
    if expected is not None and x.min() < x.max():
        # Same bins as histc up to values sitting exactly on an edge.
        assert sum(abs(a - b) for a, b in zip(s["hist"], expected.tolist())) <= 2


def test_large_tensor_sampled_fields_and_exact_fields() -> None:
    x = torch.randn(512, 640).relu()
    s = _stats(x)
    assert s["sampled"] < x.numel() and sum(s["hist"]) == s["sampled"]
    assert s["mean"] == pytest.approx(x.mean().item(), rel=1e-4)
    assert s["std"] == pytest.approx(x.std().item(), rel=1e-4)
    assert s["abs_max"] == x.abs().max().item()
    assert s["zero_frac"] == pytest.approx((x == 0).float().mean().item(), abs=0.03)


def test_nan_and_inf_counted_and_flagged_even_outside_the_sample() -> None:
    x = torch.zeros(100_000)
    x[1] = float("inf")  # not on the sample's stride
    s = _stats(x)
    assert s["nonfinite"] >= 1 and math.isinf(s["abs_max"])
    y = torch.tensor([1.0, float("nan"), 2.0, float("-inf")])
    s = _stats(y)
    assert s["nonfinite"] == 2 and sum(s["hist"]) == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes(dtype: torch.dtype) -> None:
    x = torch.linspace(-2, 2, 101).to(dtype)
    s = _stats(x)
    assert s["mean"] == pytest.approx(x.double().mean().item(), abs=1e-3)
    assert s["abs_max"] == pytest.approx(2.0)


def test_empty_tensor() -> None:
    s = _stats(torch.zeros(0, 3))
    assert s["numel"] == 0 and s["mean"] is None


def test_several_samples_batched_like_one_each() -> None:
    parts = [torch.randn(10), torch.randn(4096), torch.tensor([0.0, 0.0, 5.0])]
    batched = fetch([sample_stats(parts)])[0]
    width = 4 + HIST_BINS
    for i, p in enumerate(parts):
        alone = fetch([sample_stats([p])])[0]
        assert batched[i * width:(i + 1) * width] == alone


@settings(max_examples=40, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(0, 6), min_size=0, max_size=3), min_size=1, max_size=6),
       mixed=st.booleans(), seed=st.integers(0, 1000))
def test_total_norm_is_torchs_total_norm(shapes: list[list[int]], mixed: bool, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    grads = [torch.randn(tuple(shape), generator=g) * 10 ** (i % 3) for i, shape in enumerate(shapes)]
    if mixed:  # another dtype among them takes torch's own grouping path
        grads[0] = grads[0].double()
    ours = total_norm(grads)
    theirs = torch.nn.utils.get_total_norm(grads)
    assert ours.dim() == 0 and float(ours) == pytest.approx(float(theirs), rel=1e-6, abs=1e-12)
