"""Comparing two checkpoints: keys in one only, shape/dtype changes, how far values moved."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorscope.checkpoint import open_checkpoint
from tensorscope.ckpt_diff import CHUNK, compare_values, diff_checkpoints
from tests import ckpt_factory as make


def test_diff_of_two_training_steps(tmp_path) -> None:
    a = open_checkpoint(make.adam_checkpoint(tmp_path / "a.pt", steps=1, epoch=1))
    b = open_checkpoint(make.adam_checkpoint(tmp_path / "b.pt", steps=3, epoch=3))
    diff = diff_checkpoints(a, b)
    changed = diff.by_status("changed")
    assert {r.key for r in changed} >= {"model.emb.weight", "model.fc1.weight", "optimizer.state.0.exp_avg"}
    rels = [r.rel_change for r in changed]
    assert rels == sorted(rels, reverse=True)
    row = next(r for r in changed if r.key == "model.fc1.weight")
    va, vb = a.values["model.fc1.weight"], b.values["model.fc1.weight"]
    assert row.max_abs_diff == pytest.approx((vb - va).abs().max().item(), rel=1e-6)
    assert row.rel_change == pytest.approx(((vb - va).norm() / va.norm()).item(), rel=1e-5)
    assert ("epoch", 1, 3) in diff.metadata
    assert not diff.by_status("only_a") and not diff.by_status("only_b")


def test_keys_shapes_and_dtypes(tmp_path) -> None:
    torch.save({"w": torch.ones(3), "gone": torch.zeros(1), "s": torch.ones(2, 2), "d": torch.ones(2)},
               tmp_path / "a.pt")
    torch.save({"w": torch.ones(3), "new": torch.zeros(1), "s": torch.ones(4), "d": torch.ones(2).half()},
               tmp_path / "b.pt")
    diff = diff_checkpoints(open_checkpoint(tmp_path / "a.pt"), open_checkpoint(tmp_path / "b.pt"))
    status = {r.key: r.status for r in diff.rows}
    assert status == {"w": "same", "gone": "only_a", "new": "only_b", "s": "shape", "d": "dtype"}
    assert [r.key for r in diff.rows][-1] == "w"  # unchanged keys come last
    doc = diff.to_json()
    assert doc["only_in_a"] == ["gone"] and doc["only_in_b"] == ["new"]
    assert next(t for t in doc["tensors"] if t["key"] == "s")["shape_b"] == [4]


def test_zero_reference_is_infinite_relative_change() -> None:
    assert compare_values(torch.zeros(3), torch.ones(3)) == (1.0, math.inf)
    assert compare_values(torch.zeros(3), torch.zeros(3)) == (0.0, 0.0)


def test_windows_cover_the_whole_tensor() -> None:
    a = torch.zeros(CHUNK + 5)
    b = a.clone()
    b[-1] = 2.0  # the only change sits in the last, partial window
    assert compare_values(a, b)[0] == 2.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=50),
       st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=50))
def test_compare_matches_torch(xs, ys) -> None:
    n = min(len(xs), len(ys))
    a = torch.tensor(xs[:n], dtype=torch.float64)
    b = torch.tensor(ys[:n], dtype=torch.float64)
    max_abs, rel = compare_values(a, b)
    assert max_abs == pytest.approx((b - a).abs().max().item())
    if a.norm() > 0:
        assert rel == pytest.approx(((b - a).norm() / a.norm()).item(), rel=1e-9, abs=1e-12)
