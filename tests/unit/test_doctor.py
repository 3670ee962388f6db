"""The doctor on small hand-made records, on errors and graphs, and on a healthy run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tensorscope.doctor import CODES, Finding, diagnose
from tensorscope.telemetry import StepRecord


def rec(step: int, **kw) -> StepRecord:
    signals = kw.pop("signals", {})
    return StepRecord(step=step, signals=signals, **kw)


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def test_nothing_in_nothing_out() -> None:
    assert diagnose([]) == []


def test_missing_zero_grad_vs_intentional_accumulation() -> None:
    bug = [rec(0, grad_norm=1.0, signals={"grad_carried_over": []}),
           rec(1, grad_norm=2.0, signals={"grad_carried_over": ["w"]})]
    found = diagnose(bug)
    assert codes(found) == {"missing-zero-grad"}
    assert found[0].evidence["grad_norm_growth"] == 2.0
    accum = [rec(i, grad_norm=1.0, signals={"grad_carried_over": [], "backward_passes": 4}) for i in range(5)]
    assert diagnose(accum) == []


def test_json_records_are_accepted() -> None:
    data = rec(1, signals={"grad_carried_over": ["w"]}).to_json()
    assert codes(diagnose([data])) == {"missing-zero-grad"}


@pytest.mark.parametrize("signal,code", [
    ("eval_forward_with_graph", "eval-without-no-grad"),
    ("train_mode_forward_no_grad", "train-mode-in-eval"),
])
def test_eval_signals(signal: str, code: str) -> None:
    assert codes(diagnose([rec(0, phase="eval", signals={signal: 2})])) == {code}
    assert diagnose([rec(0, phase="eval", signals={signal: 0})]) == []


def test_item_sync_needs_most_steps() -> None:
    every = [rec(i, signals={"host_syncs": 1}) for i in range(6)]
    assert codes(diagnose(every)) == {"item-sync-in-loop"}
    once = [rec(i, signals={"host_syncs": 1 if i == 5 else 0}) for i in range(6)]
    assert diagnose(once) == []
    unknown = [rec(i, signals={"host_syncs": None}) for i in range(6)]
    assert diagnose(unknown) == []


def test_nonfinite_loss() -> None:
    found = diagnose([rec(0, loss=1.0), rec(1, loss=math.nan)])
    assert "nonfinite-loss" in codes(found)


def test_exploding_and_vanishing() -> None:
    assert "exploding-gradients" in codes(diagnose([rec(i, grad_norm=10.0 ** i) for i in range(6)]))
    assert diagnose([rec(i, grad_norm=1.0, loss=1.0) for i in range(6)]) == []
    vanish = [rec(i, grad_norm=1e-9, loss=0.7) for i in range(4)]
    assert codes(diagnose(vanish)) == {"vanishing-gradients"}
    converged = [rec(i, grad_norm=1e-9, loss=1e-6) for i in range(4)]
    assert diagnose(converged) == []
    layers = [rec(i, grad_norm=1.0, params={"a.weight": {"grad_norm": 1.0}, "b.weight": {"grad_norm": 1e-8}})
              for i in range(3)]
    assert codes(diagnose(layers)) == {"vanishing-gradients"}


def test_params_not_updating() -> None:
    frozen = [rec(i, signals={"params_unchanged": ["head.bias"]}) for i in range(3)]
    assert codes(diagnose(frozen)) == {"params-not-updating"}
    once = [rec(i, signals={"params_unchanged": ["head.bias"] if i == 0 else []}) for i in range(3)]
    assert diagnose(once) == []
    outside = [rec(0, signals={"params_not_in_optimizer": ["extra"]})]
    assert codes(diagnose(outside)) == {"params-not-updating"}


def test_dead_relu() -> None:
    dead = [rec(i, modules={"act": {"dead_fraction": 0.8}}) for i in range(3)]
    assert codes(diagnose(dead)) == {"dead-relu"}
    alive = [rec(i, modules={"act": {"dead_fraction": 0.1}}) for i in range(3)]
    assert diagnose(alive) == []


def test_amp_skips_and_scheduler() -> None:
    def amp(i, skipped, lr):
        return rec(i, lr=[lr], amp={"scale": 1024.0, "skipped": skipped})
    isolated = [amp(i, i == 3, 0.1) for i in range(12)]
    assert diagnose(isolated) == []          # calibration: normal
    sched = [amp(i, i == 3, 0.1 if i <= 3 else 0.09) for i in range(12)]
    found = diagnose(sched)
    assert codes(found) == {"amp-skipped-steps"}
    assert found[0].evidence["scheduler_stepped_on_skipped"] == [3]
    frequent = [amp(i, i % 3 == 0, 0.1) for i in range(12)]
    assert codes(diagnose(frequent)) == {"amp-skipped-steps"}


def test_lr_too_high() -> None:
    climbing = [rec(i, loss=l, lr=[1.0]) for i, l in enumerate([1.0, 0.8, 0.9, 3.0, 9.0, 30.0, 100.0])]
    assert "lr-too-high" in codes(diagnose(climbing))
    noisy = [rec(i, loss=l) for i, l in enumerate([1.0, 0.8, 0.9, 0.7, 1.1, 0.8, 0.75])]
    assert diagnose(noisy) == []


def test_lr_too_high_names_the_lr_when_the_loss_went_not_the_last_one() -> None:
    # Walk-through: a OneCycle run diverged at lr ~0.1, and the finding said "lr 4e-07",
    # the annealed value of its last step.
    lrs = [0.01, 0.05, 0.1, 0.1, 0.05, 0.01, 1e-3, 4e-7]
    losses = [1.0, 0.8, 0.9, 9.0, 40.0, float("nan"), float("nan"), float("nan")]
    found = diagnose([rec(i + 1, loss=l, lr=[lr]) for i, (l, lr) in enumerate(zip(losses, lrs))])
    lr_high = next(f for f in found if f.code == "lr-too-high")
    assert lr_high.evidence["diverged_at_step"] == 4 and lr_high.evidence["lr"] == [0.1]


def test_errors() -> None:
    assert codes(diagnose(errors=[("RuntimeError", "view size is not compatible with input tensor's size and stride")])) == {"view-non-contiguous"}
    assert codes(diagnose(errors=[{"exc_type": "RuntimeError", "message": "Expected all tensors to be on the same device, but found at least two devices"}])) == {"device-mismatch"}
    assert codes(diagnose(errors=[RuntimeError("one of the variables needed for gradient computation has been modified by an inplace operation")])) == {"inplace-modified-saved-tensor"}
    assert diagnose(errors=[ValueError("something else")]) == []
    assert codes(diagnose([rec(0, signals={"device_mismatch": ["fc: param on cuda:0, input on cpu"]})])) == {"device-mismatch"}


def test_graph_walk_finds_inplace_before_backward() -> None:
    x = torch.randn(3, requires_grad=True)
    y = x.exp()
    y.add_(1)
    assert codes(diagnose(graph=y.sum())) == {"inplace-modified-saved-tensor"}
    z = x.exp() + 1
    assert diagnose(graph={"z": z.sum()}) == []


def test_model_param_without_grad() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[1](torch.randn(2, 3)).sum().backward()  # model[0] never used
    assert codes(diagnose([rec(0)], model=model)) == {"params-not-updating"}


def test_finding_json_and_codes() -> None:
    f = diagnose([rec(1, signals={"grad_carried_over": ["w"]})])[0]
    data = f.to_json()
    assert set(data) == {"code", "severity", "title", "evidence", "fix", "screen"}
    assert f.code in CODES and f.severity in {"error", "warning", "info"}


@pytest.mark.parametrize("recorder", ["probe", "watch"])
def test_syllabus_minimal_example_yields_no_findings(recorder: str) -> None:
    """A healthy loop in the syllabus's style: zero_grad per step, train()/eval() switched,
    evaluation under no_grad, one metric fetch per epoch. The doctor must stay silent, on
    the demos' probe records and on tensorscope.watch()'s alike."""
    import tensorscope
    from tensorscope.demos._probe import Probe

    gen = torch.Generator().manual_seed(7)
    features = torch.randn(600, 20, generator=gen)
    labels = (features @ torch.randn(20, generator=gen) > 0).long()
    train_x, train_y, val_x, val_y = features[:480], labels[:480], features[480:], labels[480:]
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.2),
                        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    accuracy = []
    watcher = (Probe(net, optimizer, count_syncs=True) if recorder == "probe"
               else tensorscope.watch(net, optimizer))
    with watcher as probe:
        for _ in range(3):
            net.train()
            order = torch.randperm(480, generator=gen)
            for idx in order.split(64):
                optimizer.zero_grad()
                loss = criterion(net(train_x[idx]), train_y[idx])
                probe.log_loss(loss)
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                accuracy.append((net(val_x).argmax(1) == val_y).float().mean())
            if recorder == "probe":
                probe.eval_record()
    assert len(probe.records) > 20
    assert diagnose(probe.records, model=net) == []
    assert float(accuracy[-1]) > 0.6


def test_dead_relu_from_output_stats_only() -> None:
    dead = [rec(i, modules={"act": {"zero_frac": 0.97, "min": 0.0}}) for i in range(3)]
    assert codes(diagnose(dead)) == {"dead-relu"}
    signed = [rec(i, modules={"drop": {"zero_frac": 0.97, "min": -1.0}}) for i in range(3)]
    assert diagnose(signed) == []


def _watched_loop(zero_grad: bool) -> list:
    """A real run under tensorscope.watch (the hooks' records, not the demos' probe)."""
    import tensorscope

    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(64, 10, generator=gen), torch.randn(64, 1, generator=gen)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with tensorscope.watch(model, opt) as session:
        for _ in range(8):
            if zero_grad:
                opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            session.log_loss(loss)
            loss.backward()
            opt.step()
    return session.records


def test_watch_records_missing_zero_grad_and_its_fix() -> None:
    assert "missing-zero-grad" in codes(diagnose(_watched_loop(zero_grad=False)))
    assert diagnose(_watched_loop(zero_grad=True)) == []


def test_per_weight_and_frozen_checks_read_the_steps_that_measured_them() -> None:
    # Under a budget only detail steps carry per-weight norms and the unchanged list; the
    # plain steps between them (params {}, params_unchanged None) must not hide either.
    layers = {"a.weight": {"grad_norm": 1.0}, "b.weight": {"grad_norm": 1e-8}}
    recs = [rec(i, grad_norm=1.0, loss=1.0, params=layers if i % 3 == 0 else {},
                signals={"params_unchanged": ["b.weight"] if i % 3 == 0 else None})
            for i in range(10)]
    assert codes(diagnose(recs)) == {"vanishing-gradients", "params-not-updating"}


def test_item_sync_on_a_cpu_run_is_named_as_information_not_a_fault() -> None:
    # On the CPU a host read waits for nothing queued: the habit is still named (it stalls
    # every step on a GPU), at "info"; with CUDA memory readings it stays a warning.
    def run(kind: str) -> list[StepRecord]:
        return [StepRecord(step=i, loss=1.0, memory={"kind": kind},
                           signals={"host_syncs": 1}) for i in range(1, 21)]

    cpu = {f.code: f for f in diagnose(run("cpu-rss"))}["item-sync-in-loop"]
    cuda = {f.code: f for f in diagnose(run("cuda"))}["item-sync-in-loop"]
    assert cpu.severity == "info" and "free on this CPU run" in cpu.title
    assert cuda.severity == "warning"
