"""Host-sync counting on sampled steps (core/syncs.py) and its use by watch() and the doctor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import tensorscope
from tensorscope.doctor import diagnose
from tensorscope.syncs import SAMPLE_FIRST, StepSyncs, SyncCounter, SyncSampler


def stack() -> list:
    return list(torch.overrides._get_current_function_mode_stack())


def loop(*, sync: str | None = "item", steps: int = 8, watched: bool = True, gap: int | None = None,
         scaler: bool = False, fail_at: int | None = None):
    """A seeded classifier loop; returns (losses as tensors, session or None)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fn = nn.CrossEntropyLoss()
    amp = torch.amp.GradScaler("cpu") if scaler else None
    losses: list[torch.Tensor] = []
    session = tensorscope.watch(model, opt, amp) if watched else None
    ctx = session if session is not None else _null()
    with ctx as s:
        if s is not None and gap is not None:
            s._syncs = StepSyncs(s.model, mean_gap=gap)
        for i in range(steps):
            x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
            opt.zero_grad()
            loss = fn(model(x), y)
            if amp is not None:
                amp.scale(loss).backward()
                amp.step(opt)
                amp.update()
            else:
                loss.backward()
                opt.step()
            if fail_at is not None and i == fail_at:
                raise RuntimeError("user error")
            losses.append(loss.detach())
            if sync == "item":
                loss.item()
            elif sync == "format":
                f"{loss:.4f}"
    return losses, s


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_item_every_step_is_named_and_fixed_loop_is_not() -> None:
    _, s = loop(sync="item")
    syncs = [r.signals["host_syncs"] for r in s.records]
    assert [syncs[i - 1] for i in SAMPLE_FIRST] == [1, 1, 1]
    assert syncs[0] is None and all(r.signals["host_syncs_sampled"] == (r.signals["host_syncs"] is not None)
                                    for r in s.records)
    assert "item-sync-in-loop" in {f.code for f in diagnose(s.records)}
    _, s = loop(sync=None)
    assert [s.records[i - 1].signals["host_syncs"] for i in SAMPLE_FIRST] == [0, 0, 0]
    assert "item-sync-in-loop" not in {f.code for f in diagnose(s.records)}
    assert s.errors == 0


def test_formatting_the_loss_is_a_sync() -> None:
    _, s = loop(sync="format", steps=5)
    assert [r.signals["host_syncs"] for r in s.records][1:4] == [1, 1, 1]


def test_losses_bit_identical_with_and_without_counting() -> None:
    bare, _ = loop(sync="item", watched=False)
    every, s = loop(sync="item", gap=1)  # every step counted
    assert all(r.signals["host_syncs"] == 1 for r in s.records[1:])
    assert [t.item() for t in bare] == [t.item() for t in every]
    assert all(torch.equal(a, b) for a, b in zip(bare, every))


def test_mode_stack_clean_after_exit_and_exception() -> None:
    loop(sync="item", gap=1)
    assert stack() == []
    with pytest.raises(RuntimeError, match="user error"):
        loop(sync="item", gap=1, fail_at=2)  # raised inside an open window
    assert stack() == []


def test_scaler_and_optimizer_internal_item_not_counted() -> None:
    # GradScaler.step reads found_inf with .item() and Adam its step count: torch's own reads.
    _, s = loop(sync=None, scaler=True, steps=5, gap=1)
    assert [r.signals["host_syncs"] for r in s.records[1:]] == [0, 0, 0, 0]


def test_counter_counts_each_host_copy_once() -> None:
    t, v = torch.tensor(1.5), torch.randn(3)
    counter = SyncCounter()
    assert counter.start()
    t.item(); v.tolist(); v.cpu(); v.numpy(); np.asarray(v)  # noqa: E702
    bool(t); float(t); int(t); f"{t:.2f}"; repr(v)  # noqa: E702
    v.to("cpu"); v.to(torch.float64); v + 1  # noqa: E702  (CPU->CPU copies nothing)
    assert counter.stop() == 10
    assert stack() == []


def test_someone_elses_mode_on_top_is_never_popped() -> None:
    counter = SyncCounter()
    theirs = TorchFunctionMode()
    assert counter.start()
    theirs.__enter__()           # the user's mode, entered in our window, left open past it
    assert counter.stop() is None and counter.errors == 1 and not counter.enabled
    assert stack()[-1] is theirs
    assert not counter.start()   # sampling stopped
    theirs.__exit__(None, None, None)
    counter.close()              # our stale mode is on top again: ours to remove
    assert stack() == []


def test_no_window_over_a_users_mode() -> None:
    counter = SyncCounter()
    with TorchFunctionMode():
        assert not counter.start()
    assert counter.errors == 0 and stack() == []


def test_sampler_first_steps_then_sparse_and_not_aligned_to_periodic_logging() -> None:
    sampler = SyncSampler(mean_gap=25)
    picked = [s for s in range(1, 2001) if sampler.sampled(s)]
    assert picked[:3] == list(SAMPLE_FIRST)
    assert 50 < len(picked) < 120                    # about one in 25
    for period in (5, 10, 25, 50):                   # logging .item() every `period` steps
        hit = sum(1 for s in picked if s % period == 0) / len(picked)
        assert hit < 0.8


def test_doctor_judges_only_the_sampled_steps() -> None:
    from tensorscope.telemetry import StepRecord

    def rec(i: int, syncs: int | None) -> StepRecord:
        return StepRecord(step=i, loss=1.0, signals={"host_syncs": syncs,
                                                     "host_syncs_sampled": syncs is not None})

    # 100 steps, 5 of them sampled: every sampled one synced -> named, with the evidence.
    sampled = {2, 3, 4, 30, 61}
    records = [rec(i, 1 if i in sampled else None) for i in range(1, 101)]
    found = {f.code: f for f in diagnose(records)}
    assert found["item-sync-in-loop"].evidence["steps_measured"] == 5
    assert found["item-sync-in-loop"].evidence["train_steps"] == 100
    # A per-epoch sync caught by one sample out of five is not a sync in the loop.
    records = [rec(i, (1 if i == 30 else 0) if i in sampled else None) for i in range(1, 101)]
    assert "item-sync-in-loop" not in {f.code for f in diagnose(records)}


def test_compiled_model_is_not_counted() -> None:
    model = nn.Linear(3, 1)
    model.compile(backend="eager")   # compiled in place: no window (it would recompile)
    syncs = StepSyncs(model, mean_gap=1)
    syncs.begin(2)
    assert not syncs.counter.active and syncs.signals()["host_syncs"] is None
    plain = StepSyncs(nn.Linear(3, 1), mean_gap=1)
    plain.begin(2)
    assert plain.counter.active and plain.signals()["host_syncs"] == 0 and stack() == []
