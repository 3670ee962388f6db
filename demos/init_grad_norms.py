"""init-grad-norms: the same deep ReLU network trained from Xavier, Kaiming and all-ones
initial weights; the global grad norm per step shows which start can train."""

from __future__ import annotations

import functools

import torch
from torch import nn

from tensorscope.demos._common import classification_data, rounded
from tensorscope.demos._probe import Probe
from tensorscope.demos._scenario import Observation, Scenario

DEPTH = 6
WIDTH = 64
STEPS = 15

LESSON = """\
**The first weights set the scale of everything.** Each layer multiplies its input's
variance by roughly `fan_in * Var(w)`. Kaiming init picks `Var(w) = 2 / fan_in`, which
keeps a ReLU network's activations and gradients at a steady size through depth; Xavier
(`2 / (fan_in + fan_out)`) does the same for tanh-like layers and is a bit small for ReLU.
All-ones weights multiply by ~`fan_in` per layer: after six layers of width 64 the
activations — and the gradients — are astronomically large, and every unit in a layer
computes the same thing, so they can never tell apart.

The measurement logs the global grad norm (before the step) for each init; the bug is the
all-ones run, the fix the Kaiming one. Watch what the explosion leaves behind: its first
huge step throws the weights so far that most ReLUs never fire again — the doctor reports
exploding gradients *and* dead ReLUs, and the loss sits at chance (ln 2 ≈ 0.693).
"""

CODE = """\
def init_all_ones(m):
    if isinstance(m, nn.Linear):
        nn.init.ones_(m.weight); nn.init.zeros_(m.bias)
model.apply(init_all_ones)
for step in range(15):
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    grad_norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    opt.step()
"""

FIXED = """\
def init_kaiming(m):
    if isinstance(m, nn.Linear):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu"); nn.init.zeros_(m.bias)
model.apply(init_kaiming)        # (or nn.init.xavier_uniform_ for tanh layers)
for step in range(15):
    ...                          # the same loop
"""

INITS = {
    "xavier_uniform": lambda w: nn.init.xavier_uniform_(w),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "all_ones": lambda w: nn.init.ones_(w),
}


def _deep(init: str) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    width = 20
    for _ in range(DEPTH):
        layers += [nn.Linear(width, WIDTH), nn.ReLU()]
        width = WIDTH
    layers.append(nn.Linear(WIDTH, 2))
    model = nn.Sequential(*layers)
    for m in model:
        if isinstance(m, nn.Linear):
            INITS[init](m.weight)
            nn.init.zeros_(m.bias)
    return model


@functools.lru_cache(maxsize=len(INITS))
def _train(init: str) -> Probe:
    # Seeded and deterministic: the bug and the fix read the same three runs, so measure once.
    x, y = classification_data(n=STEPS * 32)
    model = _deep(init)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    with Probe(model, opt) as probe:
        for xb, yb in zip(x.split(32), y.split(32)):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            probe.log_loss(loss)
            loss.backward()
            opt.step()
    return probe


def measure(fixed: bool) -> Observation:
    runs = {name: _train(name) for name in INITS}
    facts = {f"grad_norms_{name}": rounded([r.grad_norm for r in p.records], 3)
             for name, p in runs.items()}
    facts.update({f"loss_last_{name}": p.records[-1].loss for name, p in runs.items()})
    judged = "kaiming_normal" if fixed else "all_ones"
    facts["diagnosed_run"] = judged
    return Observation(facts, runs[judged].records)


SCENARIO = Scenario(
    name="init-grad-norms", title="Initialisation and gradient norms: Xavier, Kaiming, all-ones",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("training", "doctor"),
    measure=measure, finding="exploding-gradients",
)
