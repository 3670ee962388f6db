"""custom-gelu: GELU as a custom torch.autograd.Function with a hand-written backward,
verified with gradcheck in float64 and compared with nn.GELU."""

from __future__ import annotations

import math

import torch
from torch import nn

from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**A hand-written backward must be checked.** GELU weighs its input by the normal CDF:
`x * Φ(x)`; the common approximation is `0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))`.
A `torch.autograd.Function` computes it in `forward`, saves what `backward` needs with
`ctx.save_for_backward`, and returns `grad_output * dy/dx` from `backward`.

`torch.autograd.gradcheck` compares that backward with finite differences. Run it in
**float64**: in float32 the finite differences themselves are too noisy to judge. The bug
forgets the product rule (drops the `x * dΦ/dx` term); gradcheck fails on it and passes on
the fix, which also matches `nn.GELU(approximate="tanh")` to float precision.
"""

CODE = """\
class MyGELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        inner = C * (x + 0.044715 * x ** 3)
        t = torch.tanh(inner)
        ctx.save_for_backward(x, t)
        return 0.5 * x * (1 + t)
    @staticmethod
    def backward(ctx, grad_out):
        x, t = ctx.saved_tensors
        return grad_out * 0.5 * (1 + t)     # BUG: forgot x * d(tanh)/dx
"""

FIXED = """\
class MyGELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        inner = C * (x + 0.044715 * x ** 3)
        t = torch.tanh(inner)
        ctx.save_for_backward(x, t)
        return 0.5 * x * (1 + t)
    @staticmethod
    def backward(ctx, grad_out):
        x, t = ctx.saved_tensors
        dinner = C * (1 + 3 * 0.044715 * x ** 2)
        return grad_out * (0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * dinner)

x = torch.randn(32, dtype=torch.float64, requires_grad=True)
torch.autograd.gradcheck(MyGELU.apply, (x,))          # True
"""

C = math.sqrt(2.0 / math.pi)


class GELUTanh(torch.autograd.Function):
    """GELU (tanh approximation) with its full derivative."""

    @staticmethod
    def forward(ctx, x):
        t = torch.tanh(C * (x + 0.044715 * x ** 3))
        ctx.save_for_backward(x, t)
        return 0.5 * x * (1 + t)

    @staticmethod
    def backward(ctx, grad_out):
        x, t = ctx.saved_tensors
        dinner = C * (1 + 3 * 0.044715 * x ** 2)
        return grad_out * (0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * dinner)


class GELUForgotProductRule(GELUTanh):
    """The same forward; a backward missing the x * dtanh/dx term."""

    @staticmethod
    def backward(ctx, grad_out):
        x, t = ctx.saved_tensors
        return grad_out * 0.5 * (1 + t)


def measure(fixed: bool) -> Observation:
    fn = GELUTanh if fixed else GELUForgotProductRule
    x = torch.randn(32, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(0))
    passed = torch.autograd.gradcheck(fn.apply, (x,), raise_exception=False)
    ours = fn.apply(x)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    ref_mod = nn.GELU(approximate="tanh")
    ref = ref_mod(x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    exact = nn.GELU()(x)
    facts = {
        "gradcheck_float64": passed,
        "max_forward_diff_vs_nn_GELU_tanh": float((ours - ref).detach().abs().max()),
        "max_grad_diff_vs_nn_GELU_tanh": float((g_ours - g_ref).abs().max()),
        "max_forward_diff_tanh_approx_vs_exact_erf": float((ref - exact).detach().abs().max()),
    }
    return Observation(facts)


def _roots() -> dict:
    x = torch.randn(8, requires_grad=True)
    return {"GELUTanh.apply(x).sum()": GELUTanh.apply(x).sum()}


SCENARIO = Scenario(
    name="custom-gelu", title="A custom autograd Function (GELU) checked with gradcheck",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("graph",),
    measure=measure, finding=None, roots=_roots,
)
