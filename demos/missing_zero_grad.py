"""missing-zero-grad: backward() adds into .grad, so a loop without zero_grad() steps with the
sum of every gradient since the start."""

from __future__ import annotations

import torch
from torch import nn

from tensorscope.demos._common import regression_data, rounded
from tensorscope.demos._probe import Probe
from tensorscope.demos._scenario import Observation, Scenario

STEPS = 12

LESSON = """\
**Gradients add up.** `loss.backward()` does not *set* each parameter's `.grad`, it *adds*
to it. If nothing resets `.grad`, step 5 uses the sum of the gradients of steps 1–5: an
ever larger, stale direction. The loop still runs, the loss still moves — usually it
overshoots and oscillates or climbs, because the effective step keeps growing.

Watch the **grad norm** climb step after step in the bug, and stay level in the fix.
One `optimizer.zero_grad()` per step (before the forward, or right after `step()`) fixes it.
"""

CODE = """\
model = nn.Linear(10, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.02)
loss_fn = nn.MSELoss()

for step in range(12):
    loss = loss_fn(model(x), y)
    loss.backward()          # adds this step's gradient to .grad
    opt.step()               # steps with the running sum
    # no opt.zero_grad(): .grad is never reset
"""

FIXED = """\
model = nn.Linear(10, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.02)
loss_fn = nn.MSELoss()

for step in range(12):
    opt.zero_grad()          # start each step from zero
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
"""


def _setup():
    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    return model, opt, nn.MSELoss(), *regression_data()


def measure(fixed: bool) -> Observation:
    model, opt, loss_fn, x, y = _setup()
    with Probe(model, opt) as probe:
        for _ in range(STEPS):
            if fixed:
                opt.zero_grad()
            loss = loss_fn(model(x), y)
            probe.log_loss(loss)
            loss.backward()
            opt.step()
    norms = [r.grad_norm for r in probe.records]
    losses = [r.loss for r in probe.records]
    growing = sum(b > a for a, b in zip(norms, norms[1:]))
    facts = {
        "losses": rounded(losses),
        "grad_norms": rounded(norms),
        "grad_norm_growth": round(norms[-1] / norms[0], 3),
        "grad_norm_rose_on_steps": f"{growing}/{len(norms) - 1}",
        "loss_best_step": losses.index(min(losses)),
    }
    return Observation(facts, probe.records, model=model)


def _context() -> dict:
    model, opt, loss_fn, x, y = _setup()

    def model_step() -> float:
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()          # the bug, live: no zero_grad
        return float(loss)

    return {"model": model, "model_step": model_step}


SCENARIO = Scenario(
    name="missing-zero-grad", title="Forgotten zero_grad(): gradients pile up",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("training", "model", "doctor"),
    measure=measure, finding="missing-zero-grad", context=_context,
)
