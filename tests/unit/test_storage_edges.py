"""tensorscope.storage on the tensors that break naive tools: 0-dim, empty, meta, huge,
other layouts, and values that are not tensors at all."""

from __future__ import annotations

import json

import pytest
import torch

from tensorscope.errors import UserError
from tensorscope.storage import (aliasing, layout_of, reads_cells, reshape_copies, storage_indices,
                                 value_window, view_failure)
from tensorscope.viewfix import explain_view


def test_zero_dim_tensor() -> None:
    x = torch.arange(5.)[3]
    layout = layout_of(x)
    assert layout.shape == () and layout.storage_offset == 3 and layout.numel == 1
    assert storage_indices(x).tolist() == [3]
    assert value_window(x) == [3.0]
    assert layout.arithmetic(()) == "3 = 3"


def test_empty_tensor() -> None:
    x = torch.empty(0, 3)
    layout = layout_of(x)
    assert layout.numel == 0 and layout.span is None and layout.storage_size == 0
    assert storage_indices(x).tolist() == [] and value_window(x) == []
    assert layout.to_json()["storage_indices"] == []


def test_meta_tensor_has_layout_but_no_values() -> None:
    x = torch.empty(3, 4, device="meta").T
    layout = layout_of(x)
    assert not layout.has_data and layout.strides == (1, 4)
    assert layout.indices().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert view_failure(x, (12,)) is not None
    with pytest.raises(UserError, match="no values"):
        value_window(x)
    json.dumps(layout.to_json())


@pytest.mark.parametrize("make, words", [
    (lambda: torch.ones(3).to_sparse(), "sparse_coo tensors are not supported yet"),
    (lambda: torch.ones(2, 2).to_sparse_csr(), "sparse_csr tensors are not supported yet"),
    (lambda: torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8), "quantized tensors are not supported yet"),
    (lambda: 3, "is an int, not a tensor"),
    (lambda: [1, 2], "is a list, not a tensor"),
])
def test_unsupported_values_are_one_clear_line(make, words) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = make()
    with pytest.raises(UserError, match=words) as info:
        layout_of(value)
    assert "\n" not in str(info.value)


def test_huge_tensor_is_only_read_in_windows() -> None:
    # 1e8 logical elements over a single cell: nothing may materialise all indices.
    x = torch.zeros(1).expand(10_000, 10_000)
    layout = layout_of(x)
    assert layout.numel == 10**8 and layout.expanded_dims == (0, 1)
    assert layout.to_json()["storage_indices"] is None
    assert storage_indices(x, 5 * 10**7, 4).tolist() == [0, 0, 0, 0]
    y = torch.arange(12).expand(10**7, 12)
    assert value_window(y, 12 * 10**6 + 5, 3) == [5, 6, 7]


def test_window_positions_match_arithmetic() -> None:
    x = torch.arange(60).reshape(3, 4, 5).permute(2, 0, 1)[1:, :, ::2]
    layout = layout_of(x)
    for pos in range(x.numel()):
        multi = layout.unravel(pos)
        assert layout.index_of(multi) == storage_indices(x, pos, 1).item() == x[multi].item()


def test_aliasing_across_dtypes_counts_bytes() -> None:
    x = torch.zeros(4, dtype=torch.float64)
    y = x.view(torch.int32)[1:3]  # bytes 4..11: half of cell 0 and half of cell 1
    result = aliasing(x[1:], y)
    assert result.same_storage and result.overlap and result.shared_bytes == 4
    assert not aliasing(x[2:], y).overlap


def test_reads_cells_on_a_big_nested_layout() -> None:
    x = torch.zeros(3000, 3000)[:, 7]
    hit = reads_cells(x, torch.arange(0, 6010))
    assert hit.nonzero().flatten().tolist() == [7, 3007, 6007]


def test_reshape_copies_and_bad_shapes() -> None:
    x = torch.arange(12).reshape(3, 4)
    assert not reshape_copies(x, (4, 3)) and reshape_copies(x.T, (12,))
    with pytest.raises(UserError, match="impossible"):
        reshape_copies(x, (5,))
    assert "invalid for input of size 12" in view_failure(x, (5,))


def test_explain_view_measures_the_fixes() -> None:
    ns = {"torch": torch}
    ns["x"] = torch.arange(12.).reshape(3, 4)
    ns["t"] = ns["x"].T
    fix = explain_view("flat = t.view(12)", ns)
    assert fix is not None and fix.receiver == "t" and fix.shape == (12,)
    assert fix.reshape_copied and fix.contiguous_copied and fix.measured
    assert "view size is not compatible" in fix.error
    assert fix.why is not None and "dim 0 would need stride 12; its stride is 1" in fix.why
    assert fix.lines()[1] == "why: " + fix.why
    assert explain_view("flat = t.view(2, -1)", ns).why is not None  # -1 resolved first
    assert explain_view("flat = x.view(12)", ns) is None  # that view works
    assert explain_view("x.view(5)", ns) is None  # a wrong shape, not a layout problem
    # A receiver that calls user code is never evaluated twice.
    ns["calls"] = []
    ns["f"] = lambda: ns["calls"].append(1) or ns["t"]
    assert explain_view("f().view(12)", ns) is None and ns["calls"] == []


def test_element_reading_inverts_the_storage_map() -> None:
    from tensorscope.storage import element_reading

    x = torch.arange(12.).reshape(3, 4)
    assert element_reading(x.T, 6) == (2, 1) and element_reading(x[:, 1], 6) is None
    assert element_reading(torch.zeros(3).expand(4, 3), 2) == (0, 2)
    big = torch.empty(10_000, 10_000, device="meta")[:, 3:].T  # 1e8-scale: division, not search
    pos = element_reading(big, 20_003)
    assert pos == (0, 2) and big.stride(0) * pos[0] + big.stride(1) * pos[1] + big.storage_offset() == 20_003
