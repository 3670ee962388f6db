"""eval-no-grad: model.eval() switches layer behaviour but still builds a graph; evaluation
belongs under torch.no_grad()."""

from __future__ import annotations

import torch

from tensorscope.demos._common import classification_data, small_mlp
from tensorscope.demos._probe import Probe
from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**`eval()` is not `no_grad()`.** `model.eval()` tells Dropout and BatchNorm to behave for
inference; it does nothing to autograd. Evaluate without `torch.no_grad()` and every
forward records a graph and keeps the activations its backward would need — memory and
time spent on a backward that never comes.

The measurement: with the bug the output requires grad and has a `grad_fn` (open the
Graph screen on it); under `no_grad()` neither. Use both: `model.eval()` *and*
`with torch.no_grad():` (or `torch.inference_mode()`).
"""

CODE = """\
model.eval()
out = model(x_val)          # records a graph: out.requires_grad is True
acc = (out.argmax(1) == y_val).float().mean()
"""

FIXED = """\
model.eval()
with torch.no_grad():
    out = model(x_val)      # no graph: out.requires_grad is False
acc = (out.argmax(1) == y_val).float().mean()
"""


def _setup():
    x, y = classification_data(n=256)
    return small_mlp(dropout=0.2), x, y


def measure(fixed: bool) -> Observation:
    model, x, y = _setup()
    with Probe(model) as probe:
        model.eval()
        if fixed:
            with torch.no_grad():
                out = model(x)
        else:
            out = model(x)
        probe.eval_record()
    nodes = 0
    stack = [out.grad_fn] if out.grad_fn is not None else []
    seen = set()
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        nodes += 1
        stack.extend(f for f, _ in fn.next_functions if f is not None)
    facts = {"output_requires_grad": out.requires_grad,
             "grad_fn": type(out.grad_fn).__name__ if out.grad_fn is not None else None,
             "graph_nodes_recorded": nodes,
             "accuracy": round(float((out.argmax(1) == y).float().mean()), 4)}
    return Observation(facts, probe.records, model=None)


def _context() -> dict:
    model, x, _ = _setup()
    model.eval()
    return {"model": model, "graph_roots": {"model(x_val) in eval mode, no no_grad": model(x)}}


SCENARIO = Scenario(
    name="eval-no-grad", title="model.eval() without torch.no_grad()",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("graph", "model", "doctor"),
    measure=measure, finding="eval-without-no-grad", context=_context,
)
