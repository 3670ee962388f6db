"""Edge cases of run's merged hooks and watch's plain steps (found in review): evaluation phases, closures, criteria inside the model, failed records, memory."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tensorscope
from tensorscope.runner import Instrumentation
from tests.run_helpers import global_hook_counts, instrumented, phase


# --- eval-mode fine-tuning: the evaluation probe (a global module hook) does not stay ---

def test_eval_mode_finetuning_leaves_no_global_module_hook(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    crit = nn.CrossEntropyLoss()
    before = global_hook_counts()
    counts = []
    with instrumented(tmp_path) as (instr, events):
        model.eval()  # fine-tuning with frozen BatchNorm statistics: grad on, eval mode
        for _ in range(8):
            opt.zero_grad()
            crit(model(torch.randn(16, 4)), torch.randint(0, 2, (16,))).backward()
            opt.step()
            counts.append(global_hook_counts())
    assert global_hook_counts() == before
    # after the watch's own criterion search (2 steps) nothing global may stay
    assert [c[:2] for c in counts[3:]] == [before[:2]] * 5, counts


# --- a validation pass run with grad: the watch keeps no batch's graph alive -----------

class _Marked(torch.autograd.Function):
    alive: "weakref.WeakSet" = weakref.WeakSet()

    class Marker:
        pass

    @staticmethod
    def forward(ctx, x):
        ctx.marker = _Marked.Marker()
        _Marked.alive.add(ctx.marker)
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g


class _MarkedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        return _Marked.apply(self.fc(x))


def test_validation_with_graph_does_not_keep_every_batch_graph_alive() -> None:
    torch.manual_seed(0)
    model = _MarkedNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = nn.MSELoss()
    alive_after_val = []
    with tensorscope.watch(model, opt, every=50, max_overhead=None):
        for step in range(8):
            opt.zero_grad()
            crit(model(torch.randn(8, 4)), torch.randn(8, 1)).backward()
            opt.step()
            if step == 5:  # a plain step follows: validation without no_grad
                model.eval()
                for _ in range(20):
                    val = crit(model(torch.randn(8, 4)), torch.randn(8, 1))
                    val.item()
                del val
                model.train()
                gc.collect()
                alive_after_val.append(len(_Marked.alive))
    # The script keeps no graph; at most the last batch's could be alive.
    assert alive_after_val[0] <= 1, alive_after_val


# --- closures: the step's numbers are read after the closure has run ------------------

def _closure_run(make_opt, steps: int, before=None):
    """Train a Linear(4, 1) with opt.step(closure) under watch(); each closure call records
    the loss and the gradient norm it produced."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = make_opt(model.parameters())
    crit = nn.MSELoss()
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    calls = []

    def closure():
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        calls.append((loss.item(), float(torch.nn.utils.get_total_norm(
            [p.grad for p in model.parameters()]))))
        return loss

    with tensorscope.watch(model, opt, every=50, max_overhead=None) as session:
        if before is not None:
            before(model, x)
        for _ in range(steps):
            opt.step(closure)
    return session.records, calls


def test_closure_loss_is_recorded_on_plain_steps() -> None:
    records, calls = _closure_run(lambda p: torch.optim.SGD(p, lr=0.01), 6)
    assert [r.loss for r in records] == pytest.approx([c[0] for c in calls], rel=1e-6)


def test_closure_grad_norm_on_full_steps_is_this_steps() -> None:
    # Steps 1-3 watch backward (full steps): the norm at the end of the closure's backward
    # is this step's, not the one left by the step before.
    records, calls = _closure_run(lambda p: torch.optim.SGD(p, lr=0.1), 3,
                                  before=lambda model, x: model(x))
    assert [r.grad_norm for r in records[1:3]] == pytest.approx([c[1] for c in calls[1:3]], rel=1e-5)


def test_lbfgs_loss_is_recorded_on_plain_steps() -> None:
    records, _ = _closure_run(lambda p: torch.optim.LBFGS(p, lr=0.1, max_iter=3), 6)
    assert all(r.loss is not None for r in records), [r.loss for r in records]


# --- a functional training loss with a criterion module inside the model --------------

class _WithAux(nn.Module):
    """A model that adds an auxiliary criterion term itself (a _Loss inside forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.aux = nn.L1Loss()
        self.aux_value = None

    def forward(self, x):
        out = self.fc(x)
        self.aux_value = self.aux(out, torch.zeros_like(out))
        return out


def _script_with_functional_loss(model, opt, n):
    # The runner reads this frame's `loss` (functional loss): the test file is the script.
    losses = []
    for _ in range(n):
        opt.zero_grad()
        out = model(torch.randn(16, 4))
        loss = F.cross_entropy(out, torch.randint(0, 2, (16,)))
        (loss + 0.0 * model.aux_value).backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_functional_loss_wins_over_a_criterion_inside_the_model() -> None:
    torch.manual_seed(0)
    model = _WithAux()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    events = []  # the script is this file (its frame holds the functional `loss`)
    instr = Instrumentation(__file__, events.append, detail="sampled")
    instr.install()
    try:
        losses = _script_with_functional_loss(model, opt, 6)
    finally:
        instr.finish()
    steps = phase(events, "train")
    assert instr.watch_status == "attached"
    assert [e["loss"] for e in steps] == pytest.approx(losses, rel=1e-6)
    assert {e["signals"]["loss_source"] for e in steps} == {"the script's `loss` variable"}


# --- an evaluation right after step 1 with its own criterion: each batch counted once --

def test_validation_after_the_first_step_counts_each_batch_once(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loss, val_loss = nn.CrossEntropyLoss(), nn.NLLLoss()
    vals = []
    with instrumented(tmp_path) as (_, events):
        for _ in range(3):
            opt.zero_grad()
            train_loss(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
            opt.step()
            model.eval()
            with torch.no_grad():
                batch = [val_loss(model(torch.randn(8, 4)).log_softmax(1),
                                  torch.randint(0, 2, (8,))).item() for _ in range(3)]
            model.train()
            vals.append(sum(batch) / len(batch))
    evals = phase(events, "eval")
    assert [e["signals"]["eval_forwards"] for e in evals] == [3, 3, 3]
    assert [e["loss"] for e in evals] == [pytest.approx(v, rel=1e-6) for v in vals]


# --- criterion calls inside the model stay out of the evaluation loss -----------------

def test_eval_loss_is_the_scripts_criterion_not_one_inside_the_model(tmp_path) -> None:
    torch.manual_seed(0)
    model = _WithAux()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    crit = nn.CrossEntropyLoss()
    vals = []
    with instrumented(tmp_path) as (_, events):
        for _ in range(4):
            for _ in range(2):
                opt.zero_grad()
                crit(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                vals.append(crit(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).item())
            model.train()
    evals = phase(events, "eval")
    assert [e["loss"] for e in evals] == [pytest.approx(v, rel=1e-6) for v in vals]


# --- GradScaler skipping a plain step under run ----------------------------------------

def _amp_script(model, opt, scaler, crit, n, skip_at):
    losses = []
    for i in range(n):
        opt.zero_grad()
        loss = crit(model(torch.randn(8, 4)), torch.randn(8, 1))
        scaler.scale(loss).backward()
        if i in skip_at:
            model.weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    return losses


def _amp_run(tmp_path, n: int, skip_at: set[int]):
    """_amp_script under run's instrumentation: (instrumentation, train records, losses)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with instrumented(tmp_path) as (instr, events):
        losses = _amp_script(model, opt, scaler, nn.MSELoss(), n, skip_at)
    return instr, phase(events, "train"), losses


def test_gradscaler_skip_on_a_plain_step_is_one_skipped_record(tmp_path) -> None:
    instr, steps, losses = _amp_run(tmp_path, 12, {6, 9})
    assert instr.hook_errors == 0
    assert [e["step"] for e in steps] == list(range(1, 13))
    assert [bool((e["amp"] or {}).get("skipped")) for e in steps] == [i in {6, 9} for i in range(12)]
    assert [e["loss"] for e in steps] == pytest.approx(losses, rel=1e-6)


@pytest.mark.parametrize("skip_at", [{1}, {1, 2}, {3, 4, 5}, {0}])
def test_gradscaler_skips_in_a_row_and_early(tmp_path, skip_at) -> None:
    _, steps, losses = _amp_run(tmp_path, 10, skip_at)
    first = 1 if 0 in skip_at else 0  # skips before the first optimizer step are not seen
    assert [e["step"] for e in steps] == list(range(1, 11 - first))
    assert [bool((e["amp"] or {}).get("skipped")) for e in steps] == [i in skip_at for i in range(first, 10)]
    assert [e["loss"] for e in steps] == pytest.approx(losses[first:], rel=1e-6)


# --- a watch record that fails to build: the step is still counted under run ----------

@pytest.mark.parametrize("failing", [0, 4])  # the first record (runner hooks still on), the 5th
def test_a_watch_record_that_fails_to_build_still_counts_the_step(tmp_path, monkeypatch, failing) -> None:
    import importlib

    watch_mod = importlib.import_module("tensorscope.watch")
    real = watch_mod.WatchSession._build_record

    def flaky(self, partial):
        if self._step == failing:
            self._step += 1
            raise RuntimeError("decode failed")
        return real(self, partial)

    monkeypatch.setattr(watch_mod.WatchSession, "_build_record", flaky)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = nn.MSELoss()
    losses = []
    with instrumented(tmp_path) as (instr, events):
        for _ in range(8):
            opt.zero_grad()
            loss = crit(model(torch.randn(8, 4)), torch.randn(8, 1))
            loss.backward()
            opt.step()
            losses.append(loss.item())
    steps = phase(events, "train")
    assert [e["step"] for e in steps] == list(range(1, 9))


# --- doctor: a plain step reporting one non-finite weight does not hide the detail step

def test_doctor_per_weight_check_is_not_hidden_by_a_nonfinite_plain_step() -> None:
    from tensorscope.doctor import diagnose
    from tensorscope.telemetry import StepRecord

    layers = {"a.weight": {"grad_norm": 1.0}, "b.weight": {"grad_norm": 1e-8}}
    recs = [StepRecord(step=i, grad_norm=1.0, loss=1.0, params=layers if i % 3 == 0 else {})
            for i in range(10)]
    # the last step (plain) saw a NaN in one bias: watch() sends just that entry
    recs.append(StepRecord(step=10, grad_norm=float("nan"), loss=1.0, signals={"detail": False},
                           params={"b.bias": {"grad_norm": float("nan"), "nonfinite_grad": True}}))
    assert "vanishing-gradients" in {f.code for f in diagnose(recs)}
