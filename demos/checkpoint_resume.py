"""checkpoint-resume: Adam's moment estimates are part of the training state. Resuming with
the weights alone restarts them, and the run no longer follows the uninterrupted one."""

from __future__ import annotations

import io
import os
import tempfile

import torch
from torch import nn

from tensorscope.demos._common import classification_data, small_mlp
from tensorscope.demos._scenario import Observation, Scenario

STEPS = 20
SAVE_AT = 10

LESSON = """\
**The optimizer remembers.** Adam keeps, for every parameter, running averages of its
gradient and squared gradient, plus a step count for bias correction. Those live in
`optimizer.state_dict()`, not in the model. Save only `model.state_dict()` and resume with
a fresh optimizer, and the first resumed steps take Adam's bias-corrected *first* steps
again — larger and in a different direction than the uninterrupted run.

The measurement trains 20 steps straight, and again with a save/load at step 10: resuming
with the optimizer state reproduces the straight run exactly; resuming without it drifts.
Save `{"model": ..., "optimizer": ..., "step": ...}` and load both (`weights_only=True`).
"""

CODE = """\
torch.save({"model": model.state_dict()}, path)           # optimizer state not saved
...
ckpt = torch.load(path, weights_only=True)
model.load_state_dict(ckpt["model"])
opt = torch.optim.Adam(model.parameters(), lr=1e-2)       # fresh moments, step 0
"""

FIXED = """\
torch.save({"model": model.state_dict(),
            "optimizer": opt.state_dict(), "step": step}, path)
...
ckpt = torch.load(path, weights_only=True)
model.load_state_dict(ckpt["model"])
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
opt.load_state_dict(ckpt["optimizer"])                    # moments and step count back
"""


def _train(model, opt, x, y, steps: range, losses: list[float]) -> None:
    loss_fn = nn.CrossEntropyLoss()
    for i in steps:
        xb, yb = x[(i % 8) * 32:(i % 8 + 1) * 32], y[(i % 8) * 32:(i % 8 + 1) * 32]
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.detach())


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def measure(fixed: bool) -> Observation:
    x, y = classification_data(n=256)
    straight_losses: list = []
    model = small_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, opt, x, y, range(STEPS), straight_losses)
    straight = _flat(model)

    resumed_losses: list = []
    model = small_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, opt, x, y, range(SAVE_AT), resumed_losses)
    buf = io.BytesIO()
    state = {"model": model.state_dict(), "step": SAVE_AT}
    if fixed:
        state["optimizer"] = opt.state_dict()
    torch.save(state, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model = small_mlp(seed=123)            # a new process would start from other weights
    model.load_state_dict(ckpt["model"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    if fixed:
        opt.load_state_dict(ckpt["optimizer"])
    _train(model, opt, x, y, range(SAVE_AT, STEPS), resumed_losses)
    resumed = _flat(model)
    diffs = [abs(float(a) - float(b)) for a, b in zip(straight_losses, resumed_losses)]
    facts = {
        "optimizer_state_saved": fixed,
        "max_param_diff_vs_uninterrupted": float((straight - resumed).abs().max()),
        "max_loss_diff_after_resume": round(max(diffs[SAVE_AT:]), 6),
        "first_resumed_loss_diff": round(diffs[SAVE_AT + 1], 6),
        "checkpoint_keys": sorted(ckpt),
    }
    return Observation(facts)


def _context() -> dict:
    # The Inspect screen opens checkpoint files: write both kinds to a temp folder.
    folder = tempfile.mkdtemp(prefix="tensorscope-demo-")
    model = small_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = classification_data(n=256)
    _train(model, opt, x, y, range(SAVE_AT), [])
    weights_only = os.path.join(folder, "weights_only.pt")
    full = os.path.join(folder, "with_optimizer.pt")
    torch.save({"model": model.state_dict(), "step": SAVE_AT}, weights_only)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": SAVE_AT}, full)
    return {"checkpoints": [weights_only, full], "model": model}


SCENARIO = Scenario(
    name="checkpoint-resume", title="Resuming from a checkpoint: optimizer state matters",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("inspect", "training"),
    measure=measure, finding=None, context=_context,
)
