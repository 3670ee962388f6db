"""glu-layer: a custom gated linear unit as an nn.Module, checked by what matters — after one
backward, every parameter has a gradient. Its bug: a gate defined but never used."""

from __future__ import annotations

import torch
from torch import nn

from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**A custom layer is done when gradients reach all of it.** A gated linear unit projects
the input to twice the width, splits the result into a value half `a` and a gate half
`b`, and returns `a * sigmoid(b)`: the gate learns how much of each value to let through.

Assigning an `nn.Linear` (or an `nn.Parameter`) to `self` registers it, so it shows up in
`parameters()` and the optimizer. Whether it *learns* depends on `forward` using it. The
bug below registers a separate gate projection and then, by a slip, gates with the value
projection again: the gate's parameters exist, are in the optimizer, and never get a
gradient. The doctor checks every trainable parameter for a gradient after backward.
"""

CODE = """\
class GLU(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.value = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(d_in, d_out)
    def forward(self, x):
        return self.value(x) * torch.sigmoid(self.value(x))   # slip: gate unused
"""

FIXED = """\
class GLU(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.proj = nn.Linear(d_in, 2 * d_out)     # value and gate in one matmul
    def forward(self, x):
        a, b = self.proj(x).chunk(2, dim=-1)
        return a * torch.sigmoid(b)
"""


class BrokenGLU(nn.Module):
    """The slip: a gate projection that forward never uses."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.value = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value(x) * torch.sigmoid(self.value(x))


class GLU(nn.Module):
    """Gated linear unit: split a 2*d_out projection into value and gate halves."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, 2 * d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.proj(x).chunk(2, dim=-1)
        return a * torch.sigmoid(b)


def _model(fixed: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(GLU(8, 16) if fixed else BrokenGLU(8, 16), nn.Linear(16, 1))


def measure(fixed: bool) -> Observation:
    model = _model(fixed)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad(set_to_none=True)
    loss = model(x).pow(2).mean()
    loss.backward()
    grads = {n: (None if p.grad is None else round(float(p.grad.norm()), 5))
             for n, p in model.named_parameters()}
    facts = {"grad_norms": grads,
             "params_without_grad": [n for n, g in grads.items() if g is None],
             "output_shape": list(model(x).shape)}
    # Tell the doctor one training step happened (its model check needs a step).
    from tensorscope.telemetry import StepRecord

    return Observation(facts, [StepRecord(step=1, loss=float(loss.detach()))], model=model)


def _context() -> dict:
    model = _model(False)
    x = torch.randn(16, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def model_step() -> float:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        return float(loss)

    return {"model": model, "model_step": model_step,
            "graph_roots": {"loss": model(x).pow(2).mean()}}


SCENARIO = Scenario(
    name="glu-layer", title="A custom GLU layer: do gradients reach every parameter?",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("model", "graph", "doctor"),
    measure=measure, finding="params-not-updating", context=_context,
)
