"""Two checkpoints compared: keys only in one, shape/dtype changes, how far values moved.

For every key both files hold with the same shape and dtype, the values are compared in
windows of :data:`CHUNK` elements (a memory-mapped 1 GB tensor never needs a second 1 GB
copy): the largest absolute difference and the relative change ``‖b − a‖ / ‖a‖``. Rows
come sorted by relative change, largest first.

>>> d = diff_checkpoints(open_checkpoint("a.pt"), open_checkpoint("b.pt"))  # doctest: +SKIP
>>> d.rows[0].key, d.rows[0].rel_change                                    # doctest: +SKIP
('fc2.weight', 0.031)
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from tensorscope.checkpoint import Checkpoint

#: Elements compared at a time.
CHUNK = 1 << 22


@dataclass
class DiffRow:
    """One key, compared."""

    key: str
    status: str
    """"only_a", "only_b", "shape", "dtype", "changed", "same"."""
    shape_a: tuple[int, ...] | None = None
    shape_b: tuple[int, ...] | None = None
    dtype_a: str | None = None
    dtype_b: str | None = None
    max_abs_diff: float | None = None
    rel_change: float | None = None
    """‖b − a‖₂ / ‖a‖₂ (inf when a is all zeros and b is not)."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("shape_a", "shape_b"):
            out[k] = list(out[k]) if out[k] is not None else None
        for k in ("max_abs_diff", "rel_change"):
            v = out[k]
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = repr(v)
        return out


@dataclass
class CheckpointDiff:
    """Everything that differs between two files (A is the reference)."""

    a: str
    b: str
    rows: list[DiffRow]
    metadata: list[tuple[str, Any, Any]] = field(default_factory=list)
    """(key, value in A, value in B) for metadata that differs or exists in one only."""

    def by_status(self, status: str) -> list[DiffRow]:
        return [r for r in self.rows if r.status == status]

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "summary": self.summary(),
            "only_in_a": [r.key for r in self.by_status("only_a")],
            "only_in_b": [r.key for r in self.by_status("only_b")],
            "tensors": [r.to_json() for r in self.rows],
            "metadata": [{"key": k, "a": _plain(va), "b": _plain(vb)} for k, va, vb in self.metadata],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


_MISSING = object()


def compare_values(a: Any, b: Any, cancel: threading.Event | None = None) -> tuple[float, float]:
    """(max |b − a|, ‖b − a‖ / ‖a‖) of two same-shape tensors, window by window."""
    import torch

    fa, fb = a.detach().reshape(-1), b.detach().reshape(-1)
    max_abs, diff_norm, ref_norm = 0.0, 0.0, 0.0
    for start in range(0, fa.numel(), CHUNK):
        if cancel is not None and cancel.is_set():
            raise InterruptedError("cancelled")
        ca, cb = fa[start:start + CHUNK], fb[start:start + CHUNK]
        wide = torch.complex128 if ca.is_complex() else torch.float64
        ca, cb = ca.to(wide), cb.to(wide)
        d, ref = (cb - ca).abs(), ca.abs()
        if not d.numel():
            continue
        m = float(d.max())
        if not math.isnan(max_abs) and (math.isnan(m) or m > max_abs):
            max_abs = m  # a NaN anywhere stays: that is what a reader should see
        diff_norm = math.hypot(diff_norm, _scaled_norm(d))
        ref_norm = math.hypot(ref_norm, _scaled_norm(ref))
    if diff_norm == 0.0:
        return max_abs, 0.0
    return max_abs, (diff_norm / ref_norm if ref_norm > 0 else math.inf)


def _scaled_norm(x: Any) -> float:
    """‖x‖₂ of non-negative values without squaring tiny/huge numbers to 0/inf."""
    top = float(x.max())
    if top == 0.0 or not math.isfinite(top):
        return top
    return top * float(((x / top) ** 2).sum().sqrt())


def diff_checkpoints(a: Checkpoint, b: Checkpoint, cancel: threading.Event | None = None) -> CheckpointDiff:
    """Compare ``b`` against ``a`` key by key (the dotted keys of their tensors)."""
    rows: list[DiffRow] = []
    b_keys = {t.key: t for t in b.tensors}
    a_keys = {t.key: t for t in a.tensors}
    for ta in a.tensors:
        tb = b_keys.get(ta.key)
        if tb is None:
            rows.append(DiffRow(ta.key, "only_a", shape_a=ta.shape, dtype_a=ta.dtype))
            continue
        row = DiffRow(ta.key, "same", shape_a=ta.shape, shape_b=tb.shape, dtype_a=ta.dtype, dtype_b=tb.dtype)
        if ta.shape != tb.shape:
            row.status = "shape"
        elif ta.dtype != tb.dtype:
            row.status = "dtype"
        else:
            va, vb = a.values.get(ta.key), b.values.get(ta.key)
            if va is not None and vb is not None and va.layout == vb.layout and va.is_floating_point() == vb.is_floating_point():
                try:
                    row.max_abs_diff, row.rel_change = compare_values(va.to_dense() if va.is_sparse else va,
                                                                      vb.to_dense() if vb.is_sparse else vb, cancel)
                except RuntimeError:  # an exotic dtype with no arithmetic: keep the row unmeasured
                    pass
                if row.max_abs_diff is not None and (row.max_abs_diff != 0.0 or row.rel_change != 0.0):
                    row.status = "changed"  # NaN compares unequal too: a NaN is a change
        rows.append(row)
    rows.extend(DiffRow(tb.key, "only_b", shape_b=tb.shape, dtype_b=tb.dtype)
                for tb in b.tensors if tb.key not in a_keys)
    order = {"only_a": 0, "only_b": 1, "shape": 2, "dtype": 3, "changed": 4, "same": 5}

    def sort_key(r: DiffRow) -> tuple[int, float]:
        rel = r.rel_change if r.rel_change is not None and not math.isnan(r.rel_change) else -1.0
        return (order[r.status], -rel)

    rows.sort(key=sort_key)
    meta = []
    for key in list(a.metadata) + [k for k in b.metadata if k not in a.metadata]:
        va, vb = a.metadata.get(key, _MISSING), b.metadata.get(key, _MISSING)
        if va is _MISSING or vb is _MISSING or va != vb:
            meta.append((key, None if va is _MISSING else va, None if vb is _MISSING else vb))
    return CheckpointDiff(a=a.path, b=b.path, rows=rows, metadata=meta)
