"""item-sync: .item() (or .cpu(), float(t), printing a tensor) copies to the host, and on an
accelerator that means waiting for all queued work. Once per step adds up."""

from __future__ import annotations

import torch
from torch import nn

from tensorscope.demos._common import classification_data, small_mlp
from tensorscope.demos._probe import Probe
from tensorscope.demos._scenario import Observation, Scenario

STEPS = 16
BATCH = 32

LESSON = """\
**A host copy is a wait.** On a GPU, kernels are queued and the Python loop races ahead.
`loss.item()` needs the number *now*, so the CPU stops until the device has finished
everything queued — the pipeline drains every step. `float(t)`, `t.cpu()`, `t.tolist()`
and formatting a tensor in an f-string do the same.

Keep running totals on the device (`total += loss.detach()`) and fetch once per epoch or
every N steps. This demo runs on CPU, where a host copy costs nothing extra, so it counts
the syncs instead of timing them: one per step in the bug, one per epoch in the fix. On
CUDA, `torch.cuda.set_sync_debug_mode("warn")` reports each one.
"""

CODE = """\
total = 0.0
for xb, yb in loader:
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()
    total += loss.item()        # host sync, every step
print(total / len(loader))
"""

FIXED = """\
total = torch.zeros(())
for xb, yb in loader:
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()
    total += loss.detach()      # stays on the device
print((total / len(loader)).item())   # one sync per epoch
"""


def measure(fixed: bool) -> Observation:
    x, y = classification_data(n=STEPS * BATCH)
    model = small_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    with Probe(model, opt, count_syncs=True) as probe:
        total = torch.zeros(()) if fixed else 0.0
        for xb, yb in zip(x.split(BATCH), y.split(BATCH)):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            probe.log_loss(loss)
            loss.backward()
            if fixed:
                total += loss.detach()
            else:
                total += loss.item()
            opt.step()
        mean = (total / STEPS).item() if fixed else total / STEPS
    syncs = [r.signals["host_syncs"] for r in probe.records]
    facts = {"host_syncs_per_step": syncs, "syncs_in_loop": sum(syncs),
             "syncs_after_loop": 1 if fixed else 0, "mean_loss": round(mean, 4),
             "device": "cpu (syncs counted, not timed)"}
    return Observation(facts, probe.records)


SCENARIO = Scenario(
    name="item-sync", title=".item() every step: a host sync in the loop",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("training", "doctor"),
    measure=measure, finding="item-sync-in-loop",
)
