"""amp-scaler: autocast runs the forward in low precision; GradScaler multiplies the loss so
small gradients survive, skips any step whose gradients overflowed, and halves its scale.
Here on CPU with bfloat16 and torch.amp.GradScaler("cpu"), with one overflow injected."""

from __future__ import annotations

import torch
from torch import nn

from tensorscope.demos._common import classification_data, small_mlp
from tensorscope.demos._probe import Probe
from tensorscope.demos._scenario import Observation, Scenario

STEPS = 12
INJECT_AT = 3
"""The loop index whose gradient overflows: the 4th step (records count steps from 1)."""

LESSON = """\
**Scale, check, skip, shrink.** Under `autocast` the forward runs matmuls in a 16-bit type.
The `GradScaler` multiplies the loss by a large scale before `backward()` so tiny gradients
do not underflow, divides them back before the step, and — if any gradient is inf/NaN —
**skips** `optimizer.step()` and halves the scale. After enough clean steps it grows again.

This CPU demo uses bfloat16 and injects one overflowing gradient (an inf written into a
grad, standing in for an fp16 overflow) at step 4: watch that step get skipped and the
scale drop from 65536 to 32768. The bug is the scheduler: stepping it unconditionally
advances the lr schedule on a step where the weights did not move. Step it only when the
scale did not drop.
"""

CODE = """\
scaler = torch.amp.GradScaler("cpu")
for xb, yb in batches:
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(model(xb), yb)
    scaler.scale(loss).backward()
    scaler.step(opt)         # skipped when a grad is inf/NaN
    scaler.update()          # ...and the scale halves
    sched.step()             # BUG: advances the lr even on a skipped step
"""

FIXED = """\
scaler = torch.amp.GradScaler("cpu")
for xb, yb in batches:
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(model(xb), yb)
    scaler.scale(loss).backward()
    before = scaler.get_scale()
    scaler.step(opt)
    scaler.update()
    if scaler.get_scale() >= before:   # the step was not skipped
        sched.step()
"""


def measure(fixed: bool) -> Observation:
    x, y = classification_data(n=STEPS * 32)
    model = small_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    scaler = torch.amp.GradScaler("cpu")
    loss_fn = nn.CrossEntropyLoss()
    with Probe(model, opt, scaler=scaler) as probe:
        for i, (xb, yb) in enumerate(zip(x.split(32), y.split(32))):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(model(xb), yb)
            probe.log_loss(loss)
            scaler.scale(loss).backward()
            if i == INJECT_AT:
                with torch.no_grad():
                    model[0].weight.grad[0, 0] = float("inf")   # a simulated overflow
            before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            record = probe.step()
            if not fixed or scaler.get_scale() >= before:
                sched.step()
            del record
    amp = [r.amp for r in probe.records]
    facts = {
        "autocast_dtype": "bfloat16 (cpu)",
        "skipped_steps": [r.step for r in probe.records if r.amp["skipped"]],
        "scales": [a["scale"] for a in amp],
        "lrs": [round(r.lr[0], 5) for r in probe.records],
        "injected_inf_at_step": INJECT_AT + 1,
    }
    return Observation(facts, probe.records)


SCENARIO = Scenario(
    name="amp-scaler", title="Autocast + GradScaler: a skipped step, and the scheduler",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("training", "doctor"),
    measure=measure, finding="amp-skipped-steps",
)
