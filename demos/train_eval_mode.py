"""train-eval-mode: Dropout and BatchNorm act differently in training mode; evaluating in it
gives random predictions that also depend on what else is in the batch."""

from __future__ import annotations

import torch

from tensorscope.demos._common import classification_data, small_mlp
from tensorscope.demos._probe import Probe
from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**Two modes, two behaviours.** In training mode Dropout zeroes a random part of its input
and BatchNorm normalises with the *current batch's* mean and variance (and updates its
running averages). In eval mode Dropout passes everything through and BatchNorm uses the
running averages it learnt.

Evaluate in training mode and the same input gets a different prediction on every call,
and a different one again depending on which other samples share its batch. The
measurement: one sample predicted alone-in-a-batch-of-8 vs in a batch of 256, and twice
in a row. `model.eval()` before evaluating (and `model.train()` after) makes both equal.
"""

CODE = """\
model.train()
...                                   # training
with torch.no_grad():                 # evaluation, but still in training mode
    p_small = model(x_val[:8])
    p_big = model(x_val)              # x_val[:8] predicted differently here
"""

FIXED = """\
model.train()
...                                   # training
model.eval()                          # Dropout off, BatchNorm uses running stats
with torch.no_grad():
    p_small = model(x_val[:8])
    p_big = model(x_val)              # identical for the shared samples
model.train()                         # back to training mode afterwards
"""


def _trained():
    x, y = classification_data(n=256)
    model = small_mlp(dropout=0.3, batchnorm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for xb, yb in zip(x.split(32), y.split(32)):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    return model, x


def measure(fixed: bool) -> Observation:
    model, x = _trained()
    torch.manual_seed(1)
    with Probe(model) as probe:
        if fixed:
            model.eval()
        with torch.no_grad():
            small = model(x[:8])
            big = model(x)
            again = model(x[:8])
        probe.eval_record()
        model.train()
    facts = {
        "max_diff_same_samples_batch_8_vs_256": round(float((small - big[:8]).abs().max()), 5),
        "max_diff_two_calls_same_input": round(float((small - again).abs().max()), 5),
        "model_training_during_eval": not fixed,
    }
    return Observation(facts, probe.records)


def _context() -> dict:
    model, _ = _trained()
    return {"model": model}


SCENARIO = Scenario(
    name="train-eval-mode", title="Dropout and BatchNorm left in training mode at evaluation",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("model", "doctor"),
    measure=measure, finding="train-mode-in-eval", context=_context,
)
