"""grad-accumulation: several backward passes into one step, on purpose, with the loss scaled
so that the accumulated gradient equals the big batch's."""

from __future__ import annotations

import torch
from torch import nn

from tensorscope.demos._common import regression_data
from tensorscope.demos._probe import Probe
from tensorscope.demos._scenario import Observation, Scenario

MICRO = 4
STEPS = 6

LESSON = """\
**The same addition, used on purpose.** Because `backward()` adds into `.grad`, you can run
several small batches, call `backward()` on each, and step once: a big batch that does not
fit in memory. Two details make it right:

- divide each micro-batch loss by the number of micro-batches, so the sum of their
  gradients is the *mean* over the big batch (not N times it);
- reset `.grad` after each optimizer step — the sum must start fresh every big step.

The measurement: four scaled micro-batch gradients equal the full-batch gradient to float
precision, four backward passes land in every step, and the doctor does **not** call this
missing-zero-grad (the grads are reset after each step).
"""

CODE = """\
ACCUM = 4
opt.zero_grad()
for i, (xb, yb) in enumerate(micro_batches):      # batches of 8 = one batch of 32
    loss = loss_fn(model(xb), yb) / ACCUM         # scale: the sum becomes a mean
    loss.backward()                               # adds into .grad
    if (i + 1) % ACCUM == 0:
        opt.step()
        opt.zero_grad()                           # fresh sum for the next big step
"""


def measure(fixed: bool) -> Observation:
    x, y = regression_data(n=32)
    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    loss_fn = nn.MSELoss()
    # The full-batch gradient, for comparison.
    loss_fn(model(x), y).backward()
    full = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    for xb, yb in zip(x.chunk(MICRO), y.chunk(MICRO)):
        (loss_fn(model(xb), yb) / MICRO).backward()
    accumulated = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Probe(model, opt) as probe:
        opt.zero_grad()
        for i in range(STEPS * MICRO):
            j = i % MICRO
            xb, yb = x.chunk(MICRO)[j], y.chunk(MICRO)[j]
            loss = loss_fn(model(xb), yb) / MICRO
            probe.log_loss(loss * MICRO)
            loss.backward()
            if (i + 1) % MICRO == 0:
                opt.step()
                opt.zero_grad()
    facts = {
        "max_abs_diff_vs_full_batch_grad": float((full - accumulated).abs().max()),
        "unscaled_sum_would_be_x": MICRO,
        "backward_passes_per_step": [r.signals["backward_passes"] for r in probe.records],
        "steps": len(probe.records),
        "losses": [round(r.loss, 4) for r in probe.records],
    }
    return Observation(facts, probe.records, model=model)


SCENARIO = Scenario(
    name="grad-accumulation", title="Gradient accumulation, done on purpose",
    lesson=LESSON, code=CODE, fixed_code=None, screens=("training", "doctor"),
    measure=measure, finding=None,
)
