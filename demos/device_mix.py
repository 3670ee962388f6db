"""device-mix: a model on one device and a batch on another cannot meet in one op. On a
machine without CUDA the meta device stands in for the accelerator (and says so)."""

from __future__ import annotations

import torch
from torch import nn

from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**Every operand on one device.** `model.to(device)` moves the parameters and buffers; it
does nothing to the tensors you create later. A batch left on the CPU meets weights on the
GPU inside the first Linear, and PyTorch refuses to mix them.

Choose the device once, move the model once, and move each batch as it arrives
(`xb = xb.to(device, non_blocking=True)`). With CUDA this demo uses it; without, it uses
the **meta** device (shapes and dtypes only, no data) as the "other" device — the error
comes from the same check, and the summary says which device was used.
"""

CODE = """\
device = torch.device("cuda")
model = nn.Linear(10, 2).to(device)
x = torch.randn(4, 10)            # still on the CPU
out = model(x)                    # RuntimeError: tensors on different devices
"""

FIXED = """\
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
model = nn.Linear(10, 2).to(device)
x = torch.randn(4, 10).to(device) # the batch follows the model
out = model(x)
"""


def other_device() -> tuple[torch.device, bool]:
    """The accelerator when there is one; else meta (a simulation: no data is computed)."""
    if torch.cuda.is_available():
        return torch.device("cuda"), False
    return torch.device("meta"), True


def measure(fixed: bool) -> Observation:
    device, simulated = other_device()
    torch.manual_seed(0)
    model = nn.Linear(10, 2).to(device)
    x = torch.randn(4, 10)
    errors = []
    facts: dict = {"model_device": str(device), "simulated_with_meta": simulated}
    if fixed:
        x = x.to(device)
    facts["input_device"] = str(x.device)
    try:
        out = model(x)
        facts["output_shape"] = list(out.shape)
        facts["error"] = None
    except RuntimeError as exc:
        errors.append(exc)
        facts["error"] = str(exc).splitlines()[0][:200]
    return Observation(facts, errors=errors)


def _context() -> dict:
    return {"model": nn.Linear(10, 2)}


SCENARIO = Scenario(
    name="device-mix", title="Model and batch on different devices",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("doctor", "model"),
    measure=measure, finding="device-mismatch", context=_context,
)
