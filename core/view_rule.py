"""Why ``.view(shape)`` fails, said in the tensor's own sizes and strides.

PyTorch's message ("view size is not compatible with input tensor's size and stride (at
least one dimension spans across two contiguous subspaces)") is exact and opaque. The rule
behind it: ``view`` never moves data, so every dimension of the new shape has to walk an
evenly spaced run of storage cells. Source dimensions can be merged into one new dimension
only where the outer one steps exactly over the whole inner block (``stride[d] ==
size[d + 1] * stride[d + 1]``). :func:`view_blocker` follows the same walk PyTorch does
(innermost dimension first, one chunk of mergeable dimensions at a time) and names the two
dimensions the new shape would have to merge across such a break.
"""

from __future__ import annotations

import math
from typing import Sequence


def view_blocker(sizes: Sequence[int], strides: Sequence[int],
                 target: Sequence[int]) -> str | None:
    """A plain sentence on why a tensor of these sizes and strides cannot be viewed as
    ``target`` (a shape with the same number of elements, -1 already resolved); None when
    the view works."""
    sizes, strides, target = list(sizes), list(strides), list(target)
    if math.prod(sizes) != math.prod(target):
        return None  # not a layout question: the element counts differ
    if math.prod(sizes) == 0 or not sizes:
        return None  # an empty tensor or a scalar views as anything of its size
    view_d = len(target) - 1
    base = strides[-1]
    chunk = 1  # elements in the current chunk of mergeable source dims
    viewed = 1  # elements the target dims taken so far cover
    chunk_end = len(sizes) - 1
    for d in range(len(sizes) - 1, -1, -1):
        chunk *= sizes[d]
        if d == 0 or (sizes[d - 1] != 1 and strides[d - 1] != chunk * base):
            # The chunk ends here: the target dims must cover exactly its elements.
            while view_d >= 0 and (viewed < chunk or target[view_d] == 1):
                viewed *= target[view_d]
                view_d -= 1
            if viewed != chunk:  # (never at d == 0: equal counts close the last chunk)
                return _sentence(strides, d, chunk_end, chunk, base)
            if d > 0:
                base, chunk, viewed, chunk_end = strides[d - 1], 1, 1, d - 1
    return None


def resolve_shape(shape: Sequence[int], numel: int) -> tuple[int, ...]:
    """``shape`` with a -1 replaced by the size that makes ``numel`` elements (as view does)."""
    known = math.prod(s for s in shape if s != -1)
    return tuple((numel // known if known else 0) if s == -1 else s for s in shape)


def _sentence(strides: list[int], d: int, chunk_end: int, chunk: int, base: int) -> str:
    """The new shape needs dim ``d - 1`` merged with the chunk ``d..chunk_end``."""
    outer = d - 1
    inner, covers = (f"dim {d}", "covers") if chunk_end == d else (f"dims {d}-{chunk_end}", "cover")
    return (f"the new shape merges dim {outer} with {inner}, and they are not one evenly "
            f"spaced run of storage: {inner} {covers} {chunk} elements at stride {base}, so "
            f"dim {outer} would need stride {chunk * base}; its stride is {strides[outer]}")
