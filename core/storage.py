"""How a tensor's elements sit in its storage: the layout of any strided tensor.

A tensor is a window onto a flat storage: element ``(i0, i1, ...)`` reads storage cell
``storage_offset + Σ iₖ·strideₖ``. :func:`layout_of` captures everything that decides that
map (shape, strides, offset, dtype, the storage it points into, the tensor it is a view of)
in a frozen :class:`TensorLayout`. Everything here is computed with torch and windowed, so a
1e8-element tensor never materialises all of its indices, and a CUDA tensor only fetches the
values of the window asked for.

>>> import torch
>>> x = torch.arange(12.).reshape(3, 4)
>>> layout_of(x.T).strides
(1, 4)
>>> storage_indices(x.T).tolist()
[0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from tensorscope.errors import UserError, one_line

#: ``storage_indices`` goes into JSON up to this many elements.
JSON_INDEX_LIMIT = 10_000
#: Aliasing is decided with explicit index sets up to this many elements per tensor.
EXACT_ALIAS_LIMIT = 2_000_000
#: Window size used when scanning big tensors.
WINDOW = 1 << 20

MEMORY_FORMATS: dict[str, torch.memory_format] = {
    "contiguous": torch.contiguous_format,
    "channels_last": torch.channels_last,
    "channels_last_3d": torch.channels_last_3d,
}
# channels_last is only defined for 4-d tensors, channels_last_3d for 5-d ones.
_FORMAT_NDIM = {"channels_last": 4, "channels_last_3d": 5}


def check_supported(t: Any, what: str = "the value") -> torch.Tensor:
    """Return ``t`` if it is a strided tensor tensorscope can lay out, else raise UserError."""
    if not isinstance(t, torch.Tensor):
        kind = type(t).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise UserError(f"{what} is {article} {kind}, not a tensor")
    if getattr(t, "is_nested", False):
        raise UserError("nested tensors are not supported yet (their storage is not one strided window)")
    if t.layout != torch.strided:
        kind = str(t.layout).removeprefix("torch.")
        raise UserError(f"{kind} tensors are not supported yet (only strided tensors have one storage map); "
                        "try .to_dense()")
    if t.is_quantized:
        raise UserError("quantized tensors are not supported yet; try .dequantize()")
    try:
        t.untyped_storage()
    except (RuntimeError, NotImplementedError) as exc:  # wrapper/functional tensors
        raise UserError(f"this {type(t).__name__} has no storage tensorscope can read "
                        f"(not supported yet): {one_line(exc)}") from None
    return t


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def indices_for(shape: Sequence[int], strides: Sequence[int], offset: int,
                start: int = 0, count: int | None = None, device: Any = "cpu") -> torch.Tensor:
    """Storage index of the logical elements ``start .. start+count`` (row-major), as int64.

    The window's flat positions are unravelled into multi-indices dim by dim (last dim
    fastest), and each ``iₖ·strideₖ`` is added to ``offset`` — all with torch ops on the
    window only, so the cost is the window's size, not the tensor's.
    """
    numel = math.prod(shape)
    start = max(0, min(int(start), numel))
    stop = numel if count is None else max(start, min(numel, start + int(count)))
    flat = torch.arange(start, stop, dtype=torch.int64, device=device)
    if not shape:  # 0-dim: one element, at the offset
        return flat + offset
    result = torch.full_like(flat, offset)
    rest = flat
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size == 0:
            return flat[:0]
        result += (rest % size) * stride
        rest = rest // size
    return result


def indices_at(shape: Sequence[int], strides: Sequence[int], offset: int,
               positions: torch.Tensor) -> torch.Tensor:
    """Storage index of the elements at arbitrary row-major ``positions`` (an int64 tensor)."""
    result = torch.full_like(positions, offset)
    rest = positions
    for size, stride in zip(reversed(shape), reversed(strides)):
        result += (rest % max(size, 1)) * stride
        rest = rest // max(size, 1)
    return result


def _unravel(position: int, shape: Sequence[int]) -> tuple[int, ...]:
    out = []
    for size in reversed(shape):
        out.append(position % size if size else 0)
        position = position // size if size else 0
    return tuple(reversed(out))


@dataclass(frozen=True)
class TensorLayout:
    """Everything that decides where a tensor's elements live in its storage."""

    name: str | None
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    storage_offset: int
    dtype: str
    itemsize: int
    device: str
    numel: int
    storage_size: int
    """Elements of this dtype the storage holds (its bytes // itemsize)."""
    storage_nbytes: int
    data_ptr: int
    storage_ptr: int
    has_data: bool
    """False for meta tensors: a layout, but no values to read."""
    formats: tuple[tuple[str, bool], ...]
    """(memory format name, is contiguous in it) for each format that applies to the rank."""
    is_view: bool
    expanded_dims: tuple[int, ...]
    """Dims with stride 0 and size > 1: many elements read one cell (``expand``)."""
    span: tuple[int, int] | None
    """Lowest and highest storage index any element reads (None when empty)."""
    base: "TensorLayout | None" = None
    shares_storage_with_base: bool = False

    # ---- derived facts -------------------------------------------------------------
    @property
    def is_contiguous(self) -> bool:
        return dict(self.formats)["contiguous"]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def covers_whole_storage(self) -> bool:
        return self.span is not None and self.span == (0, self.storage_size - 1) and \
            self.numel == self.storage_size

    def indices(self, start: int = 0, count: int | None = None) -> torch.Tensor:
        """Storage indices of a window of logical elements (see :func:`indices_for`)."""
        return indices_for(self.shape, self.strides, self.storage_offset, start, count)

    def index_of(self, position: Sequence[int]) -> int:
        """Storage index of one element, from its multi-index."""
        return self.storage_offset + sum(i * s for i, s in zip(position, self.strides))

    def arithmetic(self, position: Sequence[int]) -> str:
        """The sum, spelled out: ``offset + Σ iₖ·strideₖ = n``."""
        terms = " + ".join(f"{i}·{s}" for i, s in zip(position, self.strides))
        lhs = f"{self.storage_offset} + {terms}" if terms else f"{self.storage_offset}"
        return f"{lhs} = {self.index_of(position)}"

    def unravel(self, position: int) -> tuple[int, ...]:
        """Multi-index of the element at row-major position ``position``."""
        return _unravel(position, self.shape)

    def to_json(self, *, index_limit: int = JSON_INDEX_LIMIT) -> dict[str, Any]:
        """A JSON-ready dict (``storage_indices`` up to ``index_limit`` elements, else null)."""
        fits = self.numel <= index_limit
        return {
            "name": self.name,
            "shape": list(self.shape),
            "strides": list(self.strides),
            "storage_offset": self.storage_offset,
            "dtype": self.dtype,
            "itemsize": self.itemsize,
            "device": self.device,
            "numel": self.numel,
            "is_contiguous": self.is_contiguous,
            "contiguous_formats": {name: ok for name, ok in self.formats},
            "storage_size": self.storage_size,
            "storage_nbytes": self.storage_nbytes,
            "data_ptr": self.data_ptr,
            "has_data": self.has_data,
            "is_view": self.is_view,
            "expanded_dims": list(self.expanded_dims),
            "span": list(self.span) if self.span is not None else None,
            "storage_indices": self.indices().tolist() if fits else None,
            "storage_indices_omitted": None if fits else
                f"{self.numel} elements is over the limit of {index_limit}",
            "base": self.base.to_json(index_limit=index_limit) if self.base is not None else None,
            "shares_storage_with_base": self.shares_storage_with_base,
        }


def storage_key(t: torch.Tensor) -> tuple[str, int]:
    """What tells two tensors' storages apart: the data address on real devices, the
    storage object itself where there is no data (meta, or zero bytes)."""
    storage = t.untyped_storage()
    if t.device.type != "meta" and storage.nbytes() > 0:
        return (str(t.device), storage.data_ptr())
    return ("object", storage._cdata)


def same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return storage_key(a) == storage_key(b)


def _span(shape: Sequence[int], strides: Sequence[int], offset: int) -> tuple[int, int] | None:
    if any(s == 0 for s in shape):
        return None
    lo = offset + sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    hi = offset + sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
    return (lo, hi)


def layout_of(t: Any, name: str | None = None, *, _with_base: bool = True) -> TensorLayout:
    """The layout of a strided tensor (meta tensors included: layout without data)."""
    t = check_supported(t)
    shape = tuple(t.shape)
    strides = tuple(t.stride())
    offset = t.storage_offset()
    itemsize = t.element_size()
    storage = t.untyped_storage()
    nbytes = storage.nbytes()
    has_data = t.device.type != "meta"
    formats = []
    for fmt_name, fmt in MEMORY_FORMATS.items():
        need = _FORMAT_NDIM.get(fmt_name)
        if need is None or t.dim() == need:
            formats.append((fmt_name, bool(t.is_contiguous(memory_format=fmt))))
    base_tensor = t._base
    base = None
    shares = False
    if base_tensor is not None and _with_base:
        base = layout_of(base_tensor, _with_base=True)
        shares = same_storage(t, base_tensor)
    return TensorLayout(
        name=name,
        shape=shape,
        strides=strides,
        storage_offset=offset,
        dtype=dtype_name(t.dtype),
        itemsize=itemsize,
        device=str(t.device),
        numel=t.numel(),
        storage_size=nbytes // itemsize if itemsize else 0,
        storage_nbytes=nbytes,
        data_ptr=t.data_ptr() if has_data else 0,
        storage_ptr=storage.data_ptr() if has_data else 0,
        has_data=has_data,
        formats=tuple(formats),
        is_view=base_tensor is not None,
        expanded_dims=tuple(d for d, (n, s) in enumerate(zip(shape, strides)) if s == 0 and n > 1),
        span=_span(shape, strides, offset),
        base=base,
        shares_storage_with_base=shares,
    )


def storage_indices(t: torch.Tensor, start: int = 0, count: int | None = None) -> torch.Tensor:
    """Storage index each element of a window reads, row-major over the logical shape."""
    t = check_supported(t)
    return indices_for(tuple(t.shape), tuple(t.stride()), t.storage_offset(), start, count)


# ---- aliasing ------------------------------------------------------------------------
@dataclass(frozen=True)
class Aliasing:
    """Do two tensors share memory, and do they read any of the same bytes?"""

    same_storage: bool
    overlap: bool | None
    """True/False when decided; None when it could not be decided exactly (see ``method``)."""
    shared_bytes: int | None
    """How many storage bytes both read (when counted exactly)."""
    method: str
    """How it was decided: "different storage", "disjoint spans", "index sets", "windowed"
    or "spans only" (big, irregular layouts: the spans intersect, cells may not)."""

    def to_json(self) -> dict[str, Any]:
        return {"same_storage": self.same_storage, "overlap": self.overlap,
                "shared_bytes": self.shared_bytes, "method": self.method}


def _byte_span(t: torch.Tensor) -> tuple[int, int] | None:
    span = _span(tuple(t.shape), tuple(t.stride()), t.storage_offset())
    if span is None:
        return None
    size = t.element_size()
    return span[0] * size, span[1] * size + size - 1


def _byte_cells(t: torch.Tensor, start: int = 0, count: int | None = None) -> torch.Tensor:
    """The storage bytes a window of elements reads (unique, sorted)."""
    idx = storage_indices(t, start, count)
    size = t.element_size()
    cells = (idx.unsqueeze(1) * size + torch.arange(size)).reshape(-1)
    return torch.unique(cells)


def _nested_dims(t: torch.Tensor) -> list[tuple[int, int]] | None:
    """(size, stride) of the dims, largest stride first, if each stride exceeds the reach of
    all smaller ones — then every storage index has at most one multi-index, found greedily."""
    dims = sorted(((n, s) for n, s in zip(t.shape, t.stride()) if n > 1), key=lambda d: -d[1])
    if any(s <= 0 for _, s in dims):
        return None
    reach = 0
    for n, s in reversed(dims):
        if s <= reach:
            return None
        reach += (n - 1) * s
    return dims


def _members(t: torch.Tensor, dims: list[tuple[int, int]], cells: torch.Tensor) -> torch.Tensor:
    """Which element-index ``cells`` (of t's dtype) t reads, for a nested layout."""
    rest = cells - t.storage_offset()
    ok = rest >= 0
    for n, s in dims:
        q = torch.div(rest, s, rounding_mode="floor").clamp(0, n - 1)
        rest = rest - q * s
    return ok & (rest == 0)


def aliasing(a: Any, b: Any) -> Aliasing:
    """Whether ``a`` and ``b`` share a storage and read any common bytes of it."""
    a, b = check_supported(a, "the first value"), check_supported(b, "the second value")
    if not same_storage(a, b):
        return Aliasing(False, False, 0, "different storage")
    sa, sb = _byte_span(a), _byte_span(b)
    if sa is None or sb is None or sa[1] < sb[0] or sb[1] < sa[0]:
        return Aliasing(True, False, 0, "disjoint spans")
    if a.device.type == "meta":
        return Aliasing(True, None, None, "spans only")
    if a.numel() <= EXACT_ALIAS_LIMIT and b.numel() <= EXACT_ALIAS_LIMIT:
        ca, cb = _byte_cells(a), _byte_cells(b)
        shared = int(torch.isin(ca, cb).sum())
        return Aliasing(True, shared > 0, shared, "index sets")
    # Big: walk one tensor in windows and test each cell for membership in the other,
    # which is exact when the other's layout maps each cell to at most one element.
    if a.element_size() == b.element_size():
        for walk, other in ((a, b), (b, a)):
            dims = _nested_dims(other)
            if dims is None:
                continue
            for start in range(0, walk.numel(), WINDOW):
                idx = storage_indices(walk, start, WINDOW)
                if bool(_members(other, dims, idx).any()):
                    return Aliasing(True, True, None, "windowed")
            return Aliasing(True, False, 0, "windowed")
    return Aliasing(True, None, None, "spans only")


# ---- view and reshape ----------------------------------------------------------------
def _meta_twin(t: torch.Tensor) -> torch.Tensor:
    """A meta tensor with t's sizes, strides and offset: torch's own checks, no data."""
    return torch.empty(0, dtype=t.dtype, device="meta").as_strided(
        tuple(t.shape), tuple(t.stride()), t.storage_offset())


def _shape_arg(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int):
        return (shape,)
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise UserError(f"{shape!r} is not a shape (give a tuple of ints)") from None


def view_failure(t: Any, shape: Any) -> str | None:
    """PyTorch's own error for ``t.view(shape)``, in one line; None if the view works.

    Asked of a meta twin, so no data is touched and no copy is made.
    """
    t = check_supported(t)
    try:
        _meta_twin(t).view(_shape_arg(shape))
    except RuntimeError as exc:
        return one_line(exc).removeprefix("RuntimeError: ")
    return None


def reshape_copies(t: Any, shape: Any) -> bool:
    """Whether ``t.reshape(shape)`` copies (it does exactly when ``view`` cannot)."""
    t = check_supported(t)
    target = _shape_arg(shape)
    try:
        _meta_twin(t).reshape(target)
    except RuntimeError as exc:
        raise UserError(f"reshape to {target} is impossible: {one_line(exc)}") from None
    return view_failure(t, target) is not None


# ---- values --------------------------------------------------------------------------
def gather(t: Any, positions: torch.Tensor) -> tuple[list[int], list[Any]]:
    """Storage indices and values of the elements at row-major ``positions``: one gather on
    the tensor's device and one fetch, whatever the tensor's size (used to draw a window)."""
    t = check_supported(t)
    idx = indices_at(tuple(t.shape), tuple(t.stride()), t.storage_offset(), positions)
    if t.device.type == "meta":
        return idx.tolist(), [None] * idx.numel()
    return idx.tolist(), read_cells(t, idx)


def read_cells(t: torch.Tensor, idx: torch.Tensor) -> list[Any]:
    """Values of storage cells ``idx`` (in units of t's dtype), gathered on t's device."""
    if idx.numel() == 0:
        return []
    if t.device.type == "meta":
        return [None] * idx.numel()
    idx = idx.to(t.device)
    storage_size = t.untyped_storage().nbytes() // t.element_size()
    flat = t.detach().as_strided((storage_size,), (1,), 0)  # detached: no autograd graph
    if t.dtype in _UNSIGNED_WIDE:
        # index_select has no kernel for uint16/32/64: gather the raw bits as a signed
        # integer of the same width, then read them back as unsigned in Python.
        bits = 8 * t.element_size()
        raw = flat.detach().view(_SIGNED_BY_SIZE[t.element_size()]).index_select(0, idx)
        return [v % (1 << bits) for v in raw.cpu().tolist()]
    window = flat.detach().index_select(0, idx)
    if (window.dtype.is_floating_point and window.element_size() < 2) or window.dtype == torch.bfloat16:
        window = window.float()  # float8 / bfloat16: Python floats hold them exactly
    return window.cpu().tolist()


def value_window(t: Any, start: int = 0, count: int | None = None) -> list[Any]:
    """Python values of the logical elements ``start .. start+count`` (row-major).

    Only the window is gathered (on the tensor's device) and fetched; dtypes Python
    cannot hold directly (float8, bfloat16) are widened first. Meta tensors have none.
    """
    t = check_supported(t)
    if t.device.type == "meta":
        raise UserError("a meta tensor has a layout but no values")
    return read_cells(t, storage_indices(t, start, count))


_UNSIGNED_WIDE = tuple(getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n))
_SIGNED_BY_SIZE = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def reads_cells(t: Any, cells: torch.Tensor) -> torch.Tensor | None:
    """Which of the storage ``cells`` (in units of t's dtype) some element of ``t`` reads.

    Exact for tensors up to EXACT_ALIAS_LIMIT elements (index sets) and for any tensor
    whose layout maps each cell to at most one element (greedy division); None otherwise.
    """
    t = check_supported(t)
    if t.numel() == 0:
        return torch.zeros_like(cells, dtype=torch.bool)
    if t.numel() <= EXACT_ALIAS_LIMIT:
        return torch.isin(cells, storage_indices(t))
    dims = _nested_dims(t)
    if dims is None:
        return None
    span = _span(tuple(t.shape), tuple(t.stride()), t.storage_offset())
    inside = (cells >= span[0]) & (cells <= span[1])
    return inside & _members(t, dims, cells)


def element_reading(t: Any, cell: int) -> tuple[int, ...] | None:
    """The first element (row-major) of ``t`` that reads storage ``cell``, or None.

    Small tensors are searched directly; big ones are inverted by greedy division when
    their layout maps each cell to at most one element; otherwise None (not searched).
    """
    t = check_supported(t)
    shape, strides = tuple(t.shape), tuple(t.stride())
    if t.numel() == 0:
        return None
    if t.numel() <= EXACT_ALIAS_LIMIT:
        hits = (storage_indices(t) == cell).nonzero()
        return _unravel(int(hits[0]), shape) if hits.numel() else None
    dims = sorted(((d, n, s) for d, (n, s) in enumerate(zip(shape, strides)) if n > 1),
                  key=lambda x: -x[2])
    if _nested_dims(t) is None:
        return None
    rest = cell - t.storage_offset()
    position = [0] * len(shape)
    for d, n, s in dims:
        q = min(max(rest // s, 0), n - 1)
        position[d] = q
        rest -= q * s
    return tuple(position) if rest == 0 else None
