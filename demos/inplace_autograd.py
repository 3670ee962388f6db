"""inplace-autograd: an in-place op on a tensor that a backward node saved makes backward
fail (the version counter catches it); out-of-place ops are safe."""

from __future__ import annotations

import torch

from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**Saved tensors have versions.** Some backward formulas need a value from the forward pass:
`sigmoid`'s gradient is `s * (1 - s)`, so `SigmoidBackward` saves its output `s`. Every
in-place op bumps the tensor's *version counter*; at backward time autograd checks that
each saved tensor is still at the version it saved, and refuses to compute a wrong
gradient if it is not.

Not every in-place op is a problem: `y += 1` on the output of an addition is fine,
because an addition's backward saves nothing. It bites when the op's backward needs the
value you overwrote. The doctor finds it by walking the graph *before* backward; the
Graph screen marks the saved tensor whose version moved.
"""

CODE = """\
x = torch.randn(4, requires_grad=True)
s = torch.sigmoid(x)      # SigmoidBackward saves s (version 0)
s.mul_(2)                 # in place: s is now version 1
s.sum().backward()        # RuntimeError: ... modified by an inplace operation
"""

FIXED = """\
x = torch.randn(4, requires_grad=True)
s = torch.sigmoid(x)      # SigmoidBackward saves s
s2 = s * 2                # a new tensor; s stays at version 0
s2.sum().backward()       # works
"""


def _build(fixed: bool):
    x = torch.randn(4, requires_grad=True, generator=torch.Generator().manual_seed(0))
    s = torch.sigmoid(x)
    if fixed:
        out = s * 2
    else:
        s.mul_(2)
        out = s
    return x, s, out.sum()


def measure(fixed: bool) -> Observation:
    x, s, loss = _build(fixed)
    facts: dict = {"saved_tensor_version": s._version}
    graph = {"loss": loss}
    errors = []
    from tensorscope.doctor import diagnose

    facts["found_before_backward"] = any(
        f.code == "inplace-modified-saved-tensor" for f in diagnose(graph=graph))
    try:
        loss.backward()
        facts["backward_error"] = None
        facts["grad"] = [round(v, 4) for v in x.grad.tolist()]
    except RuntimeError as exc:
        errors.append(exc)
        facts["backward_error"] = str(exc).splitlines()[0][:200]
    # The harmless case the lesson names: add saves nothing, so y += 1 is fine.
    a = torch.randn(3, requires_grad=True)
    y = a + 1
    y += 1
    y.sum().backward()
    facts["inplace_after_add_ok"] = a.grad is not None
    return Observation(facts, errors=errors, graph=graph)


def _roots() -> dict:
    return {"loss (s.mul_(2) after sigmoid)": _build(False)[2],
            "loss (s * 2)": _build(True)[2]}


SCENARIO = Scenario(
    name="inplace-autograd", title="In-place ops vs tensors saved for backward",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("graph", "doctor"),
    measure=measure, finding="inplace-modified-saved-tensor", roots=_roots,
)
