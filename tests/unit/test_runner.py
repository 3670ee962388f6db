"""The run instrumentation in-process: every global hook removed at the end, and its own
failures (a sink that raises) counted, never raised into the training loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tensorscope.runner import Instrumentation
from tests.run_helpers import global_hook_counts, instrumented, phase


def _train(steps: int) -> list[float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_hooks_removed_and_records_match_the_loop(tmp_path) -> None:
    before = global_hook_counts()
    with instrumented(tmp_path, "steps") as (instr, events):
        losses = _train(5)
    assert global_hook_counts() == before
    steps = [e for e in events if e["type"] == "step"]
    assert [e["loss"] for e in steps] == losses and instr.hook_errors == 0
    assert [e for e in events if e["type"] == "model"][0]["optimizer"] == "SGD"


def test_a_failing_sink_is_counted_and_the_loop_is_untouched(tmp_path) -> None:
    expected = _train(4)

    def broken(event: dict) -> None:
        raise RuntimeError("UI is gone")

    instr = Instrumentation(str(tmp_path / "script.py"), broken, detail="steps")
    instr.install()
    try:
        losses = _train(4)
    finally:
        instr.finish()
    assert losses == expected
    assert instr.hook_errors >= 3  # one per emitted step at least


def test_attached_watch_skips_memory_and_the_step_keeps_the_runners_reading(tmp_path) -> None:
    # Under `run`, watch() does not read memory itself: the runner's own (rate-limited)
    # reading is the one the merged step record carries.
    with instrumented(tmp_path, "full") as (instr, events):
        _train(3)
        from tensorscope.watch import live_session_for

        session = live_session_for(instr.model)
        assert session is not None and session.record_memory is False
        assert session.records == []  # the runner's own session streams, keeps nothing
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 3 and steps[0]["memory"]["kind"] == "cpu-rss"
    assert all(e["modules"] for e in steps[1:])  # watch attaches at the first step; merged after


def test_every_step_has_a_step_time_the_first_from_its_forward(tmp_path) -> None:
    for detail in ("sampled", "steps"):
        with instrumented(tmp_path, detail) as (_, events):
            _train(4)
        steps = [e for e in events if e["type"] == "step"]
        assert len(steps) == 4
        first = steps[0]
        # No step ended before it: it counts from its first forward, and waited for no data.
        assert first["step_time_s"] == first["compute_time_s"] > 0 and first["data_time_s"] is None
        # Nor its rate: without its data loading it would read several times the steady one.
        assert first["samples_per_s"] is None and first["batch_size"] == 16
        assert all(e["step_time_s"] > 0 and e["samples_per_s"] > 0 for e in steps[1:])


def test_one_host_fetch_per_step_with_the_watch_attached(tmp_path, monkeypatch) -> None:
    """Under run the watch's fetch is the step's only one: the runner reads its record."""
    import importlib

    import tensorscope.hooks as hooks_mod

    # The module itself: the package attribute `tensorscope.watch` may be the function.
    watch_mod = importlib.import_module("tensorscope.watch")

    calls = {"watch": 0, "runner": 0}
    real_fetch, real_runner_fetch = hooks_mod.fetch, Instrumentation._fetch

    def counting_fetch(tensors):
        calls["watch"] += 1
        return real_fetch(tensors)

    def counting_runner_fetch(self, *args, **kwargs):
        calls["runner"] += 1
        return real_runner_fetch(self, *args, **kwargs)

    # A plain CPU step reads its few scalars with item() instead (_fetch_plain): one
    # fetch all the same.
    real_plain = watch_mod.WatchSession._fetch_plain

    def counting_plain(self):
        calls["watch"] += 1
        return real_plain(self)

    monkeypatch.setattr(watch_mod.WatchSession, "_fetch_plain", counting_plain)
    monkeypatch.setattr(watch_mod, "fetch", counting_fetch)
    monkeypatch.setattr(Instrumentation, "_fetch", counting_runner_fetch)
    expected = _train(6)
    with instrumented(tmp_path) as (instr, events):
        losses = _train(6)
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 6 and instr.watch_status == "attached"
    # Step 1 is the runner's own (the watch attaches inside it); then one fetch a step.
    assert calls["runner"] == 1 and calls["watch"] == 6
    assert losses == expected  # numerics untouched
    assert [e["loss"] for e in steps] == losses
    assert all(e["grad_norm"] is not None and e["grad_norm"] > 0 for e in steps)


def test_norms_come_back_when_the_scripts_own_watch_ends(tmp_path) -> None:
    import tensorscope

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = nn.MSELoss()
    with instrumented(tmp_path) as (instr, events):
        for _ in range(2):  # the script watches each epoch itself, then stops
            with tensorscope.watch(model, opt):
                for _ in range(3):
                    opt.zero_grad()
                    crit(model(torch.randn(8, 4)), torch.randn(8, 1)).backward()
                    opt.step()
        model(torch.randn(8, 4))
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 6 and all(e["grad_norm"] is not None for e in steps)


def test_with_its_watch_the_runner_keeps_no_hooks_of_its_own(tmp_path) -> None:
    """Default detail: after the first step only the watch's hooks run, and they call the
    runner; every step is still recorded with the script's own loss, the validation loss
    of an eval-only criterion too, and the watch closing at the end adds no step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loss, val_loss = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    before = global_hook_counts()
    losses, counts = [], []
    with instrumented(tmp_path) as (instr, events):
        for step in range(6):
            opt.zero_grad()
            loss = train_loss(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
            loss.backward()
            opt.step()
            losses.append(loss.item())
            counts.append(global_hook_counts())
            if step == 3:
                model.eval()
                with torch.no_grad():
                    val = val_loss(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
                model.train()
        # the script ends mid-iteration: a forward with no optimizer step after it
        train_loss(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
    assert global_hook_counts() == before
    assert instr.watch_status == "attached" and instr.hook_errors == 0
    # After step 1 no global hook of the runner's but its lookout for other optimizers
    # (an optimizer pre-hook); the watch's criterion search (a global module hook) goes
    # after step 2.
    lookout = (before[0], before[1], before[2] + 1, before[3])
    assert counts[0][2:] == lookout[2:] and all(c == lookout for c in counts[2:])
    runner_hooks = [len(model._forward_pre_hooks), len(train_loss._forward_hooks)]
    assert runner_hooks == [0, 0]  # all removed at the end, and the watch's went with it
    steps = phase(events, "train")
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    assert [e["loss"] for e in steps] == losses
    evals = phase(events, "eval")
    assert len(evals) == 1 and evals[0]["loss"] == val.item() and evals[0]["step"] == 4


def _linear_norms(tmp_path, detail: str, steps: int, evaluate: bool = False):
    """A Linear model trained ``steps`` steps under run (an evaluation forward after them
    when ``evaluate``): (events, the total gradient norm torch computes at each step)."""
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    norms = []
    with instrumented(tmp_path, detail) as (_, events):
        for _ in range(steps):
            opt.zero_grad()
            nn.MSELoss()(model(torch.randn(4, 5)), torch.randn(4, 3)).backward()
            norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])))
            opt.step()
        if evaluate:
            with torch.no_grad():
                model(torch.randn(4, 5))
    return events, norms


def test_steps_detail_norm_equals_torchs_total_norm(tmp_path) -> None:
    events, norms = _linear_norms(tmp_path, "steps", 3)
    steps = [e for e in events if e["type"] == "step"]
    assert [e["grad_norm"] for e in steps] == [pytest.approx(n, rel=1e-6) for n in norms]


@pytest.mark.parametrize("detail", ["steps", "sampled"])
def test_a_validation_criterion_first_used_after_step_one_is_found(tmp_path, detail) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loss, val_loss = nn.CrossEntropyLoss(), nn.NLLLoss()
    vals = []
    with instrumented(tmp_path, detail) as (instr, events):
        for _ in range(3):
            for _ in range(2):
                opt.zero_grad()
                train_loss(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
                opt.step()
            with torch.no_grad():
                vals.append(val_loss(model(torch.randn(8, 4)).log_softmax(1),
                                     torch.randint(0, 2, (8,))).item())
    evals = phase(events, "eval")
    assert [e["loss"] for e in evals] == [pytest.approx(v, rel=1e-6) for v in vals]
    assert instr.hook_errors == 0 and instr._eval_probe is None


@pytest.mark.parametrize("detail", ["steps", "sampled", "full"])
def test_a_clipping_script_gets_its_norm_before_clipping_at_every_detail(tmp_path, detail) -> None:
    # Step 1 is measured at the optimizer (the watch attaches inside it), after the
    # script's clip: once step 2 shows clipping, step 1's value is the clipped one and its
    # norm before clipping unknown, not the clipped value passed off as the norm.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = []
    with instrumented(tmp_path, detail) as (_, events):
        for _ in range(6):
            x = torch.randn(32, 6)
            loss = nn.functional.mse_loss(model(x), 20 * x.sum(1, keepdim=True))
            opt.zero_grad()
            loss.backward()
            before.append(float(nn.utils.clip_grad_norm_(model.parameters(), 0.5)))
            opt.step()
    steps = phase(events, "train")
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6] and min(before) > 0.5
    assert steps[0]["grad_norm"] is None
    assert steps[0]["grad_norm_clipped"] == pytest.approx(0.5, rel=1e-5)
    assert [e["grad_norm"] for e in steps[1:]] == [pytest.approx(n, rel=1e-5) for n in before[1:]]
    assert all(e["grad_norm_clipped"] == pytest.approx(0.5, rel=1e-5) for e in steps[1:])
    if detail == "steps":  # step-level facts only
        assert not any(e["modules"] or e["params"] for e in steps)


def test_step_one_keeps_its_norm_when_the_script_does_not_clip(tmp_path) -> None:
    # With an evaluation after step 2: records stay in order.
    events, norms = _linear_norms(tmp_path, "sampled", 2, evaluate=True)
    kinds = [(e["phase"], e["step"]) for e in events if e["type"] == "step"]
    assert kinds == [("train", 1), ("train", 2), ("eval", 2)]
    steps = phase(events, "train")
    assert [e["grad_norm"] for e in steps] == [pytest.approx(n, rel=1e-6) for n in norms]
    assert all(e["grad_norm_clipped"] is None for e in steps)


@pytest.mark.parametrize("detail", ["steps", "sampled"])
def test_a_second_optimizer_is_named_not_silently_ignored(tmp_path, detail) -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(4, 2), nn.Linear(4, 1)
    adam = torch.optim.Adam(first.parameters(), lr=1e-3)
    sgd = torch.optim.SGD(second.parameters(), lr=0.1)
    with instrumented(tmp_path, detail) as (instr, events):
        for _ in range(4):
            for model, opt in ((first, adam), (second, sgd), (second, sgd)):
                opt.zero_grad()
                model(torch.randn(8, 4)).pow(2).mean().backward()
                opt.step()
    models = [e for e in events if e["type"] == "model"]
    # Named when it first steps (run sees every optimizer step), and only once.
    assert [(m["optimizer"], m.get("other_optimizers")) for m in models] == [
        ("Adam", None), ("Adam", ["SGD"])]
    assert [e["step"] for e in phase(events, "train")] == [1, 2, 3, 4]  # Adam's steps only
    assert instr.hook_errors == 0


def test_step_one_waits_past_a_skipped_step_for_the_clipping_verdict(tmp_path) -> None:
    # GradScaler skips step 2: its record has no norm, so it cannot say whether the script
    # clips; step 1 waits (in order) for step 3's.
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    crit = nn.MSELoss()  # a loss module: the skip is seen through it
    before = []
    with instrumented(tmp_path, "sampled") as (_, events):
        for i in range(5):
            opt.zero_grad()
            x = torch.randn(8, 4)
            loss = crit(model(x), 50 * x.sum(1, keepdim=True))
            scaler.scale(loss).backward()
            if i == 1:
                model.weight.grad[0, 0] = float("inf")
            scaler.unscale_(opt)
            before.append(float(nn.utils.clip_grad_norm_(model.parameters(), 0.5)))
            scaler.step(opt)
            scaler.update()
    steps = phase(events, "train")
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5]
    assert [bool((e["amp"] or {}).get("skipped")) for e in steps] == [False, True, False, False, False]
    assert steps[0]["grad_norm"] is None
    assert steps[0]["grad_norm_clipped"] == pytest.approx(0.5, rel=1e-5)
    assert steps[2]["grad_norm"] == pytest.approx(before[2], rel=1e-5)


def test_a_crash_after_step_one_is_reported_after_it(tmp_path) -> None:
    import subprocess
    import sys

    script = tmp_path / "dies.py"
    script.write_text(
        "import torch\nfrom torch import nn\n"
        "model = nn.Linear(4, 1); opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for i in range(2):\n"
        "    opt.zero_grad()\n"
        "    loss = nn.functional.mse_loss(model(torch.randn(8, 4 if i == 0 else 5)), torch.zeros(8, 1))\n"
        "    loss.backward(); opt.step()\n")
    record = tmp_path / "r.jsonl"
    out = subprocess.run([sys.executable, "-m", "tensorscope", "run", "--headless", "--record",
                          str(record), str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    import json

    kinds = [json.loads(line)["type"] for line in record.read_text().splitlines()]
    assert kinds.index("step") < kinds.index("error"), kinds


_KEEPS_BATCHES = '''
import weakref
import torch
import torch.nn as nn


def train(epochs):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.MSELoss()
    still_alive = []
    previous = None
    for epoch in range(epochs):
        batch = torch.randn(8, 4)
        # The script has dropped last step's batch: nothing else may hold it.
        still_alive.append(previous is not None and previous() is not None)
        previous = weakref.ref(batch)
        opt.zero_grad()
        loss_fn(model(batch), torch.zeros(8, 2)).backward()
        opt.step()
    return still_alive
'''


def test_reading_the_scripts_epoch_keeps_none_of_its_variables_alive(tmp_path) -> None:
    # The epoch is read from the script's frame at every step; on Python <= 3.12 that read
    # copies every variable of the frame into a dict the frame keeps, which held each
    # step's batch (and output, and loss with its graph) through the whole next step.
    namespace: dict = {}
    exec(compile(_KEEPS_BATCHES, str(tmp_path / "script.py"), "exec"), namespace)
    with instrumented(tmp_path) as (instr, events):
        still_alive = namespace["train"](6)
    assert still_alive == [False] * 6
    assert [e["epoch"] for e in phase(events, "train")] == [0, 1, 2, 3, 4, 5]
    assert instr.hook_errors == 0


def _late_scaler_run(tmp_path, make_scaler=None) -> tuple[list[dict], list[dict]]:
    """Six steps of a small MLP under run (every step in detail); from step 4 on, when
    ``make_scaler`` is given, the script creates a GradScaler with it and steps through it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    crit = nn.MSELoss()
    scaler = None
    with instrumented(tmp_path, "full") as (instr, events):
        for i in range(6):
            if make_scaler is not None and i == 3:
                scaler = make_scaler()
            opt.zero_grad()
            x = torch.randn(16, 4)
            loss = crit(model(x), x[:, :2])
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        assert instr.hook_errors == 0
    return phase(events, "train"), [e for e in events if e["type"] == "model"]


class _OwnStepScaler(torch.amp.GradScaler):
    """A scaler that steps the optimizer through a path of its own (not GradScaler's code)."""

    def step(self, optimizer, *args, **kwargs):
        self.unscale_(optimizer)
        if not sum(v.item() for v in self._per_optimizer_states[id(optimizer)]["found_inf_per_device"].values()):
            optimizer.step()


@pytest.mark.parametrize("kind", ["GradScaler", "own step, found by the periodic look"])
def test_a_grad_scaler_created_after_the_first_steps_is_found_and_unscaled(tmp_path, monkeypatch,
                                                                           kind) -> None:
    # The scaler was looked for only at the first optimizer step (and when a step seemed
    # skipped): one created later went unseen, so its steps had no AMP state and their
    # per-module gradient norms were the scaled loss's, 1024 times too large here.
    import tensorscope.runner as runner

    cls = torch.amp.GradScaler
    if kind != "GradScaler":
        cls = _OwnStepScaler
        monkeypatch.setattr(runner, "SCALER_SCAN_S", 0.0)  # every step, not once a second
    plain, _ = _late_scaler_run(tmp_path)
    late, models = _late_scaler_run(tmp_path, lambda: cls("cpu", init_scale=1024.0))  # 2**10: exact
    assert [e["step"] for e in late] == [1, 2, 3, 4, 5, 6]
    assert [(e["amp"] or {}).get("scale") for e in late[3:]] == [1024.0] * 3
    assert [m["scaler"] for m in models] == [False, True]  # announced again, with the scaler
    for ours, theirs in zip(late, plain, strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-6)
        assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-5)
        norms = {path: stats["grad_norm"] for path, stats in ours["modules"].items()}
        assert norms == {path: pytest.approx(stats["grad_norm"], rel=1e-5)
                         for path, stats in theirs["modules"].items()}


def test_a_disabled_grad_scaler_is_not_taken_for_mixed_precision(tmp_path) -> None:
    # GradScaler(enabled=use_amp) with AMP off steps the optimizer itself: no AMP state.
    late, models = _late_scaler_run(tmp_path, lambda: torch.amp.GradScaler("cpu", enabled=False))
    assert [e["step"] for e in late] == [1, 2, 3, 4, 5, 6]
    assert all(e["amp"] is None for e in late)
    assert [m["scaler"] for m in models] == [False]


def _phases(tmp_path, *, steps: int, make_phase) -> tuple[list[dict], list[dict], list[float]]:
    """Three training phases of ``steps`` steps under run; ``make_phase(i)`` gives each its
    (model, optimizer). Returns the train records, the model events and the script's losses."""
    torch.manual_seed(0)
    crit = nn.MSELoss()
    losses = []
    with instrumented(tmp_path) as (instr, events):
        for i in range(3):
            model, opt = make_phase(i)
            for _ in range(steps):
                x = torch.randn(16, 4)
                opt.zero_grad()
                loss = crit(model(x), x[:, :1])
                loss.backward()
                opt.step()
                losses.append(loss.item())
        assert instr.hook_errors == 0
    return phase(events, "train"), [e for e in events if e["type"] == "model"], losses


def test_a_new_optimizer_that_replaces_the_old_one_is_charted_from_its_first_step(tmp_path) -> None:
    # Every step of a run is recorded, whatever optimizer makes it. Only the first
    # optimizer's steps were: a second training phase with a new optimizer, or the next
    # fold of a cross-validation (a new model too), went unrecorded.
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    kinds = [torch.optim.SGD, torch.optim.Adam, torch.optim.SGD]
    steps, models, losses = _phases(tmp_path, steps=5, make_phase=lambda i: (
        model, kinds[i](model.parameters(), lr=1e-2)))  # the old one dropped each time
    assert [e["step"] for e in steps] == list(range(1, 16))
    assert [e["loss"] for e in steps] == losses
    assert [(m["optimizer"], m.get("charted_since")) for m in models] == [
        ("SGD", None), ("Adam", 6), ("SGD", 11)]
    assert models[-1]["earlier"] == [{"optimizer": "SGD", "until_step": 5},
                                     {"optimizer": "Adam", "until_step": 10}]
    assert all("other_optimizers" not in m for m in models)

    def fold(i: int):
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        return net, torch.optim.Adam(net.parameters(), lr=1e-2)

    steps, models, losses = _phases(tmp_path, steps=5, make_phase=fold)  # a new model each fold
    assert [e["step"] for e in steps] == list(range(1, 16))
    assert [e["loss"] for e in steps] == losses
    assert [m.get("charted_since") for m in models] == [None, 6, 11]
    assert all(e["grad_norm"] is not None for e in steps)


def test_an_optimizer_that_keeps_stepping_alone_takes_over_after_a_streak(tmp_path) -> None:
    # Both optimizers stay in the script's variables (one for the head, then one for all):
    # the second is charted once it has made TAKEOVER_STREAK steps in a row (those before
    # are not counted), and the Training screen says from where it is charted.
    from tensorscope.runner import TAKEOVER_STREAK

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    head = torch.optim.SGD(model[2].parameters(), lr=1e-2)
    full = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps, models, losses = _phases(tmp_path, steps=12, make_phase=lambda i: (
        model, (head, full, full)[i]))
    since = 13  # the step count is the charted steps: Adam's first 7 are not in it
    assert [e["step"] for e in steps] == list(range(1, 37 - (TAKEOVER_STREAK - 1)))
    assert [e["loss"] for e in steps] == losses[:12] + losses[12 + TAKEOVER_STREAK - 1:]
    assert [(m["optimizer"], m.get("charted_since"), m.get("other_optimizers")) for m in models] == [
        ("SGD", None, None), ("SGD", None, ["Adam"]), ("Adam", since, ["SGD"])]
    assert models[-1]["earlier"] == [{"optimizer": "SGD", "until_step": 12}]


def test_two_optimizers_taking_turns_in_long_runs_settle_on_the_first(tmp_path) -> None:
    # A probe trained for a few steps now and then: its first streak takes the chart, the
    # main optimizer's next step takes it back, and the probe is not charted again.
    from tensorscope.runner import TAKEOVER_STREAK

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    probe = nn.Linear(4, 1)
    main = torch.optim.SGD(model.parameters(), lr=1e-2)
    probing = torch.optim.SGD(probe.parameters(), lr=1e-2)
    torch.manual_seed(0)
    crit = nn.MSELoss()
    with instrumented(tmp_path) as (instr, events):
        for turn in range(5):
            net, opt, n = (model, main, 12) if turn % 2 == 0 else (probe, probing, 10)
            for _ in range(n):
                x = torch.randn(16, 4)
                opt.zero_grad()
                crit(net(x), x[:, :1]).backward()
                opt.step()
        assert instr.hook_errors == 0
    steps = [e["step"] for e in phase(events, "train")]
    back = 13 + (10 - TAKEOVER_STREAK + 1)  # the probe's last steps of its first turn
    assert steps == list(range(1, back + 24))  # then main's 24: charted steps only
    models = [e for e in events if e["type"] == "model"]
    assert [(m["model"], m.get("charted_since")) for m in models] == [
        ("Sequential", None), ("Sequential", None), ("Linear", 13), ("Sequential", back)]


@pytest.mark.parametrize("detail", ["sampled", "full"])
def test_a_gans_discriminator_is_charted_with_its_own_loss_and_no_false_findings(tmp_path,
                                                                                 detail) -> None:
    # Walk-through (the DCGAN tutorial's loop): the charted discriminator's loss was the
    # mean of all three BCE calls, the generator's included, over 96 "samples"; and the
    # generator's backward through D, before optD.zero_grad(), read as D's gradients
    # carried over from the last step (a false "missing zero_grad" error).
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    bce = nn.BCEWithLogitsLoss()
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    d_losses = []
    with instrumented(tmp_path, detail) as (instr, events):
        for _ in range(12):
            real, fake = torch.randn(32, 2) + 3, G(torch.randn(32, 4))
            opt_d.zero_grad()
            loss_d = bce(D(real), torch.ones(32, 1)) + bce(D(fake.detach()), torch.zeros(32, 1))
            loss_d.backward()
            opt_d.step()
            opt_g.zero_grad()
            bce(D(fake), torch.ones(32, 1)).backward()
            opt_g.step()
            d_losses.append(loss_d.item())
        assert instr.hook_errors == 0
    steps = phase(events, "train")
    assert [e["step"] for e in steps] == list(range(1, 13))
    assert [e["loss"] for e in steps] == pytest.approx(d_losses, rel=1e-6)
    assert [e["batch_size"] for e in steps[1:]] == [64] * 11  # real and fake, not G's pass
    assert not any(e["signals"].get("grad_carried_over") for e in steps)
    from tensorscope.doctor import diagnose

    assert "missing-zero-grad" not in {f.code for f in diagnose(steps)}


def test_gradient_accumulations_first_step_has_every_micro_batch(tmp_path) -> None:
    # Walk-through: step 1 (before the watch was attached) had the last micro-batch's loss
    # and batch only, and a samples/s timed from its forward (3x the steady rate).
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    crit = nn.MSELoss()
    per_step: list[list[float]] = []
    with instrumented(tmp_path) as (_, events):
        for _ in range(3):
            opt.zero_grad()
            per_step.append([])
            for _ in range(4):
                x = torch.randn(16, 4)
                loss = crit(model(x), x[:, :1])
                (loss / 4).backward()
                per_step[-1].append(loss.item())
            opt.step()
    steps = phase(events, "train")
    assert [e["loss"] for e in steps] == pytest.approx([sum(v) / 4 for v in per_step], rel=1e-6)
    assert [e["batch_size"] for e in steps] == [64, 64, 64]
    assert steps[0]["samples_per_s"] is None and steps[1]["samples_per_s"] > 0


def test_optimizers_held_by_an_object_take_turns_without_a_takeover(tmp_path) -> None:
    # A trainer object holds both (self.opt_d, self.opt_g): neither is among the script's
    # variables, yet the charted one is not gone. Its reference count says so.
    class Trainer:
        def __init__(self) -> None:
            self.d, self.g = nn.Linear(2, 1), nn.Linear(4, 2)
            self.opt_d = torch.optim.SGD(self.d.parameters(), lr=1e-2)
            self.opt_g = torch.optim.SGD(self.g.parameters(), lr=1e-2)

        def step(self) -> None:
            for net, opt, x in ((self.d, self.opt_d, torch.randn(8, 2)),
                                (self.g, self.opt_g, torch.randn(8, 4))):
                opt.zero_grad()
                net(x).pow(2).mean().backward()
                opt.step()

    trainer = Trainer()
    with instrumented(tmp_path) as (instr, events):
        for _ in range(6):
            trainer.step()
        assert instr.hook_errors == 0
    models = [e for e in events if e["type"] == "model"]
    assert [(m["optimizer"], m.get("charted_since"), m.get("other_optimizers")) for m in models] == [
        ("SGD", None, None), ("SGD", None, ["SGD"])]
    assert [e["step"] for e in phase(events, "train")] == list(range(1, 7))


def test_an_evaluations_loss_weighs_each_batch_by_its_size(tmp_path) -> None:
    # Walk-through: 300 validation samples in batches of 128 (the last of 44): the
    # evaluation loss was the plain mean of the three batch means.
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    crit = nn.MSELoss()
    x_val = torch.randn(300, 4)
    with instrumented(tmp_path) as (_, events):
        for _ in range(3):
            opt.zero_grad()
            x = torch.randn(16, 4)
            crit(model(x), x[:, :1]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            total = sum(crit(model(b), b[:, :1]).item() * len(b) for b in x_val.split(128))
        model.train()
        opt.zero_grad()
        crit(model(x), x[:, :1]).backward()
        opt.step()
    evals = phase(events, "eval")
    assert len(evals) == 1 and evals[0]["loss"] == pytest.approx(total / 300, rel=1e-6)


class _Wrapper(torch.optim.Optimizer):
    """An optimizer that steps another inside its own step (ZeroRedundancyOptimizer-like)."""

    def __init__(self, params) -> None:
        params = list(params)
        super().__init__(params, {"lr": 0.1})
        self.inner = torch.optim.SGD(params, lr=0.1)

    def step(self, closure=None):
        self.inner.step()


def test_an_optimizer_stepped_inside_the_charted_step_is_part_of_it(tmp_path) -> None:
    # Review: the inner step looked like another optimizer's, which dropped the charted
    # step's losses (None on every detail step) and named the inner one "also steps".
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = _Wrapper(model.parameters())
    crit = nn.MSELoss()
    losses = []
    with instrumented(tmp_path, "full") as (instr, events):
        for _ in range(5):
            opt.zero_grad()
            x = torch.randn(16, 4)
            loss = crit(model(x), x[:, :1])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert instr.hook_errors == 0
    steps = phase(events, "train")
    assert [e["loss"] for e in steps] == pytest.approx(losses, rel=1e-6)
    assert all("other_optimizers" not in e for e in events if e["type"] == "model")


def test_a_takeover_drops_the_old_phases_grad_scaler(tmp_path) -> None:
    # Review: phase 1 under AMP (scale 1024), phase 2 in float32 with a new optimizer, the
    # scaler still a variable: phase 2's norms were divided by 1024 and carried its scale.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    crit = nn.MSELoss()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    norms = []
    with instrumented(tmp_path, "steps") as (instr, events):
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        for _ in range(4):
            opt.zero_grad()
            x = torch.randn(16, 4)
            scaler.scale(crit(model(x), x[:, :1])).backward()
            scaler.step(opt)
            scaler.update()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # the old one dropped
        for _ in range(4):
            opt.zero_grad()
            x = torch.randn(16, 4)
            crit(model(x), x[:, :1]).backward()
            norms.append(float(torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in model.parameters()]))))
            opt.step()
        assert instr.hook_errors == 0
    steps = phase(events, "train")
    assert [e["step"] for e in steps] == list(range(1, 9))
    assert all(e["amp"] and e["amp"]["scale"] == 1024.0 for e in steps[:3])
    assert [e["amp"] for e in steps[4:]] == [None] * 4
    assert [e["grad_norm"] for e in steps[5:]] == pytest.approx(norms[1:], rel=1e-5)
    models = [e for e in events if e["type"] == "model"]
    assert [m["scaler"] for m in models] == [True, False]


def test_a_trainers_next_fold_is_found_on_the_trainer_and_a_bare_tensor_is_not_chased(tmp_path) -> None:
    # Review: a model held by an object (self.model) was not found, and the takeover was
    # tried again on every step (median step 0.43 -> 0.73 ms).
    class Trainer:
        def fit(self, steps: int) -> None:
            self.model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-2)
            for _ in range(steps):
                self.opt.zero_grad()
                x = torch.randn(16, 4)
                self.model(x).pow(2).mean().backward()
                self.opt.step()

    torch.manual_seed(0)
    trainer = Trainer()
    z = torch.zeros(3, requires_grad=True)
    latent = torch.optim.SGD([z], lr=0.1)
    with instrumented(tmp_path) as (instr, events):
        trainer.fit(3)
        trainer.fit(3)  # the next fold: a new model and optimizer on the same trainer
        for _ in range(12):  # then a bare tensor, optimized alone
            latent.zero_grad()
            (z - 1).pow(2).sum().backward()
            latent.step()
        assert instr.hook_errors == 0 and latent in instr._no_owner
    models = [e for e in events if e["type"] == "model"]
    assert [m.get("charted_since") for m in models][:2] == [None, 4]
    assert [e["step"] for e in phase(events, "train")] == list(range(1, 7))


def test_a_takeover_onto_the_scripts_own_watch_never_breaks_its_step(tmp_path) -> None:
    # Review: with no watch of the runner's on the new model (the script watches it), the
    # takeover added global optimizer hooks while torch went through them; a hook of the
    # script's own after ours made opt.step() raise "OrderedDict mutated during iteration".
    import tensorscope
    from torch.optim import optimizer as optim_globals

    torch.manual_seed(0)
    crit = nn.MSELoss()
    first = nn.Linear(4, 1)
    second = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    with instrumented(tmp_path) as (instr, events):
        theirs = optim_globals.register_optimizer_step_pre_hook(lambda opt, args, kwargs: None)
        try:
            opt = torch.optim.SGD(first.parameters(), lr=1e-2)
            for _ in range(3):
                opt.zero_grad()
                x = torch.randn(8, 4)
                crit(first(x), x[:, :1]).backward()
                opt.step()
            opt = torch.optim.SGD(second.parameters(), lr=1e-2)
            with tensorscope.watch(second, opt):
                for _ in range(3):
                    opt.zero_grad()
                    x = torch.randn(8, 4)
                    crit(second(x), x[:, :1]).backward()
                    opt.step()
        finally:
            theirs.remove()
        assert instr.hook_errors == 0
    steps = phase(events, "train")
    assert [e["step"] for e in steps] == list(range(1, 7))
    # The takeover step's record is the new model's, not the old session's partial one.
    detailed = [e for e in steps[3:] if e.get("modules")]
    assert detailed and all(set(e["modules"]) <= {"", "0", "1", "2"} for e in detailed)


@pytest.mark.parametrize("pattern", ["two backward passes", "weighted sum", "metric",
                                     "accumulation", "scaler"])
def test_several_criterion_calls_give_the_loss_the_backward_passes_minimise(tmp_path,
                                                                            pattern) -> None:
    # Each call weighs what the gradient reaching it says: the DCGAN tutorial's two passes
    # (errD_real.backward(); errD_fake.backward()) add up, a criterion used as a metric
    # drops out, micro-batches scaled by 1/4 average, and a GradScaler's scale is divided out.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    crit = nn.MSELoss()
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0) if pattern == "scaler" else None
    expected = []
    with instrumented(tmp_path) as (instr, events):
        for _ in range(12):
            opt.zero_grad()
            x = torch.randn(16, 4)
            if pattern == "two backward passes":
                a, b = crit(model(x)[:, :1], x[:, :1]), crit(model(x)[:, 1:], x[:, 1:2])
                a.backward()
                b.backward()
                expected.append(a.item() + b.item())
            elif pattern in ("weighted sum", "scaler"):
                out = model(x)
                a, b = crit(out[:, :1], x[:, :1]), crit(out[:, 1:], x[:, 1:2])
                loss = a + 0.1 * b
                (scaler.scale(loss) if scaler else loss).backward()
                expected.append(a.item() + 0.1 * b.item())
            elif pattern == "metric":
                out = model(x)
                loss, metric = crit(out, x[:, :2]), crit(out, torch.zeros_like(out))
                loss.backward()
                expected.append(loss.item())
            else:
                parts = []
                for chunk in x.split(4):
                    part = crit(model(chunk), chunk[:, :2])
                    (part / 4).backward()
                    parts.append(part.item())
                expected.append(sum(parts) / 4)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
        assert instr.hook_errors == 0
    steps = phase(events, "train")
    # Step 1 too (before the watch, weighed the same way), but under a GradScaler (its last
    # call: iterations it skipped before any step would look like more calls).
    first = 1 if pattern == "scaler" else 0
    assert [e["loss"] for e in steps[first:]] == pytest.approx(expected[first:], rel=1e-5)


@pytest.mark.parametrize("detail", ["sampled", "full"])
def test_after_an_amp_phase_the_same_optimizer_is_not_unscaled(tmp_path, detail) -> None:
    # Walk-through: AMP for 20 steps, then float32 with the same optimizer: the norms
    # were divided by the old scale (4.94e-05 for 6.475) and the real one called "clipped".
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    crit = nn.MSELoss()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    norms = []
    with instrumented(tmp_path, detail) as (instr, events):
        for i in range(10):
            opt.zero_grad()
            x = torch.randn(16, 4)
            loss = crit(model(x), x[:, :1])
            if i < 5:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                norms.append(float(torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in model.parameters()]))))
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                norms.append(float(torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in model.parameters()]))))
                opt.step()
        assert instr.hook_errors == 0
    steps = phase(events, "train")
    assert [e["grad_norm"] for e in steps[1:]] == pytest.approx(norms[1:], rel=1e-5)
    assert [e["grad_norm_clipped"] for e in steps[5:]] == [None] * 5
    assert [e["amp"] for e in steps[5:]] == [None] * 5


def test_a_leftover_micro_batch_thrown_away_is_not_in_the_next_steps_loss(tmp_path) -> None:
    # Walk-through: 33 batches with 4 per step; the 33rd is backpropagated, then thrown away
    # by the next epoch's zero_grad, and its loss was averaged into the next step's.
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    crit = nn.MSELoss()
    expected, parts = [], []
    with instrumented(tmp_path) as (instr, events):
        for epoch in range(3):
            opt.zero_grad()
            parts = []
            for i in range(9):  # 9 micro-batches: two steps of 4, and one left over
                x = torch.randn(8, 4)
                loss = crit(model(x), x[:, :1])
                (loss / 4).backward()
                parts.append(loss.item())
                if (i + 1) % 4 == 0:
                    opt.step()
                    opt.zero_grad()
                    expected.append(sum(parts[-4:]) / 4)
        assert instr.hook_errors == 0
    steps = phase(events, "train")
    assert len(steps) == 6  # full steps (the first ones) and plain steps both
    assert [e["loss"] for e in steps] == pytest.approx(expected, rel=1e-5)
