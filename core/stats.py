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
this split keeps a hook cheap; ``sampled`` tells how many elements the estimates used. The
samples of all modules are reduced together at the end of the step (:func:`sample_stats`),
a dozen kernel launches for the whole model instead of a dozen per module.
"""

from __future__ import annotations

from typing import Any

import torch

HIST_BINS = 24
"""Bins of every activation histogram (fixed, so records stay small and comparable)."""

HIST_SAMPLE = 1024
"""At most this many elements feed the histogram, the zero fraction and the non-finite count.

1024 draws put the zero fraction within about ±3 points (2σ) and fill 24 bins well enough to
show a distribution's shape; the batched reduction over every module's sample then costs a
few hundred microseconds per step on CPU instead of milliseconds (bench/README.md)."""

_EDGE = 1.0 - 2.0 ** -18
"""Finite values are scaled into [0, bins * _EDGE): the maximum lands in the last bin, not
in the spare one, and bin edges move by less than 1e-4 of a bin width."""

# Layout of what decode_activation reads: the whole-tensor head from activation_stats,
# then the sample head and histogram that sample_stats computes for all modules at once.
_HEAD = ("sum", "sumsq", "min", "max")
_SAMPLE_HEAD = ("zeros", "finite", "hist_lo", "hist_hi")
HEAD_LEN = len(_HEAD)
SAMPLE_HEAD_LEN = len(_SAMPLE_HEAD)


def sample_stride(n: int, sample: int = HIST_SAMPLE) -> int:
    """Stride of the strided sample of an ``n``-element tensor (1: every element)."""
    return max(1, -(-n // sample))


def activation_stats(x: torch.Tensor, sample: int = HIST_SAMPLE) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-tensor (sum, sum of squares, min, max) and a strided sample copy of ``x``.

    Both stay on ``x``'s device; ``x`` is read, never modified. The sample is a copy so a
    later in-place op on ``x`` cannot change it; :func:`sample_stats` reduces the samples
    of every module together at the end of the step.
    """
    # x.detach() is enough to keep autograd out; a no_grad block per hook costs more.
    flat = dense_flat(x.detach())
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # half/bf16/fp8: reduce in float32
    if flat.numel() == 0:
        return torch.zeros(HEAD_LEN, device=flat.device), flat.float()
    lo, hi = torch.aminmax(flat)
    head = torch.stack([flat.sum(), torch.dot(flat, flat), lo, hi])
    part = flat[:: sample_stride(flat.numel(), sample)].clone()
    if head.dtype != torch.float32:
        head, part = head.float(), part.float()
    return head, part


def dense_flat(t: torch.Tensor) -> torch.Tensor:
    """``t``'s elements as a 1-D tensor, without a copy whenever its memory allows.

    A contiguous tensor is viewed; a permuted one that still covers a gap-free block of
    storage (a transpose, the batch-first output of attention) is viewed over that block in
    storage order, which is all a whole-tensor reduction needs. Only tensors with gaps or
    overlaps (slices, expand) are copied, as ``reshape`` would.
    """
    if t.is_contiguous():
        return t.view(-1)
    expect = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expect:
            return t.reshape(-1)
        expect *= size
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def sample_stats(parts: list[torch.Tensor], bins: int = HIST_BINS) -> torch.Tensor:
    """Zeros, finite count, histogram range and histogram of each sample, batched.

    Returns a (len(parts), 4 + bins) tensor on the samples' device. Rows are padded with
    NaN. Histograms span each row's finite range; NaN, ±Inf and padding go to a spare bin
    per row that is dropped, so the finite count is the histogram's total. No host sync.

    Written for CPU cost (about 8 passes over the samples): ``isfinite``/``where`` chains
    and ``scatter_add_`` with a ones tensor measured 5-10x slower than ``nan_to_num`` and
    ``bincount`` here. ``bincount`` reads its input's maximum back to the host on CUDA, so
    other devices use ``scatter_add_``.
    """
    with torch.no_grad():
        rows = torch.nn.utils.rnn.pad_sequence(parts, batch_first=True, padding_value=float("nan"))
        m, width = rows.shape
        if width == 0:  # only empty outputs this step
            return torch.zeros(m, SAMPLE_HEAD_LEN + bins, device=rows.device)
        inf = float("inf")
        lo = torch.nan_to_num(rows, nan=inf, posinf=inf, neginf=inf).amin(1)
        hi = torch.nan_to_num(rows, nan=-inf, posinf=-inf, neginf=-inf).amax(1)
        empty = lo > hi  # no finite value in the row: lo stayed +inf, hi -inf
        lo = lo.masked_fill(empty, 0.0)
        hi = hi.masked_fill(empty, 0.0)
        scale = (bins * _EDGE) / (hi - lo).clamp_min(1e-30)
        idx = (rows - lo[:, None]).mul_(scale[:, None])
        idx = idx.nan_to_num_(bins, bins, bins).clamp_(0, bins).long()  # non-finite: spare bin
        idx += torch.arange(m, device=rows.device)[:, None] * (bins + 1)
        flat_idx = idx.view(-1)
        if rows.device.type == "cpu":
            counts = torch.bincount(flat_idx, minlength=m * (bins + 1))
        else:
            counts = torch.zeros(m * (bins + 1), dtype=torch.long, device=rows.device).scatter_add_(
                0, flat_idx, torch.ones_like(flat_idx))
        hist = counts.view(m, bins + 1)[:, :bins].float()
        zeros = (rows == 0).sum(1).float()
        head = torch.stack([zeros, hist.sum(1), lo, hi], dim=1)
        return torch.cat([head, hist], dim=1)


WIDE_CHUNK = 1 << 20
"""Elements per float64 piece of a wide gradient norm (8 MiB of float64 at a time)."""


def grad_stats(g: torch.Tensor, wide: bool = False) -> torch.Tensor:
    """The squared L2 norm of a gradient, as a one-element tensor on its device.

    ``wide``: summed in float64. A gradient of a loss scaled by a large GradScaler scale
    has float32 squares that overflow (the scale is divided out only afterwards). Taken
    in pieces of WIDE_CHUNK elements: a float64 copy of a whole logits-sized gradient
    could run the user's device out of memory. (MPS has no float64: float32 there.)"""
    flat = dense_flat(g.detach())
    if wide and flat.dtype != torch.float64 and flat.device.type != "mps":
        # map is lazy: one float64 piece at a time (an empty gradient still gives one piece).
        pieces = map(torch.Tensor.double, flat.split(WIDE_CHUNK))
        return sum(torch.dot(piece, piece) for piece in pieces).reshape(1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    return torch.dot(flat, flat).reshape(1)


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The global 2-norm of ``grads``, left on their device (0-dim).

    One foreach kernel and one stack when all share a device and dtype (the usual case);
    ``torch.nn.utils.get_total_norm`` otherwise. Same value as get_total_norm, which on
    the usual case costs several more Python-level torch calls (it groups the tensors and
    takes a norm of every 0-dim norm again).
    """
    with torch.no_grad():
        first = grads[0]
        if all(g.device == first.device and g.dtype == first.dtype for g in grads):
            return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        return torch.nn.utils.get_total_norm(grads)


def decode_activation(values: list[float], numel: int, sample: int = HIST_SAMPLE) -> dict[str, Any]:
    """The dict form of one :func:`activation_stats` vector for an ``numel``-element tensor."""
    head = dict(zip(_HEAD + _SAMPLE_HEAD, values[: HEAD_LEN + SAMPLE_HEAD_LEN]))
    hist = [int(v) for v in values[HEAD_LEN + SAMPLE_HEAD_LEN:]]
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


def float_tensors(value: Any, limit: int, *, requires_grad: bool = False) -> list[torch.Tensor]:
    """Up to ``limit`` floating-point tensors in a module output (tensor, tuple/list, dict).

    With ``requires_grad``, only those that take part in autograd. Iterative and bounded:
    nested containers are searched breadth-first, at most 64 items looked at.
    """
    found: list[torch.Tensor] = []
    queue = [value]
    seen = 0
    while queue and seen < 64 and len(found) < limit:
        item = queue.pop(0)
        seen += 1
        if isinstance(item, torch.Tensor):
            if (item.is_floating_point() and item.device.type != "meta"
                    and (item.requires_grad or not requires_grad)):
                found.append(item)
        elif isinstance(item, (tuple, list)):
            queue.extend(item)
        elif isinstance(item, dict):
            queue.extend(item.values())
    return found


def first_float_tensor(value: Any) -> torch.Tensor | None:
    """The first floating-point tensor in a module output, or None (see float_tensors)."""
    found = float_tensors(value, 1)
    return found[0] if found else None


def describe_output(value: Any) -> str:
    """A short description of what a module returned, for outputs without a float tensor."""
    if value is None:
        return "returned None"
    if isinstance(value, torch.Tensor):
        return f"returned a {str(value.dtype).replace('torch.', '')} tensor (not floating point)"
    return f"returned {type(value).__name__} without a floating-point tensor"
