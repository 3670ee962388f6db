"""Statistics of one tensor, reduced on the tensor's own device into one small vector.

Hooks call :func:`activation_stats` and :func:`grad_stats`; both return a float32 tensor on
the input's device and never read a value back to the host, so a hook costs a few kernel
launches and no synchronisation. :func:`decode_activation` turns the fetched list of floats
back into a plain dict once per step.

The numbers are torch's own: ``mean`` is ``x.mean()``, ``std`` is ``x.std()`` (unbiased),
``abs_max`` is ``x.abs().max()``, ``zero_frac`` is ``(x == 0).float().mean()``, ``nonfinite``
is ``(~x.isfinite()).sum()``, computed over the whole tensor in float32 (float64 stays
float64 until the final cast). Only the histogram is drawn from a bounded, strided sample.
"""

from __future__ import annotations

from typing import Any

import torch

HIST_BINS = 24
"""Bins of every activation histogram (fixed, so records stay small and comparable)."""

HIST_SAMPLE = 4096
"""At most this many elements feed a histogram: a strided sample of the tensor."""

# Layout of the vector activation_stats returns; decode_activation reads the same order.
_FIELDS = ("mean", "std", "abs_max", "zero_frac", "nonfinite", "min", "max", "numel")
ACT_LEN = len(_FIELDS) + HIST_BINS


def activation_stats(x: torch.Tensor, bins: int = HIST_BINS, sample: int = HIST_SAMPLE) -> torch.Tensor:
    """Mean, std, abs-max, fraction of zeros, non-finite count, range and histogram of ``x``.

    ``x`` must be a floating tensor; it is read, never modified, and no host sync happens.
    """
    with torch.no_grad():
        flat = x.detach().reshape(-1)
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()  # half/bf16/fp8: reduce in float32 as lovely-tensors does
        n = flat.numel()
        if n == 0:
            out = torch.full((len(_FIELDS) + bins,), float("nan"), dtype=torch.float32, device=flat.device)
            out[len(_FIELDS) - 1] = 0.0
            out[len(_FIELDS):] = 0.0
            return out
        if n > 1:
            var, mean = torch.var_mean(flat)
            std = var.sqrt()
        else:
            mean = flat.mean()
            std = torch.full_like(mean, float("nan"))  # what x.std() gives for one element
        lo, hi = torch.aminmax(flat)
        abs_max = torch.maximum(hi.abs(), lo.abs())
        nonzero = torch.count_nonzero(flat)
        finite = torch.count_nonzero(torch.isfinite(flat))
        stride = max(1, -(-n // sample))
        part = flat[::stride]
        # NaN in the data makes lo/hi NaN; nan_to_num keeps the binning defined (it then
        # counts what it can) while mean/std/abs_max still report the NaN honestly.
        lo_f = torch.nan_to_num(lo, nan=0.0, posinf=0.0, neginf=0.0)
        hi_f = torch.nan_to_num(hi, nan=0.0, posinf=0.0, neginf=0.0)
        span = (hi_f - lo_f).clamp_min(1e-30)
        idx = ((part - lo_f) * (bins / span)).nan_to_num_(0.0, 0.0, 0.0).clamp_(0, bins - 1).long()
        hist = torch.zeros(bins, dtype=torch.float32, device=flat.device)
        hist.scatter_add_(0, idx, torch.ones_like(idx, dtype=torch.float32))
        head = torch.stack([
            mean, std, abs_max,
            (n - nonzero) / n,
            (n - finite).to(mean.dtype),
            lo, hi,
            torch.full_like(mean, float(n)),
        ]).float()
        return torch.cat([head, hist])


def grad_stats(g: torch.Tensor) -> torch.Tensor:
    """The L2 norm of a gradient, as a one-element float32 tensor on its device."""
    with torch.no_grad():
        return torch.linalg.vector_norm(g.detach().float()).reshape(1)


def decode_activation(values: list[float]) -> dict[str, Any]:
    """The dict form of one :func:`activation_stats` vector (plain floats)."""
    head = dict(zip(_FIELDS, values[: len(_FIELDS)]))
    head["nonfinite"] = int(head["nonfinite"]) if head["nonfinite"] == head["nonfinite"] else None
    head["numel"] = int(head["numel"])
    head["hist"] = [int(v) for v in values[len(_FIELDS):]]
    return head


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
