"""A plain step's record, assembled from a few raw values off the training thread.

Most steps of a watched loop are *plain*: no per-module detail, no weight statistics, no
GradScaler, no clipping seen. Everything such a step's record holds is known at the
optimizer's post-hook as a handful of numbers and references. Building the
:class:`~tensorscope.telemetry.StepRecord` from them (a dataclass of 18 fields, a signals
dict of 15, the global norm from the per-weight ones) is pure bookkeeping, and under
``tensorscope run`` it is the largest share of what a short CPU step pays for being
watched: it runs on the training thread right after the step's kernels, when every Python
call costs several times its warm price.

So the watch captures the values (:func:`core.watch.WatchSession._plain_values`, a tuple
in the order of :data:`FIELDS`) and a consumer that can wait, the run's event sender,
calls :func:`plain_record` later on its own thread. Every value in the tuple is either
immutable or a list that nobody changes after the capture (the watch starts new lists for
the next step), so the record built later is the one built now.

On CUDA the loss and the norms are not numbers yet when the step ends: both fields hold one
:class:`~tensorscope.hooks.PendingFetch`, and :func:`settle` waits for its copy on the
builder's thread, so the training thread never waits for the GPU on a plain step.
"""

from __future__ import annotations

from operator import mul
from typing import Any

from tensorscope.hooks import PendingFetch
from tensorscope.telemetry import StepRecord

FIELDS = (
    "step", "loss", "names", "norms", "wall_time", "lr", "batch", "step_time", "now",
    "first_forward", "memory", "autocast", "hook_errors", "carried", "backwards",
    "eval_graph", "train_no_grad", "syncs", "not_in_optimizer", "mismatch", "overhead_s",
    "detail_every", "grad_norm_every",
)
"""The positions of a plain step's raw values (what WatchSession._plain_values builds)."""

_INF = float("inf")


def settle(loss: Any, norms: Any) -> tuple[float | None, Any]:
    """A step's loss and per-weight norms as floats: a deferred fetch (the same
    PendingFetch in either field, the loss first when there is one) is waited for here."""
    pending = norms if isinstance(norms, PendingFetch) else loss
    if not isinstance(pending, PendingFetch):
        return loss, norms
    values = pending.values()
    if loss is pending:
        loss, values = values[0], values[1:]
    if norms is pending:
        norms = values
    return loss, norms


def plain_record(raw: tuple[Any, ...]) -> StepRecord:
    """The record of a plain step from its raw values (see FIELDS): the same record the
    watch's _build_record makes for such a step."""
    (step, loss, names, norms, wall_time, lr, batch, step_time, now, first, memory, autocast,
     hook_errors, carried, backwards, eval_graph, train_no_grad, syncs, not_in_optimizer,
     mismatch, overhead_s, detail_every, grad_norm_every) = raw
    loss, norms = settle(loss, norms)
    total = sum(map(mul, norms, norms)) ** 0.5 if norms else None
    params: dict[str, dict[str, Any]] = {}
    if total is not None and not total < _INF:
        # A gradient that is not finite: its weight is named, as on any step.
        for name, norm in zip(names, norms):
            if not (norm == norm and abs(norm) != _INF):
                params[name] = {"grad_norm": norm, "nonfinite_grad": True}
    amp = None
    if autocast:
        amp = {"scale": None, "growth_tracker": None, "skipped": None, "autocast_dtype": autocast}
    return StepRecord(
        step=step,
        loss=loss,
        wall_time=wall_time,
        lr=lr,
        grad_norm=total,
        grad_norm_clipped=None,
        batch_size=batch or None,
        samples_per_s=(batch / step_time) if batch and step_time > 0 else None,
        step_time_s=step_time,
        data_time_s=(first - (now - step_time)) if first is not None else None,
        compute_time_s=(now - first) if first is not None else None,
        memory=memory,
        amp=amp,
        modules={},
        params=params,
        signals={
            "grad_carried_over": None if carried is None else list(carried),
            "backward_passes": backwards,
            "eval_forward_with_graph": eval_graph,
            "train_mode_forward_no_grad": train_no_grad,
            **syncs,
            "params_not_in_optimizer": list(not_in_optimizer),
            "params_unchanged": None,
            "device_mismatch": list(mismatch),
            "hook_errors": hook_errors,
            "overhead_s": overhead_s,
            "detail": False,
            "detail_every": detail_every,
            "grad_norm_every": grad_norm_every,
            "partial": False,
        },
    )
