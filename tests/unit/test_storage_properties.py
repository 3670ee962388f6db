"""Property tests: tensorscope.storage agrees with what torch itself reads and reports.

Random shapes go through random chains of view ops. The ground truth for "which cell does
each element read" is measured, not recomputed: the storage is filled with 0, 1, 2, ... and
the view is read back through torch, so every element shows the index of its cell.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensorscope import storage
from tensorscope.storage import aliasing, layout_of, reshape_copies, storage_indices, view_failure

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cells_read(t: torch.Tensor) -> list[int]:
    """Write 0..n-1 into t's storage, then read t through torch: each element's cell."""
    size = t.untyped_storage().nbytes() // t.element_size()
    flat = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage(), 0, (size,), (1,))
    flat.copy_(torch.arange(size, dtype=t.dtype))
    return t.reshape(-1).tolist() if t.numel() else []


def _dim(data, t: torch.Tensor) -> int:
    return data.draw(st.integers(0, t.dim() - 1))


def apply_random_op(data, t: torch.Tensor) -> torch.Tensor:
    """One view op with parameters valid for ``t``."""
    ops = ["unsqueeze", "as_strided", "view"]
    if t.dim() >= 1:
        ops += ["slice", "narrow", "expand", "unfold"]
        if t.numel():
            ops.append("select")
    if t.dim() >= 2:
        ops += ["transpose", "permute", "diagonal"]
    if t.dim() == 4:
        ops.append("channels_last")
    if t.dim() == 5:
        ops.append("channels_last_3d")
    op = data.draw(st.sampled_from(ops), label="op")
    if op == "transpose":
        return t.transpose(_dim(data, t), _dim(data, t))
    if op == "permute":
        return t.permute(*data.draw(st.permutations(range(t.dim()))))
    if op == "slice":
        d = _dim(data, t)
        n = t.shape[d]
        start = data.draw(st.integers(0, n))
        stop = data.draw(st.integers(start, n))
        step = data.draw(st.integers(1, 3))
        index = [slice(None)] * t.dim()
        index[d] = slice(start, stop, step)
        return t[tuple(index)]
    if op == "narrow":
        d = _dim(data, t)
        start = data.draw(st.integers(0, t.shape[d]))
        return t.narrow(d, start, data.draw(st.integers(0, t.shape[d] - start)))
    if op == "select":
        d = data.draw(st.sampled_from([i for i in range(t.dim()) if t.shape[i] > 0]))
        return t.select(d, data.draw(st.integers(0, t.shape[d] - 1)))
    if op == "expand":
        # Either grow a size-1 dim, or add a new leading dim: both give stride 0.
        ones = [i for i in range(t.dim()) if t.shape[i] == 1]
        k = data.draw(st.integers(1, 3))
        if ones and data.draw(st.booleans()):
            sizes = list(t.shape)
            sizes[data.draw(st.sampled_from(ones))] = k
            return t.expand(*sizes)
        return t.unsqueeze(0).expand(k, *t.shape)
    if op == "unsqueeze":
        return t.unsqueeze(data.draw(st.integers(0, t.dim())))
    if op == "diagonal":
        d0 = _dim(data, t)
        d1 = data.draw(st.sampled_from([i for i in range(t.dim()) if i != d0]))
        return t.diagonal(data.draw(st.integers(-2, 2)), d0, d1)
    if op == "unfold":
        d = _dim(data, t)
        size = data.draw(st.integers(0, t.shape[d]))
        return t.unfold(d, size, data.draw(st.integers(1, 3)))
    if op == "view":
        target = data.draw(st.sampled_from([(-1,), tuple(reversed(t.shape)), (1, *t.shape)]))
        expected = view_failure(t, target)
        try:
            out = t.view(target)
        except RuntimeError as exc:
            assert expected is not None and expected in str(exc)
            return t
        assert expected is None
        return out
    if op == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if op == "channels_last_3d":
        return t.contiguous(memory_format=torch.channels_last_3d)
    # as_strided within the storage: any sizes and strides whose reach fits.
    size = t.untyped_storage().nbytes() // t.element_size()
    ndim = data.draw(st.integers(0, 3))
    sizes = data.draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim))
    strides = data.draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim))
    reach = sum((n - 1) * s for n, s in zip(sizes, strides) if n > 0)
    if any(n == 0 for n in sizes):
        reach = 0
    if reach >= size:
        return t
    offset = data.draw(st.integers(0, size - 1 - reach))
    return t.as_strided(sizes, strides, offset)


shapes = st.lists(st.integers(0, 4), min_size=0, max_size=5)


def random_view(data, label: str = "chain") -> tuple[torch.Tensor, torch.Tensor]:
    shape = data.draw(shapes, label="shape")
    base = torch.arange(int(torch.tensor(shape).prod()) if shape else 1, dtype=torch.int64).reshape(shape)
    t = base
    for _ in range(data.draw(st.integers(0, 5), label=f"{label} length")):
        t = apply_random_op(data, t)
    return base, t


@SETTINGS
@given(st.data())
def test_storage_indices_are_the_cells_torch_reads(data) -> None:
    _, t = random_view(data)
    assert storage_indices(t).tolist() == cells_read(t)
    layout = layout_of(t)
    assert layout.indices().tolist() == cells_read(t)
    # Any window agrees with the same slice of the whole.
    start = data.draw(st.integers(0, max(t.numel(), 0)))
    count = data.draw(st.integers(0, 7))
    assert storage_indices(t, start, count).tolist() == cells_read(t)[start:start + count]


@SETTINGS
@given(st.data())
def test_layout_facts_agree_with_torch(data) -> None:
    base, t = random_view(data)
    layout = layout_of(t)
    assert layout.shape == tuple(t.shape) and layout.strides == tuple(t.stride())
    assert layout.storage_offset == t.storage_offset()
    assert layout.is_contiguous == t.is_contiguous()
    formats = dict(layout.formats)
    if t.dim() == 4:
        assert formats["channels_last"] == t.is_contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        assert formats["channels_last_3d"] == t.is_contiguous(memory_format=torch.channels_last_3d)
    assert layout.storage_size == t.untyped_storage().nbytes() // t.element_size()
    assert layout.is_view == (t._base is not None)
    if layout.is_view:
        assert layout.shares_storage_with_base == (
            t.untyped_storage().data_ptr() == t._base.untyped_storage().data_ptr())
    cells = cells_read(t)
    assert layout.span == ((min(cells), max(cells)) if cells else None)
    assert set(layout.expanded_dims) == {d for d in range(t.dim()) if t.stride(d) == 0 and t.shape[d] > 1}
    assert layout.to_json()["storage_indices"] == cells


@SETTINGS
@given(st.data())
def test_aliasing_matches_overlap_measured_by_torch(data) -> None:
    base, a = random_view(data, "a")
    b = base
    for _ in range(data.draw(st.integers(0, 4), label="b length")):
        b = apply_random_op(data, b)
    shared = set(cells_read(a)) & set(cells_read(b))
    result = aliasing(a, b)
    same = a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and \
        a.untyped_storage().nbytes() > 0
    assert result.same_storage == same or a.untyped_storage().nbytes() == 0
    if result.same_storage:
        assert result.overlap == bool(shared)
        if result.shared_bytes is not None:
            assert result.shared_bytes == len(shared) * a.element_size()


@SETTINGS
@given(st.data())
def test_windowed_aliasing_path_is_exact_when_it_decides(data) -> None:
    base, a = random_view(data, "a")
    b = apply_random_op(data, apply_random_op(data, base))
    shared = set(cells_read(a)) & set(cells_read(b))
    old = (storage.EXACT_ALIAS_LIMIT, storage.WINDOW)
    storage.EXACT_ALIAS_LIMIT, storage.WINDOW = 0, 3  # force the big-tensor path
    try:
        result = aliasing(a, b)
    finally:
        storage.EXACT_ALIAS_LIMIT, storage.WINDOW = old
    if result.overlap is not None and result.same_storage:
        assert result.overlap == bool(shared), result


@SETTINGS
@given(st.data())
def test_view_failure_and_reshape_copies_agree_with_torch(data) -> None:
    _, t = random_view(data)
    n = t.numel()
    targets = [(-1,), (n,), tuple(reversed(t.shape)), (1, -1)]
    if n and n % 2 == 0:
        targets.append((2, n // 2))
    target = data.draw(st.sampled_from(targets))
    expected = view_failure(t, target)
    try:
        t.view(target)
        torch_error = None
    except RuntimeError as exc:
        torch_error = str(exc)
    assert (expected is None) == (torch_error is None)
    if torch_error is not None:
        assert expected in torch_error
        if "invalid for input" in torch_error:
            return
    out = t.reshape(target)
    shares = out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
    if t.untyped_storage().nbytes():
        assert reshape_copies(t, target) == (not shares)


@pytest.mark.parametrize("dtype", [
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.uint16, torch.uint32, torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.complex64, torch.complex128,
    *[getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n)],
])
def test_every_dtype_values_and_layout(dtype) -> None:
    x = torch.arange(12).reshape(3, 4).to(dtype)
    t = x.T[1:, ::2]
    layout = layout_of(t)
    assert layout.itemsize == x.element_size() and layout.dtype == str(dtype).removeprefix("torch.")
    expected = t.reshape(-1)
    if dtype in (torch.bfloat16, torch.float16) or "float8" in str(dtype):
        expected = expected.float()
    if dtype in (torch.uint16, torch.uint32):
        expected = expected.to(torch.int64)
    assert storage.value_window(t) == expected.tolist()
    assert storage.value_window(t, 1, 2) == expected.tolist()[1:3]


def _factorisations(n: int, dims: int, data) -> list[int]:
    """A random shape of ``dims`` sizes whose product is n (sizes of 1 included)."""
    shape = []
    left = n
    for _ in range(dims - 1):
        divisors = [d for d in range(1, left + 1) if left % d == 0]
        size = data.draw(st.sampled_from(divisors))
        shape.append(size)
        left //= size
    return shape + [left]


@SETTINGS
@given(st.data())
def test_view_blocker_says_why_exactly_when_torch_refuses_the_view(data) -> None:
    # The plain reason the Storage console gives for a failed view() agrees with torch: a
    # sentence for every shape torch refuses, none for a shape it accepts.
    from tensorscope.view_rule import view_blocker

    dims = data.draw(st.integers(1, 4))
    sizes = [data.draw(st.integers(1, 4)) for _ in range(dims)]
    strides = [data.draw(st.integers(0, 24)) for _ in range(dims)]
    n = 1
    for s in sizes:
        n *= s
    target = _factorisations(n, data.draw(st.integers(1, 4)), data)
    t = torch.empty(0, device="meta").as_strided(sizes, strides)
    refused = view_failure(t, tuple(target)) is not None
    reason = view_blocker(sizes, strides, target)
    assert (reason is not None) == refused, (sizes, strides, target, reason)


def test_view_blocker_names_the_transpose_s_dims() -> None:
    from tensorscope.view_rule import view_blocker

    t = torch.arange(12.).reshape(3, 4).T
    assert view_blocker(t.shape, t.stride(), (12,)) == (
        "the new shape merges dim 0 with dim 1, and they are not one evenly spaced run of "
        "storage: dim 1 covers 3 elements at stride 4, so dim 0 would need stride 12; its "
        "stride is 1")
    assert view_blocker(t.shape, t.stride(), (4, 3)) is None
    assert view_blocker(t.shape, t.stride(), (2, 2, 3)) is None  # splitting a dim is free
