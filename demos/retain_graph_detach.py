"""retain-graph-detach: backward() frees the graph it walked; retain_graph keeps it for a
second pass, and detach() takes a tensor out of the graph while sharing its memory."""

from __future__ import annotations

import torch

from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**The graph is used once.** To save memory, `backward()` frees the tensors each node saved
for it as it goes. A second `backward()` through the same graph fails: those tensors are
gone. Pass `retain_graph=True` to the first call when you really need two passes (higher
derivatives, several losses sharing a trunk) — and reset `.grad` in between, or the two
passes add up.

`detach()` returns a tensor that shares the same storage but has no history: gradients
stop there. Use it for targets, logging and metrics. The Graph screen shows the nodes and
what each saved.
"""

CODE = """\
w = torch.tensor([1.5], requires_grad=True)
y = (w ** 3).sum()        # PowBackward saves w
y.backward()              # frees the saved tensors
y.backward()              # RuntimeError: backward through the graph a second time
"""

FIXED = """\
w = torch.tensor([1.5], requires_grad=True)
y = (w ** 3).sum()
y.backward(retain_graph=True)   # keep the saved tensors
w.grad = None                   # or the second pass adds to the first
y.backward()                    # works: same gradient again
target = y.detach()             # same value, no graph, no grad
"""


def _build():
    w = torch.tensor([1.5], requires_grad=True)
    return w, (w ** 3).sum()


def measure(fixed: bool) -> Observation:
    w, y = _build()
    facts: dict = {"dy_dw_expected": 3 * 1.5 ** 2}
    if fixed:
        y.backward(retain_graph=True)
        first = w.grad.item()
        w.grad = None
        y.backward(retain_graph=True)
        facts["first_grad"] = first
        facts["second_grad"] = w.grad.item()
        y.backward()   # a third pass without resetting .grad: the passes add up
        facts["without_reset_grad_would_be"] = w.grad.item()
        target = y.detach()
        facts["detach_requires_grad"] = target.requires_grad
        facts["detach_shares_storage"] = target.data_ptr() == y.data_ptr()
    else:
        y.backward()
        facts["first_grad"] = w.grad.item()
        try:
            y.backward()
            facts["second_backward_error"] = None
        except RuntimeError as exc:
            facts["second_backward_error"] = str(exc).splitlines()[0][:160]
    return Observation(facts)


def _roots() -> dict:
    w, y = _build()
    return {"y = (w ** 3).sum()": y, "y.detach()": y.detach()}


SCENARIO = Scenario(
    name="retain-graph-detach", title="retain_graph and detach(): when the graph is freed",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("graph",),
    measure=measure, finding=None, roots=_roots,
)
