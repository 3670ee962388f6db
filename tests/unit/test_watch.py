"""tensorscope.watch(): records, doctor signals, no trace left, numerics untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_globals
from torch.optim import optimizer as optim_globals

import tensorscope
from tensorscope import zoo
from tensorscope.errors import UserError


def _registries(model: nn.Module, opt: torch.optim.Optimizer | None) -> dict:
    """A fingerprint of every hook registry tensorscope could touch."""
    state = {
        "global": tuple(len(d) for d in (
            module_globals._global_forward_hooks, module_globals._global_forward_pre_hooks,
            module_globals._global_backward_hooks, module_globals._global_backward_pre_hooks,
            optim_globals._global_optimizer_pre_hooks, optim_globals._global_optimizer_post_hooks)),
        "modules": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                     len(m._backward_pre_hooks)) for m in model.modules()],
        "params": [(len(p._backward_hooks or {}), len(getattr(p, "_post_accumulate_grad_hooks", None) or {}))
                   for p in model.parameters()],
        "training": [m.training for m in model.modules()],
    }
    if opt is not None:
        state["opt"] = (len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks))
    return state


def _train(ex: zoo.Example, steps: int, watched: bool, **kw) -> tuple[list[float], list]:
    losses = []
    if not watched:
        for _ in range(steps):
            losses.append(ex.step())
        return losses, []
    with tensorscope.watch(ex.model, ex.optimizer, **kw) as session:
        for _ in range(steps):
            losses.append(ex.step())
    return losses, session.records


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_records_steps_and_leaves_no_trace(name: str) -> None:
    ex = zoo.get(name)
    before = _registries(ex.model, ex.optimizer)
    losses, records = _train(ex, 3, True, max_overhead=None)
    assert _registries(ex.model, ex.optimizer) == before
    assert [r.step for r in records] == [1, 2, 3]
    for loss, rec in zip(losses, records):
        assert rec.loss == pytest.approx(loss, rel=1e-6)
        assert rec.grad_norm is not None and rec.grad_norm > 0
        assert rec.signals["hook_errors"] == 0
        assert rec.signals["backward_passes"] == 1
        assert rec.signals["grad_carried_over"] == []
        assert rec.modules, "per-module stats missing"
        assert rec.memory is not None and rec.step_time_s > 0
    # Every module that ran has stats (ModuleList containers and MultiheadAttention's
    # out_proj are never called as modules, so they have none).
    called = set()
    handles = [m.register_forward_hook(lambda m, a, o, n=n: called.add(n))
               for n, m in ex.model.named_modules() if n]
    ex.step()
    for h in handles:
        h.remove()
    assert set(records[0].modules) == called


@pytest.mark.parametrize("name", zoo.names())
def test_seeded_losses_bit_identical_with_and_without_watch(name: str) -> None:
    torch.manual_seed(7)
    plain, _ = _train(zoo.get(name), 4, False)
    torch.manual_seed(7)
    watched, _ = _train(zoo.get(name), 4, True)
    assert plain == watched  # exact float equality, dropout included


def test_forward_error_passes_through_and_leaves_no_trace() -> None:
    ex = zoo.get("inplace_relu")
    before = _registries(ex.model, ex.optimizer)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        with tensorscope.watch(ex.model, ex.optimizer) as session:
            ex.model(torch.randn(4, 5))  # wrong width: the user's own error
    assert session.hook_count == 0
    assert _registries(ex.model, ex.optimizer) == before


def test_detach_removes_every_hook_and_keeps_records() -> None:
    ex = zoo.get("two_layer_mlp")
    before = _registries(ex.model, ex.optimizer)
    with tensorscope.watch(ex.model, ex.optimizer) as session:
        assert session.hook_count > 0
        ex.step()
        session.detach()
        assert session.hook_count == 0
        assert _registries(ex.model, ex.optimizer) == before
        ex.step()  # no longer observed
    assert len(session.records) == 1


def test_module_stats_equal_torch_computations() -> None:
    model = nn.Sequential(nn.Linear(6, 40), nn.ReLU())
    seen = {}
    model[1].register_forward_hook(lambda m, a, out: seen.update(out=out.detach().clone()))
    grads = {}
    with tensorscope.watch(model, modules="1") as session:
        out = model(torch.randn(25, 6))  # 1000 elements: within the sample, so exact
        out.register_hook(lambda g: grads.update(g=g.clone()))
        out.pow(2).sum().backward()
        session.step()
    stats = session.records[0].modules["1"]
    x = seen["out"]
    assert stats["mean"] == pytest.approx(x.mean().item(), rel=1e-5)
    assert stats["std"] == pytest.approx(x.std().item(), rel=1e-5)
    assert stats["abs_max"] == pytest.approx(x.abs().max().item())
    assert stats["zero_frac"] == pytest.approx((x == 0).float().mean().item())
    assert stats["nonfinite"] == 0 and stats["shape"] == [25, 40] and stats["dtype"] == "float32"
    assert sum(stats["hist"]) == x.numel()
    assert stats["grad_norm"] == pytest.approx(grads["g"].norm().item(), rel=1e-5)


def test_nonfinite_counted() -> None:
    class Bad(nn.Module):
        def forward(self, x):
            return x / torch.tensor([0.0, 1.0, 1.0])

    model = nn.Sequential(Bad())
    with tensorscope.watch(model, modules="0") as session:
        model(torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0]], requires_grad=True))
        session.step()
    assert session.records[0].modules["0"]["nonfinite"] == 2


def test_param_stats_and_update_ratio() -> None:
    ex = zoo.get("two_layer_mlp")
    weights = {n: p.detach().clone() for n, p in ex.model.named_parameters()}
    _, records = _train(ex, 1, True)
    for n, p in ex.model.named_parameters():
        entry = records[0].params[n]
        delta = (p.detach() - weights[n]).norm().item()
        assert entry["weight_norm"] == pytest.approx(p.norm().item(), rel=1e-5)
        assert entry["update_ratio"] == pytest.approx(delta / p.norm().item(), rel=1e-4)
        assert entry["nonfinite_grad"] is False
    assert records[0].lr == [0.05]
    assert records[0].batch_size == 32


def test_missing_zero_grad_is_carried_over_but_accumulation_is_not() -> None:
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    # Every step watched closely (a budget checks only full steps: see the test below).
    with tensorscope.watch(model, opt, max_overhead=None) as session:
        for _ in range(3):  # the bug: no zero_grad
            model(x).sum().backward()
            opt.step()
        for _ in range(2):  # intentional accumulation: reset after each step
            for _ in range(4):
                model(x).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=False)
    sig = [r.signals for r in session.records]
    assert sig[0]["grad_carried_over"] == []
    assert sorted(sig[1]["grad_carried_over"]) == ["bias", "weight"]
    assert sorted(sig[2]["grad_carried_over"]) == ["bias", "weight"]
    assert sorted(sig[3]["grad_carried_over"]) == ["bias", "weight"]  # not yet reset before it
    assert sig[4]["grad_carried_over"] == [] and sig[4]["backward_passes"] == 4


def test_signals_eval_graph_train_no_grad_not_in_optimizer_unchanged() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)  # model[2] forgotten
    crit = nn.MSELoss()
    with tensorscope.watch(model, opt) as session:
        model.eval()
        model(torch.randn(2, 4))  # eval forward that still builds a graph
        model.train()
        with torch.no_grad():
            model(torch.randn(2, 4))  # Dropout in training mode under no_grad
        opt.zero_grad()
        crit(model(torch.randn(2, 4)), torch.randn(2, 2)).backward()
        opt.step()
    s = session.records[0].signals
    assert s["eval_forward_with_graph"] == 1
    assert s["train_mode_forward_no_grad"] == 1
    assert s["params_not_in_optimizer"] == ["2.weight", "2.bias"]
    assert s["params_unchanged"] == ["2.weight", "2.bias"]
    assert s["host_syncs"] is None and s["hook_errors"] == 0


def test_loss_from_criterion_outside_model_and_log_loss() -> None:
    model = nn.Linear(3, 1)
    x, y = torch.randn(5, 3), torch.randn(5, 1)
    with tensorscope.watch(model) as session:
        loss = nn.MSELoss()(model(x), y)
        loss.backward()
        session.step()
        out = model(x)
        fl = ((out - y) ** 2).mean()
        session.log_loss(fl)
        fl.backward()
        session.step()
    assert session.records[0].loss == pytest.approx(loss.item())
    assert session.records[1].loss == pytest.approx(fl.item())


def test_optimizer_adopted_when_not_given_and_sink_called() -> None:
    ex = zoo.get("sequential_mlp")
    got = []
    with tensorscope.watch(ex.model, sink=got.append, every=2, max_overhead=None) as session:
        for _ in range(3):
            ex.step()
    assert [r.step for r in got] == [1, 2, 3]
    assert got[0].modules and not got[1].modules and got[2].modules  # detail every 2nd step
    assert got[0].lr == [0.01]
    assert session.hook_count == 0


def test_errors_in_sink_and_hooks_are_counted_not_raised() -> None:
    ex = zoo.get("sequential_mlp")

    def bad_sink(record):
        raise ValueError("sink broke")

    with tensorscope.watch(ex.model, ex.optimizer, sink=bad_sink) as session:
        ex.step()
        ex.step()
    assert session.errors == 2
    assert session.records[1].signals["hook_errors"] == 1  # the first step's sink failure


def test_outputs_tuple_dict_none_and_int() -> None:
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return {"a": (self.lin(x), None), "n": torch.tensor([1, 2])}

    class Nothing(nn.Module):
        def forward(self, x):
            return None

    class Ints(nn.Module):
        def forward(self, x):
            return x.argmax(dim=1)

    model = nn.ModuleDict({"odd": Odd(), "none": Nothing(), "ints": Ints()})
    with tensorscope.watch(model) as session:
        x = torch.randn(2, 3)
        out = model["odd"](x)
        model["none"](x)
        model["ints"](x)
        out["a"][0].sum().backward()
        session.step()
    mods = session.records[0].modules
    assert mods["odd"]["shape"] == [2, 3] and mods["odd"]["grad_norm"] > 0
    assert mods["none"]["note"] == "returned None"
    assert "int64" in mods["ints"]["note"]
    assert session.records[0].signals["hook_errors"] == 0


def test_shared_module_counts_two_calls() -> None:
    ex = zoo.get("shared_module")
    _, records = _train(ex, 1, True)
    assert records[0].modules["shared"]["calls"] == 2


def test_bad_input_is_a_user_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with pytest.raises(UserError, match="no module matches 'enc.*'.*0, 1"):
        tensorscope.watch(model, modules="enc.*").__enter__()
    with pytest.raises(UserError, match="every="):
        tensorscope.watch(model, every=0).__enter__()
    with pytest.raises(UserError, match="nn.Module"):
        tensorscope.watch("model").__enter__()
    assert _registries(model, None)["global"] == (0, 0, 0, 0, 0, 0)


def test_model_without_parameters() -> None:
    model = nn.Sequential(nn.ReLU(), nn.Tanh())
    with tensorscope.watch(model) as session:
        model(torch.randn(3, 3))
        session.step()
    rec = session.records[0]
    assert rec.params == {} and rec.grad_norm is None and set(rec.modules) == {"0", "1"}


def test_public_name_works_after_the_submodule_is_imported() -> None:
    import sys

    import tensorscope.watch  # noqa: F401  (binds the submodule or keeps the function)

    watch_module = sys.modules["tensorscope.watch"]
    model = nn.Linear(2, 1)
    with tensorscope.watch(model) as session:
        model(torch.randn(3, 2)).sum().backward()
        session.step()
    assert len(session.records) == 1
    assert watch_module.WatchSession is type(session)


def test_grad_scaler_amp_fields_and_unscaled_grad_norm() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    x = torch.randn(8, 4)
    with tensorscope.watch(model, opt, scaler) as session:
        opt.zero_grad()
        scaler.scale(model(x).pow(2).mean()).backward()
        scaler.unscale_(opt)
        true_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
        scaler.step(opt)
        scaler.update()
    rec = session.records[0]
    assert rec.amp["scale"] == 1024.0
    assert rec.grad_norm == pytest.approx(true_norm, rel=1e-5)  # measured scaled, reported unscaled
    assert rec.grad_norm_clipped is None


@pytest.mark.parametrize("init_scale", [2.0 ** 16, 2.0 ** 100])
def test_per_module_gradient_norms_are_unscaled_under_a_grad_scaler(init_scale: float) -> None:
    # Found on the Training screen of an AMP replay: the per-module gradient norms read
    # 1e5 where the weights' read 0.4 — the outputs' gradients were the scaled loss's.
    # A walk-through then saw them turn inf once a long run's scale passed ~1e19 (their
    # float32 squares overflowed before the scale was divided out).
    def module_grads(scaled: bool) -> dict[str, float]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", init_scale=init_scale) if scaled else None
        x = torch.randn(16, 4)
        with tensorscope.watch(model, opt, scaler, max_overhead=None) as session:
            for _ in range(2):  # the first step before any scale is read, then after
                opt.zero_grad()
                loss = model(x).pow(2).mean()
                (scaler.scale(loss) if scaled else loss).backward()
                if scaled:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
        assert all(r.signals["detail"] for r in session.records)
        return [{path: stats["grad_norm"] for path, stats in r.modules.items()}
                for r in session.records]

    for plain, scaled in zip(module_grads(False), module_grads(True), strict=True):
        assert plain and scaled.keys() == plain.keys()
        assert scaled == {path: pytest.approx(value, rel=1e-5) for path, value in plain.items()}


def test_a_wide_gradient_norm_is_summed_in_pieces_and_matches_the_plain_one() -> None:
    from tensorscope.stats import WIDE_CHUNK, grad_stats

    g = torch.randn(2 * WIDE_CHUNK + 5)
    wide = grad_stats(g, wide=True)
    assert wide.dtype == torch.float64
    assert wide.item() == pytest.approx(float(g.double().pow(2).sum()), rel=1e-12)
    huge = torch.full((10,), 1e20)
    assert grad_stats(huge).item() == float("inf")  # float32 squares overflow...
    assert grad_stats(huge, wide=True).item() == pytest.approx(10 * 1e40)  # ...float64 ones do not


def test_a_huge_grad_scaler_scale_still_gives_a_finite_unscaled_norm() -> None:
    # A long run's scale keeps doubling: at 2**100, scaled float32 gradients are finite
    # but their squares are not, so a float32 norm of them is inf.
    torch.manual_seed(0)
    model = nn.Linear(64, 8)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100, growth_interval=10**6)
    true = []
    with tensorscope.watch(model, opt, scaler) as session:
        for _ in range(6):
            opt.zero_grad()
            scaler.scale(model(torch.randn(32, 64)).pow(2).mean()).backward()
            scaler.unscale_(opt)
            true.append(float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])))
            scaler.step(opt)
            scaler.update()
    norms = [r.grad_norm for r in session.records]
    assert all(r.amp["scale"] == 2.0 ** 100 and not r.amp["skipped"] for r in session.records)
    assert norms == [pytest.approx(t, rel=1e-5) for t in true]


def test_clipping_reported_separately() -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with tensorscope.watch(model, opt) as session:
        (model(torch.randn(8, 4)) * 100).pow(2).mean().backward()
        before = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5).item()
        opt.step()
    rec = session.records[0]
    assert rec.grad_norm == pytest.approx(before, rel=1e-5)
    assert rec.grad_norm_clipped == pytest.approx(0.5, rel=1e-4)


def test_device_mismatch_seen_before_the_users_error() -> None:
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(Exception):
        with tensorscope.watch(model) as session:
            model(torch.randn(2, 4, device="meta")).sum().backward()
            raise RuntimeError("meta tensors cannot step")  # in case meta ran through
    notes = session.records[-1].signals["device_mismatch"]
    assert notes and notes[0] == "0: param on cpu, input on meta"
    assert session.records[-1].signals["partial"] is True
    assert session.records[-1].signals["hook_errors"] == 0


def test_update_ratio_of_a_large_parameter_from_a_sample() -> None:
    from tensorscope.watch import UPDATE_SAMPLE

    torch.manual_seed(0)
    model = nn.Linear(600, 200)  # 120,000 weights > UPDATE_SAMPLE
    assert model.weight.numel() > UPDATE_SAMPLE
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    with tensorscope.watch(model, opt) as session:
        model(torch.randn(16, 600)).pow(2).mean().backward()
        opt.step()
    true_ratio = ((model.weight - before).norm() / model.weight.norm()).item()
    entry = session.records[0].params["weight"]
    assert entry["weight_norm"] == pytest.approx(model.weight.norm().item(), rel=1e-5)
    assert entry["update_ratio"] == pytest.approx(true_ratio, rel=0.1)
    assert session.records[0].params["bias"]["update_ratio"] == pytest.approx(
        (0.1 * model.bias.grad).norm().item() / model.bias.norm().item(), rel=1e-4)


def test_loss_argument_reads_only_that_criterion() -> None:
    model = nn.Linear(3, 1)
    main, aux = nn.MSELoss(), nn.L1Loss()
    x, y = torch.randn(6, 3), torch.randn(6, 1)
    with tensorscope.watch(model, loss=main) as session:
        out = model(x)
        total = main(out, y) + 0.1 * aux(out, y)
        total.backward()
        session.step()
    assert session.records[0].loss == pytest.approx(main(model(x), y).item(), rel=1e-5)
    with pytest.raises(UserError, match="loss="):
        tensorscope.watch(model, loss="mse").__enter__()


def test_bf16_autocast_recorded() -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with tensorscope.watch(model, opt) as session:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(torch.randn(3, 4))
        out.float().sum().backward()
        opt.step()
    rec = session.records[0]
    assert rec.amp == {"scale": None, "growth_tracker": None, "skipped": None, "autocast_dtype": "bfloat16"}
    assert rec.modules["(model)"]["dtype"] == "bfloat16"


def test_every_record_has_memory_read_at_most_every_tenth_of_a_second(monkeypatch) -> None:
    # Reading RSS is a system call: steps in quick succession share one reading, but
    # every record still carries the memory field (its own copy).
    import importlib

    watch_module = importlib.import_module("tensorscope.watch")

    reads = []
    real = watch_module.memory_snapshot
    monkeypatch.setattr(watch_module, "memory_snapshot", lambda d: reads.append(d) or real(d))
    monkeypatch.setattr(watch_module, "MEMORY_EVERY_S", 3600.0)
    ex = zoo.get("sequential_mlp")
    with tensorscope.watch(ex.model, ex.optimizer) as session:
        for _ in range(4):
            ex.step()
    memories = [r.memory for r in session.records]
    assert len(reads) == 1 and len(memories) == 4
    assert all(m == memories[0] and m["kind"] == "cpu-rss" for m in memories)
    assert memories[0] is not memories[1]


def test_a_session_attached_mid_step_gets_detail_on_its_first_full_step() -> None:
    """`tensorscope run` attaches watch() inside the first optimizer.step(): that step had no
    forward to observe, so detail must come on the next step, not a whole period later."""
    import torch
    import torch.nn as nn

    import tensorscope

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    loss = nn.functional.mse_loss(net(x), y)
    loss.backward()  # forward and backward happen before the session exists
    with tensorscope.watch(net, opt, every=25) as session:
        opt.step()  # ends step 1, which saw no forward
        for _ in range(3):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    with_modules = [r.step for r in session.records if r.modules]
    assert with_modules == [2], with_modules  # the first full step; the next would be 27


def test_detail_schedule_keeps_the_measured_overhead_within_the_share() -> None:
    from tensorscope.watch import MAX_DETAIL_GAP, UNSEEN_COST, WatchSession

    s = WatchSession(nn.Linear(2, 2), max_overhead=0.03 * UNSEEN_COST)  # 3 % measured
    s.min_budget_s = 0.0
    # 10 ms of detail on a 100 ms step, no plain step measured yet: 10 / 3 -> every 4th.
    s._step = 1
    s._schedule_detail(True, cost=0.010, step_time=0.110, seen=True)
    assert (s.detail_every, s._next_detail) == (4, 5)
    for step in (2, 3, 4):
        s._step = step
        s._schedule_detail(False, cost=0.001, step_time=0.101, seen=True)
    # Plain steps cost 1 ms: 9 ms of extra detail into the 2 ms left -> every 5th step,
    # averaging 1 + 9/5 = 2.8 ms <= 3 ms.
    s._step = 5
    s._schedule_detail(True, cost=0.010, step_time=0.110, seen=True)
    assert s.detail_every == 5 and s._next_detail == 10
    # When plain steps alone use the share, the gap grows (at most twofold) to the cap.
    gaps = []
    for step in range(10, 200):
        s._step = step
        s._schedule_detail(False, cost=0.004, step_time=0.104, seen=True)
        s._schedule_detail(True, cost=0.010, step_time=0.110, seen=True)
        gaps.append(s.detail_every)
    assert gaps[-1] == MAX_DETAIL_GAP and all(b <= max(2 * a, 4) for a, b in zip(gaps, gaps[1:]))
    # A session attached mid-step saw no forward: the next step gets detail at once.
    s._step = 300
    s._schedule_detail(True, cost=0.010, step_time=0.110, seen=False)
    assert s._next_detail == 301


def test_short_steps_wait_up_to_a_second_for_detail_rather_than_fifty_steps() -> None:
    from tensorscope.watch import MAX_DETAIL_WAIT_S, WatchSession

    s = WatchSession(nn.Linear(2, 2), max_overhead=0.02)
    s.min_budget_s = 0.0
    gaps = []
    for step in range(1, 400):  # 7 ms of the user's work a step, detail 2.5 ms: over budget
        s._step = step
        s._schedule_detail(False, cost=0.0004, step_time=0.0074, seen=True)
        s._schedule_detail(True, cost=0.0025, step_time=0.0095, seen=True)
        gaps.append(s.detail_every)
    assert gaps[-1] == int(MAX_DETAIL_WAIT_S / 0.007) == 142


def test_without_a_budget_detail_comes_every_kth_step_whatever_it_costs() -> None:
    from tensorscope.watch import WatchSession

    s = WatchSession(nn.Linear(2, 2), every=3, max_overhead=None)
    s._step = 1
    s._schedule_detail(True, cost=1.0, step_time=1.01, seen=True)
    assert (s.detail_every, s._next_detail) == (3, 4)


def test_default_watch_spaces_detail_and_norms_but_records_every_loss() -> None:
    from tensorscope.watch import MAX_NORM_GAP, PRE_CLIP_PROBE_STEPS

    ex = zoo.get("sequential_mlp")
    with tensorscope.watch(ex.model, ex.optimizer, max_overhead=0.001) as session:
        session.min_budget_s = 0.0  # a toy model: make detail "expensive" for the share
        session.norm_always_s = 0.0  # and its pass over the gradients too
        losses = [ex.step() for _ in range(30)]
        hooked = session.hooks.hook_count
    records = session.records
    assert [r.loss for r in records] == pytest.approx(losses, rel=1e-6)
    # The exact norm is taken on the first steps, on every detail step, and otherwise as
    # often as its share of the budget allows: each measured step says when the next comes.
    normed = [r for r in records if r.grad_norm is not None]
    assert [r.step for r in normed[:PRE_CLIP_PROBE_STEPS]] == list(range(1, PRE_CLIP_PROBE_STEPS + 1))
    assert all(r.grad_norm is not None for r in records if r.signals["detail"])
    assert len(normed) < len(records)  # this budget cannot pay for a pass every step
    for a, b in zip(normed, normed[1:]):
        assert b.step - a.step <= a.signals["grad_norm_every"] <= MAX_NORM_GAP
    detail = [r for r in records if r.signals["detail"]]
    assert detail[0].step == 1 and len(detail) < len(records)
    assert all(bool(r.modules) == bool(r.signals["detail"]) for r in records)
    for a, b in zip(detail, detail[1:]):
        assert b.step - a.step == a.signals["detail_every"]
    assert hooked >= 0 and session.hook_count == 0


def test_norm_schedule_spaces_the_pass_by_its_share_of_the_budget() -> None:
    from tensorscope.watch import MAX_NORM_GAP, NORM_ALWAYS_S, NORM_SHARE, WatchSession

    def gaps(cost: float, work: float, max_overhead: float | None = 0.02, passes: int = 1,
             rounds: int = 6, rest: float | None = None) -> list[int]:
        """The spacing after each of ``rounds`` steps that took the norm at this price
        (``rest``: the other bookkeeping of a plain step, when measured)."""
        s = WatchSession(nn.Linear(2, 2), max_overhead=max_overhead)
        s.min_budget_s = 0.0
        s._step, out = 10, []
        for _ in range(rounds):
            s._work_s.append(work)
            if rest is not None:
                s._cost_rest.append(rest)
            s._norm_due, s._norm_time, s._norm_passes = True, cost, passes
            s._schedule_norm()
            assert s._next_norm == s._step + s.norm_every
            out.append(s.norm_every)
            s._step = s._next_norm
        return out

    # 2 % of a 7 ms step, a third of it for the norm: 46.7 µs, below the floor of 50 µs.
    assert NORM_SHARE * 0.02 * 0.007 < NORM_ALWAYS_S
    # Three readings first, then 120 µs against 50: growing twofold at most.
    assert gaps(0.000120, 0.007) == [1, 1, 2, 3, 3, 3]
    assert gaps(0.000040, 0.007) == [1] * 6  # under the floor: every step
    assert gaps(0.000400, 0.100) == [1] * 6  # 400 µs fits a third of 2 % of 100 ms
    assert gaps(0.010, 0.007) == [1, 1, 2, 4, MAX_NORM_GAP, MAX_NORM_GAP]
    assert gaps(0.010, 0.007, max_overhead=None) == [1] * 6  # no budget: every step
    # The floor is a price per pass: a full step of a script that clips makes two passes
    # (and gradient accumulation more), each under the floor: still every step.
    assert gaps(2 * 0.8 * NORM_ALWAYS_S, 0.001, passes=2) == [1] * 6
    # ...while the budget is charged all of them: two passes of 120 µs each.
    assert gaps(0.000240, 0.007, passes=2)[-1] == 5
    # The rest of the bookkeeping is paid first (with PyTorch's unseen share on top):
    # 2 % of 7 ms is 140 µs; 70 µs x UNSEEN_COST leaves 28 µs of it for a 120 µs pass
    # (the third alone would have allowed every 3rd step)...
    assert gaps(0.000120, 0.007, rest=0.000070)[-1] == 5
    # ...and 90 µs leaves nothing: the pass comes once in MAX_NORM_GAP steps, reached
    # by doubling, however cheap it would be against a third of the budget.
    assert gaps(0.000120, 0.007, rest=0.000090) == [1, 1, 2, 4, MAX_NORM_GAP, MAX_NORM_GAP]
    assert gaps(0.000070, 0.007, rest=0.000090)[-1] == MAX_NORM_GAP
    # On long steps the same bookkeeping leaves the third whole: unchanged.
    assert gaps(0.000400, 0.100, rest=0.000090) == [1] * 6
    # A pass under the floor stays on every step whatever the rest costs.
    assert gaps(0.000040, 0.007, rest=0.000500) == [1] * 6
    # A pass is priced by the least of the last readings: a loaded machine's wall clock
    # only reads more (preempted mid-pass), and a cheap pass must stay on every step.
    s = WatchSession(nn.Linear(2, 2), max_overhead=0.02)
    s.min_budget_s = 0.0
    for step, cost in enumerate([0.004, 0.00001, 0.003, 0.002, 0.00002, 0.005], start=10):
        s._step = step
        s._work_s.append(0.007)
        s._norm_due, s._norm_time, s._norm_passes = True, cost, 1
        s._schedule_norm()
        assert s.norm_every == 1
    # A step that was not due changes nothing; the first steps' costs are not kept.
    s = WatchSession(nn.Linear(2, 2), max_overhead=0.02)
    s._step, s._norm_due, s._norm_time, s._norm_passes, s._next_norm = 7, False, 1.0, 1, 9
    s._schedule_norm()
    assert s._next_norm == 9 and not s._norm_costs
    s._step, s._norm_due = 2, True
    s._schedule_norm()
    assert not s._norm_costs


def test_a_detail_gap_set_on_short_steps_gives_way_once_steps_grow() -> None:
    # Found in review: a gap sized while steps took 1 ms (a second of them: ~1000 steps)
    # held when steps then took 100 ms: 100 s without detail.
    from tensorscope.watch import MAX_DETAIL_GAP, MAX_DETAIL_WAIT_S, WatchSession

    s = WatchSession(nn.Linear(2, 2), max_overhead=0.02)
    s.min_budget_s = 0.0
    for step in range(1, 400):  # 1 ms of the user's work, detail 2.5 ms: over budget
        s._step = step
        s._schedule_detail(False, cost=0.0004, step_time=0.0014, seen=True)
        s._schedule_detail(True, cost=0.0025, step_time=0.0035, seen=True)
    assert s.detail_every > MAX_DETAIL_GAP
    waited = 0
    while not s._is_detail(step + 1) and waited < 2000:  # now 100 ms steps, plain
        step += 1
        waited += 1
        s._step = step
        s._schedule_detail(False, cost=0.0004, step_time=0.1004, seen=True)
    assert waited <= max(MAX_DETAIL_GAP, MAX_DETAIL_WAIT_S / 0.1)


def test_watch_without_a_budget_takes_the_norm_every_step() -> None:
    ex = zoo.get("sequential_mlp")
    with tensorscope.watch(ex.model, ex.optimizer, max_overhead=None) as session:
        session.norm_always_s = 0.0
        for _ in range(12):
            ex.step()
    assert all(r.grad_norm is not None and r.signals["grad_norm_every"] == 1
               for r in session.records)


def test_module_hooks_are_removed_between_detail_steps() -> None:
    from tensorscope.hooks import HookSet

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    hooks = HookSet(model).attach()
    try:
        assert [len(m._forward_hooks) for m in model] == [1, 1]
        hooks.recording = False
        assert [len(m._forward_hooks) for m in model] == [0, 0] and hooks.names == ["0", "1"]
        model(torch.randn(2, 4))
        assert not hooks.take().pending
        hooks.recording = True
        model(torch.randn(2, 4))
        assert set(hooks.take().pending) == {"0", "1"}
    finally:
        hooks.detach()
    assert [len(m._forward_hooks) for m in model] == [0, 0]


def _true_norm(model: nn.Module) -> float:
    return float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())))


def test_eval_mode_training_with_a_scaler_reports_the_unscaled_norm() -> None:
    # Fine-tuning with frozen BatchNorm runs the model in eval mode and still steps.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1)).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with tensorscope.watch(model, opt, scaler, loss=nn.MSELoss()) as session:
        crit = session._loss_module
        for _ in range(3):
            opt.zero_grad()
            scaler.scale(crit(model(torch.randn(16, 4)), torch.randn(16, 1))).backward()
            scaler.unscale_(opt)
            true = _true_norm(model)
            scaler.step(opt)
            scaler.update()
            rec = session.records[-1]
            assert rec.grad_norm == pytest.approx(true, rel=1e-4)
            assert rec.signals["backward_passes"] == 1


def test_loss_is_the_criterion_value_even_if_changed_in_place_later() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = nn.MSELoss()
    with tensorscope.watch(model, opt) as session:
        opt.zero_grad()
        loss = crit(model(torch.randn(8, 4)), torch.randn(8, 1))
        value = loss.item()
        loss /= 4  # gradient accumulation style
        loss.backward()
        opt.step()
    assert session.records[-1].loss == pytest.approx(value, rel=1e-6)


def test_clipping_through_data_is_seen_after_clipping() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with tensorscope.watch(model, opt) as session:
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        for p in model.parameters():
            p.grad.data.clamp_(-0.01, 0.01)  # no version bump: must still be measured
        after = _true_norm(model)
        opt.step()
    assert session.records[-1].grad_norm_clipped == pytest.approx(after, rel=1e-4)


def test_a_failed_record_does_not_stop_detail() -> None:
    ex = zoo.get("sequential_mlp")
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("checksum failed")
        return None

    with tensorscope.watch(ex.model, ex.optimizer, max_overhead=None) as session:
        session.extra_fetch = flaky
        for _ in range(5):
            ex.step()
    assert session.errors == 1
    assert [r.step for r in session.records if r.signals["detail"]] == [1, 3, 4, 5]


def test_a_criterion_built_each_step_is_found_again() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with tensorscope.watch(model, opt) as session:
        for _ in range(6):
            opt.zero_grad()
            nn.MSELoss()(model(torch.randn(8, 4)), torch.randn(8, 1)).backward()
            opt.step()
    losses = [r.loss for r in session.records]
    assert losses[:2] == [pytest.approx(v) for v in losses[:2]] and None not in losses[:2]
    assert losses.count(None) <= 1 and losses[-1] is not None  # one step to notice, then found
    assert session.hook_count == 0


def _true_total_norm(model: nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack(
        [p.grad.norm() for p in model.parameters() if p.grad is not None])))


def test_plain_steps_leave_backward_alone_and_still_record_exact_loss_and_norm() -> None:
    # every=5 without a budget: detail on steps 1 and 6; steps 2-3 are full (the first
    # steps watch backward), steps 4-5 plain.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    crit = nn.MSELoss()
    losses, norms, output_hooks = [], [], []
    with tensorscope.watch(model, opt, every=5, max_overhead=None) as session:
        for _ in range(6):
            opt.zero_grad()
            loss = crit(model(torch.randn(8, 3)), torch.randn(8, 2))
            output_hooks.append(len(session._output_handles))
            losses.append(loss.item())
            loss.backward()
            norms.append(_true_total_norm(model))
            opt.step()
    recs = session.records
    assert output_hooks == [1, 1, 1, 0, 0, 1]
    assert [r.loss for r in recs] == pytest.approx(losses, rel=1e-6)
    assert [r.grad_norm for r in recs] == pytest.approx(norms, rel=1e-5)
    for r in recs[3:5]:  # plain: nothing measured that needs backward hooks or weights
        assert r.signals["grad_carried_over"] is None and r.signals["backward_passes"] is None
        assert r.params == {} and r.signals["params_unchanged"] is None
    for r in recs[1:3]:  # full, no detail
        assert r.signals["grad_carried_over"] == [] and r.signals["backward_passes"] == 1
    assert set(recs[0].params) == set(recs[5].params) == {n for n, _ in model.named_parameters()}
    assert recs[5].signals["params_unchanged"] == []


def test_a_loss_changed_in_place_on_a_plain_step_is_dropped_then_copied() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = nn.MSELoss()
    values = []
    with tensorscope.watch(model, opt, every=10, max_overhead=None) as session:
        for i in range(7):
            opt.zero_grad()
            loss = crit(model(torch.randn(8, 4)), torch.randn(8, 1))
            values.append(loss.item())
            if i >= 4:
                loss /= 4  # from step 5 on: the value the criterion gave is overwritten
            loss.backward()
            opt.step()
    recs = session.records
    assert [r.loss for r in recs[:4]] == pytest.approx(values[:4], rel=1e-6)
    assert recs[4].loss is None  # first seen on a plain step: that value is gone
    assert [r.loss for r in recs[5:]] == pytest.approx(values[5:], rel=1e-6)  # copied since


def test_a_plain_step_reports_a_weight_whose_gradient_is_not_finite() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with tensorscope.watch(model, opt, every=10, max_overhead=None) as session:
        for i in range(5):
            opt.zero_grad()
            model(torch.randn(4, 2)).sum().backward()
            if i == 4:
                model[1].bias.grad.fill_(float("nan"))
            opt.step()
    last = session.records[-1]
    assert last.signals["detail"] is False
    assert last.params == {"1.bias": {"grad_norm": pytest.approx(float("nan"), nan_ok=True),
                                      "nonfinite_grad": True}}


def test_a_scheduled_norm_is_exact_when_taken_and_none_otherwise() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    crit = nn.CrossEntropyLoss()
    expected = []
    with tensorscope.watch(model, opt, max_overhead=0.001) as session:
        session.min_budget_s = session.norm_always_s = 0.0
        for _ in range(40):
            opt.zero_grad()
            crit(model(torch.randn(4, 8)), torch.randint(0, 3, (4,))).backward()
            expected.append(torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in model.parameters()])).item())
            opt.step()
    records = session.records
    assert len(records) == 40
    taken = [(r.step, r.grad_norm) for r in records if r.grad_norm is not None]
    assert 40 // 8 <= len(taken) < 40  # at least one in MAX_NORM_GAP, not every one
    for step, norm in taken:
        assert norm == pytest.approx(expected[step - 1], rel=1e-5)
    assert all(r.params == {} for r in records if r.grad_norm is None)
