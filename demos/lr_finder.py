"""lr-finder: the learning-rate range test — raise the lr exponentially batch by batch, record
the loss, and read the usable range off a loss-vs-lr curve on a log axis."""

from __future__ import annotations

import math

import torch
from torch import nn

from tensorscope.demos._common import classification_data, small_mlp
from tensorscope.demos._probe import Probe
from tensorscope.demos._scenario import Observation, Scenario

LR_MIN, LR_MAX, STEPS = 1e-6, 10.0, 100

LESSON = """\
**Let the loss pick the learning rate.** Start tiny and multiply the lr by a constant
factor every mini-batch, from 1e-6 to 10 over 100 batches, recording the loss. At first
nothing happens (the lr is too small to move anything); then the loss falls; at some lr it
turns and climbs — too high. A good lr sits about a decade below where the curve is lowest,
on the steep part of the descent.

The curve below is the measured one (lr on a log axis). Its tail is what the doctor calls
`lr-too-high`: the same detector fires on any run whose loss climbs far above its best.
"""

CODE = """\
factor = (lr_max / lr_min) ** (1 / (steps - 1))
lr = lr_min
for step, (xb, yb) in zip(range(steps), batches):
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()
    history.append((lr, loss.detach()))
    lr *= factor
"""


def measure(fixed: bool) -> Observation:
    x, y = classification_data(n=512)
    model = small_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=LR_MIN)
    loss_fn = nn.CrossEntropyLoss()
    factor = (LR_MAX / LR_MIN) ** (1 / (STEPS - 1))
    lr = LR_MIN
    with Probe(model, opt) as probe:
        for step in range(STEPS):
            for group in opt.param_groups:
                group["lr"] = lr
            i = step % 16
            xb, yb = x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            probe.log_loss(loss)
            loss.backward()
            opt.step()
            lr *= factor
    lrs = [r.lr[0] for r in probe.records]
    losses = [r.loss for r in probe.records]
    # Smooth a little (the test is noisy by nature), then find the minimum.
    smooth, avg = [], None
    for value in losses:
        v = value if math.isfinite(value) else float("inf")
        avg = v if avg is None else 0.7 * avg + 0.3 * v
        smooth.append(avg)
    best = min(range(len(smooth)), key=smooth.__getitem__)
    facts = {
        "lr_min": LR_MIN, "lr_max": LR_MAX, "steps": STEPS,
        "lr_at_lowest_loss": float(f"{lrs[best]:.3g}"),
        "suggested_lr": float(f"{lrs[best] / 10:.3g}"),
        "loss_start": round(losses[0], 4), "loss_lowest": round(smooth[best], 4),
        "loss_end": losses[-1] if not math.isfinite(losses[-1]) else round(losses[-1], 4),
        "curve": {"x": [float(f"{v:.4g}") for v in lrs],
                  "y": [float(f"{v:.4g}") if math.isfinite(v) else None for v in losses],
                  "x_label": "learning rate (log)", "y_label": "loss", "log_x": True},
    }
    return Observation(facts, probe.records)


SCENARIO = Scenario(
    name="lr-finder", title="Learning-rate range test: loss vs lr on a log axis",
    lesson=LESSON, code=CODE, fixed_code=None, screens=("training", "doctor"),
    measure=measure, finding="lr-too-high",
)
