"""Rank-aware reading of step records: per-rank figures, mean loss, stragglers, param sync.

All on hand-made records, so each rule is checked against numbers we chose."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorscope.rank_stats import (
    compare_checksums,
    find_all_stragglers,
    find_stragglers,
    mean_loss_by_step,
    param_checksum,
    per_rank,
    summarize,
)
from tensorscope.telemetry import StepRecord


def rec(rank, step, **kw):
    return StepRecord(step=step, rank=rank, **kw)


def test_per_rank_takes_medians_and_last_memory():
    records = []
    for step in range(5):
        records.append(rec(0, step, step_time_s=0.1, samples_per_s=160.0,
                           memory={"kind": "cpu-rss", "rss": 1000 + step}))
        records.append(rec(1, step, step_time_s=0.2 if step != 2 else 9.0, samples_per_s=80.0,
                           memory={"kind": "cuda", "allocated": 50, "reserved": 64, "peak": 70}))
    figs = per_rank(records)
    assert sorted(figs) == [0, 1]
    assert figs[0].step_time_s == 0.1 and figs[0].memory_bytes == 1004
    assert figs[0].memory_kind == "cpu-rss"
    # One 9 s outlier does not move a median of five.
    assert figs[1].step_time_s == 0.2 and figs[1].samples_per_s == 80.0
    assert figs[1].memory_bytes == 50 and figs[1].peak_bytes == 70
    assert figs[1].steps == 5 and figs[1].last_step == 4


def test_records_without_rank_or_eval_are_left_out():
    records = [rec(None, 0, loss=5.0), rec(0, 0, loss=1.0), rec(0, 0, loss=7.0, phase="eval")]
    assert mean_loss_by_step(records)[0].loss == 1.0
    assert list(per_rank(records)) == [0]


def test_mean_loss_over_ranks_per_step():
    records = [rec(0, 0, loss=1.0), rec(1, 0, loss=3.0), rec(0, 1, loss=0.5)]
    points = mean_loss_by_step(records)
    assert [(p.step, p.loss, p.ranks) for p in points] == [(0, 2.0, 2), (1, 0.5, 1)]


def test_nan_loss_on_one_rank_makes_the_step_nan():
    points = mean_loss_by_step([rec(0, 0, loss=1.0), rec(1, 0, loss=float("nan"))])
    assert math.isnan(points[0].loss)


def _timed(times_by_rank, steps=40, metric="step_time_s"):
    return [rec(r, s, **{metric: f(s)}) for s in range(steps) for r, f in times_by_rank.items()]


def test_consistently_slow_rank_is_a_straggler():
    records = _timed({0: lambda s: 0.10, 1: lambda s: 0.13, 2: lambda s: 0.10 + 0.001 * (s % 3)})
    found = find_stragglers(records)
    assert [s.rank for s in found] == [1]
    assert found[0].ratio > 1.2 and found[0].slow_windows == found[0].windows == 4
    assert "rank 1" in found[0].describe()


def test_slow_in_only_one_window_is_not_a_straggler():
    # Rank 1 slow for steps 0-9 only: one window of four, not "consistently".
    records = _timed({0: lambda s: 0.1, 1: lambda s: 0.3 if s < 10 else 0.1})
    assert find_stragglers(records) == []


def test_within_threshold_and_too_few_windows_are_not_stragglers():
    assert find_stragglers(_timed({0: lambda s: 0.10, 1: lambda s: 0.11})) == []
    assert find_stragglers(_timed({0: lambda s: 0.1, 1: lambda s: 0.5}, steps=20)) == []
    assert find_stragglers(_timed({0: lambda s: 0.1}, steps=40)) == []


def test_tiny_absolute_gaps_are_noise():
    records = _timed({0: lambda s: 1e-5, 1: lambda s: 5e-5}, metric="data_time_s")
    assert find_all_stragglers(records) == []


def test_straggler_seen_in_data_wait_when_step_times_even_out():
    # Synchronous DDP: the step period is the same everywhere; rank 0 waits on its loader.
    records = [rec(r, s, step_time_s=0.2, data_time_s=0.08 if r == 0 else 0.01)
               for s in range(30) for r in (0, 1)]
    found = find_all_stragglers(records)
    assert [(s.rank, s.metric) for s in found] == [(0, "data_time_s")]


def test_checksum_is_on_device_and_matches_a_direct_sum():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    value = param_checksum(model.parameters())
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float64
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    assert torch.allclose(value, torch.stack((flat.sum(), (flat * flat).sum())))
    assert param_checksum([torch.zeros(0), torch.arange(3)]) is None


def test_checksum_moves_when_one_parameter_moves():
    model = torch.nn.Linear(4, 3)
    before = param_checksum(model.parameters()).tolist()
    with torch.no_grad():
        model.bias[0] += 1e-3
    assert param_checksum(model.parameters()).tolist() != before


def _sync(step, rank, checksum):
    return rec(rank, step, signals={"param_checksum": checksum})


def test_sync_comparator_flags_only_diverged_steps():
    records = [
        _sync(0, 0, [1.5, 2.25]), _sync(0, 1, [1.5, 2.25]),
        _sync(1, 0, [1.6, 2.5]), _sync(1, 1, [1.6, 2.5 * (1 + 1e-9)]),  # float noise: fine
        _sync(2, 0, [1.7, 2.9]), _sync(2, 1, [1.7001, 2.9]),
        _sync(3, 0, [1.8, 3.0]),  # only one rank: nothing to compare
    ]
    report = compare_checksums(records)
    assert report.checked_steps == 3
    assert [m.step for m in report.mismatches] == [2]
    assert report.in_sync is False and report.first_divergence == 2
    assert "step 2" in report.mismatches[0].describe()


def test_sync_unknown_without_checksums_and_nan_on_both_ranks_agrees():
    assert compare_checksums([rec(0, 0), rec(1, 0)]).in_sync is None
    nan = float("nan")
    assert compare_checksums([_sync(0, 0, [nan, nan]), _sync(0, 1, [nan, nan])]).in_sync is True
    assert compare_checksums([_sync(0, 0, [1.0, nan]), _sync(0, 1, [1.0, 1.0])]).in_sync is False


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=6),
       st.integers(2, 5))
def test_identical_checksums_always_agree(values, world):
    records = [_sync(0, r, values) for r in range(world)]
    assert compare_checksums(records).in_sync is True


def test_summarize_puts_it_together():
    records = [rec(r, s, loss=1.0 + r, step_time_s=0.1, signals={"param_checksum": [1.0, 1.0]})
               for s in range(3) for r in (0, 1)]
    summary = summarize(records + [rec(None, 0, loss=99.0)])
    assert summary.ranks == [0, 1]
    assert [p.loss for p in summary.loss] == [1.5, 1.5, 1.5]
    assert summary.sync.in_sync is True and summary.stragglers == []
