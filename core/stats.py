"""Statistics of one tensor, reduced on the tensor's own device into one small vector.

Hooks call :func:`activation_stats` and :func:`grad_stats`; both return a tensor on the
input's device and never read a value back to the host, so a hook costs a handful of kernel
launches and no synchronisation. The arithmetic that turns sums into means happens on the
host in :func:`decode_activation`, once per step, after the one fetch.

Over the whole tensor (exact, reduced in float32, float64 stays float64): ``mean``,
``std`` (unbiased, from the sum and sum of squares), ``min``, ``max``, ``abs_max`` and whether
any element is non-finite. Over a strided sample of at most ``sample`` elements (the whole
tensor when it is smaller — then these are exact too): ``zero_frac``, the ``nonfinite``
count (scaled up to the whole tensor, at least 1 when any element is non-finite) and the
histogram. Counting over millions of elements costs far more than summing them on CPU, so
this split keeps a hook cheap; ``sampled`` tells how many elements the estimates used.
"""

from __future__ import annotations

from typing import Any

import torch

HIST_BINS = 24
"""Bins of every activation histogram (fixed, so records stay small and comparable)."""

HIST_SAMPLE = 4096
"""At most this many elements feed the histogram, the zero fraction and the non-finite count."""

# Layout of the vector activation_stats returns; decode_activation reads the same order.
_HEAD = ("sum", "sumsq", "min", "max", "zeros", "finite", "hist_lo", "hist_hi")


def sample_stride(n: int, sample: int = HIST_SAMPLE) -> int:
    """Stride of the strided sample of an ``n``-element tensor (1: every element)."""
    return max(1, -(-n // sample))


def activation_stats(x: torch.Tensor, bins: int = HIST_BINS, sample: int = HIST_SAMPLE) -> torch.Tensor:
    """Sums, range, sampled counts and histogram of a floating tensor, as one device vector.

    ``x`` is read, never modified, and nothing is copied to the host.
    """
    with torch.no_grad():
        flat = x.detach().reshape(-1)
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()  # half/bf16/fp8: reduce in float32
        if flat.numel() == 0:
            return torch.zeros(len(_HEAD) + bins, dtype=flat.dtype, device=flat.device)
        total = flat.sum()
        sumsq = torch.dot(flat, flat)
        lo, hi = torch.aminmax(flat)
        part = flat[:: sample_stride(flat.numel(), sample)]
        zeros = (part == 0).sum()
        finite = torch.isfinite(part).sum()
        # nan_to_num keeps the histogram defined when the data holds NaN/Inf (counted above).
        clean = torch.nan_to_num(part, nan=0.0)
        h_lo, h_hi = torch.aminmax(clean)
        if clean.device.type == "cpu":
            hist = torch.histc(clean, bins)  # range from the data: free of syncs on CPU only
        else:
            span = (h_hi - h_lo).clamp_min(1e-30)
            idx = ((clean - h_lo) * (bins / span)).clamp_(0, bins - 1).long()
            hist = torch.zeros(bins, dtype=clean.dtype, device=clean.device).scatter_add_(
                0, idx, torch.ones_like(clean))
        head = torch.stack([total, sumsq, lo, hi, zeros, finite, h_lo, h_hi])
        return torch.cat([head.to(hist.dtype), hist])


def grad_stats(g: torch.Tensor) -> torch.Tensor:
    """The squared L2 norm of a gradient, as a one-element tensor on its device."""
    with torch.no_grad():
        flat = g.detach().reshape(-1)
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()
        return torch.dot(flat, flat).reshape(1)


def decode_activation(values: list[float], numel: int, sample: int = HIST_SAMPLE) -> dict[str, Any]:
    """The dict form of one :func:`activation_stats` vector for an ``numel``-element tensor."""
    head = dict(zip(_HEAD, values[: len(_HEAD)]))
    hist = [int(v) for v in values[len(_HEAD):]]
    if numel == 0:
        return {"numel": 0, "mean": None, "std": None, "min": None, "max": None, "abs_max": None,
                "zero_frac": None, "nonfinite": 0, "sampled": 0, "hist": hist, "hist_range": None}
    stride = sample_stride(numel, sample)
    m = -(-numel // stride)  # elements in the strided sample
    lo, hi = head["min"], head["max"]
    any_bad = not (_finite(lo) and _finite(hi))
    mean = head["sum"] / numel
    if numel > 1 and _finite(head["sumsq"]) and _finite(mean):
        var = max(0.0, (head["sumsq"] - head["sum"] * mean) / (numel - 1))
        std = var ** 0.5
    else:
        std = float("nan")
    bad_in_sample = m - int(head["finite"])
    nonfinite = bad_in_sample * stride if stride > 1 else bad_in_sample
    if any_bad:
        nonfinite = max(1, min(numel, nonfinite))
    else:
        nonfinite = 0
    return {
        "numel": numel,
        "mean": mean,
        "std": std,
        "min": lo,
        "max": hi,
        "abs_max": max(abs(lo), abs(hi)) if not (lo != lo or hi != hi) else float("nan"),
        "zero_frac": head["zeros"] / m,
        "nonfinite": nonfinite,
        "sampled": m,
        "hist": hist,
        "hist_range": [head["hist_lo"], head["hist_hi"]],
    }


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


def first_float_tensor(value: Any) -> torch.Tensor | None:
    """The first floating-point tensor in a module output (tensor, tuple/list, dict), or None.

    Iterative and bounded: nested containers are searched breadth-first, at most 64 items.
    """
    queue = [value]
    seen = 0
    while queue and seen < 64:
        item = queue.pop(0)
        seen += 1
        if isinstance(item, torch.Tensor):
            if item.is_floating_point() and item.device.type != "meta":
                return item
        elif isinstance(item, (tuple, list)):
            queue.extend(item)
        elif isinstance(item, dict):
            queue.extend(item.values())
    return None


def describe_output(value: Any) -> str:
    """A short description of what a module returned, for outputs without a float tensor."""
    if value is None:
        return "returned None"
    if isinstance(value, torch.Tensor):
        return f"returned a {str(value.dtype).replace('torch.', '')} tensor (not floating point)"
    return f"returned {type(value).__name__} without a floating-point tensor"
