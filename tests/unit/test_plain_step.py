"""Plain steps under run: their records, built later off the training thread
(core/plain_step.py), are the ones the watch would have built at the step."""

from __future__ import annotations

import torch
import torch.nn as nn

from tensorscope.hooks import fetch_later
from tensorscope.plain_step import FIELDS, plain_record, settle
from tensorscope.runner import Instrumentation

# Measured, not computed: they differ between any two runs of the same loop.
_TIMING = {"wall_time", "step_time_s", "data_time_s", "compute_time_s", "samples_per_s", "memory"}
_TIMING_SIGNALS = {"overhead_s"}


def _train(steps: int, autocast: bool) -> list[float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                           {"params": model[2].parameters(), "lr": 0.05}])
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for epoch in range(2):  # noqa: B007 (read by run's instrumentation)
        for _ in range(steps // 2):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def _run(later: str, autocast: bool) -> tuple[list[dict], list[float], int]:
    """Step events of one instrumented run; ``later``: "off" (records built at the step)
    or "end" (builders called after the loop: any value changed after its capture would
    show). detail="steps" runs without a budget: the same steps take the norm each time."""
    events: list = []
    queued = []

    def emit_later(build):
        queued.append(build)
        events.append(build)

    instr = Instrumentation(__file__, events.append, detail="steps",
                            emit_later=None if later == "off" else emit_later)
    instr.install()
    try:
        losses = _train(24, autocast)
    finally:
        instr.finish()
    events = [e() if callable(e) else e for e in events]
    assert instr.hook_errors == 0
    return [e for e in events if e["type"] == "step"], losses, len(queued)


def _stable(event: dict) -> dict:
    out = {k: v for k, v in event.items() if k not in _TIMING}
    out["signals"] = {k: v for k, v in event["signals"].items() if k not in _TIMING_SIGNALS}
    return out


def test_records_built_later_equal_those_built_at_the_step() -> None:
    for autocast in (False, True):
        at_step, losses_a, none = _run("off", autocast)
        later, losses_b, queued = _run("end", autocast)
        assert none == 0 and queued >= 18  # all but the first steps went the plain way
        assert losses_a == losses_b == [e["loss"] for e in later]
        assert [_stable(e) for e in later] == [_stable(e) for e in at_step]
        assert [e["epoch"] for e in later] == [0] * 12 + [1] * 12
        assert all(e["grad_norm"] is not None for e in later)
        assert all(e["amp"] == ({"scale": None, "growth_tracker": None, "skipped": False,
                                 "autocast_dtype": "bfloat16"} if autocast else None)
                   for e in later)


def test_a_record_built_after_the_loop_is_the_one_built_at_its_step() -> None:
    # Every value a builder reads was captured for it, none shared with later steps: one
    # builder called at its step and again after the whole loop gives one record.
    pairs = []

    def emit_later(build):
        pairs.append((build(), build))

    instr = Instrumentation(__file__, lambda event: None, detail="sampled",
                            emit_later=emit_later)
    instr.install()
    try:
        _train(40, False)
    finally:
        instr.finish()
    assert len(pairs) >= 30
    assert all(first == build() for first, build in pairs)


def test_a_deferred_fetch_settles_to_the_values_it_was_given() -> None:
    # On CUDA a plain step's loss and norms reach the record as one PendingFetch
    # (hooks.fetch_later); on the CPU the same object holds values read at once.
    loss, norms = torch.tensor(0.25), [torch.tensor(3.0), torch.tensor(4.0)]
    pending = fetch_later([loss, *norms])
    loss.add_(1.0)  # changed after the capture: the record keeps the value at the step
    assert settle(pending, pending) == (0.25, [3.0, 4.0])
    assert settle(None, fetch_later(norms)) == (None, [3.0, 4.0])
    assert settle(fetch_later([loss]), []) == (1.25, [])
    assert settle(0.5, [1.0]) == (0.5, [1.0])  # plain floats pass through


def test_plain_record_of_deferred_values_equals_the_one_of_floats() -> None:
    raw = dict.fromkeys(FIELDS)
    raw.update(step=7, names=["a", "b"], lr=[0.1], batch=16, step_time=0.01, now=5.0,
               first_forward=4.995, syncs={"host_syncs": None, "host_syncs_sampled": False},
               not_in_optimizer=[], mismatch=[], hook_errors=0, overhead_s=1e-4,
               detail_every=8, grad_norm_every=1, eval_graph=0, train_no_grad=0)
    floats = tuple({**raw, "loss": 0.5, "norms": [3.0, float("inf")]}.values())
    pending = fetch_later([torch.tensor(0.5), torch.tensor(3.0), torch.tensor(float("inf"))])
    deferred = tuple({**raw, "loss": pending, "norms": pending}.values())
    built = plain_record(deferred)
    assert built == plain_record(floats)
    assert built.grad_norm == float("inf") and built.params == {
        "b": {"grad_norm": float("inf"), "nonfinite_grad": True}}



def test_the_runner_s_time_on_a_plain_step_is_charged_as_overhead() -> None:
    # tensorscope run's own bookkeeping of a plain step (the watch's plain_sink) runs on
    # the training thread after the watch measured that step: it is charged with the next
    # step's overhead, which the schedule then budgets against. 20 ms per call: far more
    # than the rest of a toy step's bookkeeping, so it shows whatever the machine's speed.
    import time

    events: list = []
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.MSELoss()
    instr = Instrumentation(__file__, events.append, detail="steps", emit_later=events.append)
    instr.install()
    try:
        for step in range(12):
            if step == 4:  # the watch is attached and the first steps are sent by now
                sink = instr._watched.plain_sink

                def slow_sink(raw):
                    time.sleep(0.02)
                    return sink(raw)

                instr._watched.plain_sink = slow_sink
            opt.zero_grad()
            loss_fn(model(torch.randn(8, 4)), torch.randn(8, 2)).backward()
            opt.step()
    finally:
        instr.finish()
    steps = [e() if callable(e) else e for e in events]
    charged = [e["signals"]["overhead_s"] for e in steps if e["type"] == "step"]
    assert len(charged) == 12
    assert all(cost >= 0.02 for cost in charged[-6:])
