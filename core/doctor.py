"""The doctor: detectors that name common PyTorch training bugs from what a run showed.

Every detector reads only what any run produces — step records (``StepRecord`` or their
JSON form), the model's state, errors seen (exception type and message), and an autograd
graph when one is given. None of them knows which script or demo produced the data, so a
finding on a demo is the same finding a user's own run would get.

``diagnose(records, model=..., errors=..., graph=...)`` returns :class:`Finding` objects,
most severe first. Each carries a stable ``code``, the evidence (numbers, not prose), the
fix, and the tensorscope screen that shows the problem best.

Thresholds sit next to each detector with the reason for their value. They are chosen to
stay silent on a healthy run (the syllabus's complete minimal example, and every demo's
fixed twin, are tests of that).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from tensorscope.telemetry import StepRecord

SEVERITIES = ("error", "warning", "info")
"""Most severe first; findings are sorted in this order."""


@dataclass(frozen=True)
class Finding:
    """One named problem, with the numbers that show it and what to do about it."""

    code: str
    """Stable identifier, e.g. "missing-zero-grad"; tests and JSON consumers rely on it."""
    severity: str
    """"error" (results are wrong), "warning" (likely wrong or wasteful), "info"."""
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    """The measured numbers (and short observations) the finding rests on."""
    fix: str = ""
    screen: str = "doctor"
    """The tensorscope screen that shows the problem (a REGISTRY name)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ErrorSeen:
    """An exception a run raised, reduced to what the doctor needs."""

    type: str
    message: str


# --------------------------------------------------------------------------------------
# Thresholds (why each value, in one place)
# --------------------------------------------------------------------------------------

EXPLODING_GRAD_NORM = 1e3
"""A global grad norm above this is explosive: healthy nets with standard init and a mean
loss sit around 1e-2..1e1; three orders of magnitude above that breaks any fixed lr."""

EXPLODING_GROWTH = 100.0
"""...or the norm grew this many times over the run's first steps' median: a sustained
100x growth is divergence even when the absolute values still look small."""

VANISHING_GRAD_NORM = 1e-7
"""Below this the float32 update (lr ~1e-3 times grad) is under 1e-10 of a weight of order
one: below float32 resolution (~6e-8 relative), so nothing trains."""

VANISHING_LAYER_RATIO = 1e-5
"""A weight whose grad norm is this fraction of the largest weight's grad norm learns
100,000x slower than the rest: the early layers have effectively stopped."""

MIN_STEPS_FOR_TREND = 3
"""Trend detectors (exploding, diverging, not updating, syncs) need this many train steps
so that one odd step — a warm-up, a skipped AMP step — never triggers them alone."""

DIVERGENCE_FACTOR = 3.0
"""Loss diverges when the last steps all sit this far above the best loss seen: noisy
but healthy SGD moves within ~2x of its running best; 3x sustained is a climb."""

SYNC_STEP_FRACTION = 0.8
"""Host syncs on at least this fraction of train steps means a sync inside the loop (a
per-epoch .item() touches one step in many and stays under it)."""

DEAD_RELU_FRACTION = 0.5
"""Half of a ReLU's units never firing on a whole batch (over the last steps) is more
than random init produces (~0 for a fresh layer with a fresh batch) — they are dead."""

DEAD_RELU_ZERO_FRAC = 0.9
"""With only output statistics: a non-negative output that is >= 90% exact zeros. Live ReLUs
on centred inputs are ~50% zeros; 90% means most units are off for every sample."""

AMP_SKIP_WARN_FRACTION = 0.1
"""A GradScaler skips a few steps while it calibrates its scale (that is its job, so an
isolated skip is not reported); more than a tenth of all steps skipped means the gradients
overflow for real. A scheduler stepping on any skipped step is reported regardless."""

_INPLACE_MARKERS = ("modified by an inplace operation", "used in an in-place operation")
_VIEW_MARKERS = ("view size is not compatible with input tensor's size and stride",)
_DEVICE_MARKERS = ("expected all tensors to be on the same device", "found at least two devices",
                   "is on cpu, but expected", "tensors to be on the same device",
                   "is not on the expected device")


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------

def _as_record(item: Any) -> StepRecord:
    if isinstance(item, StepRecord):
        return item
    if isinstance(item, Mapping):
        return StepRecord.from_json(dict(item))
    raise TypeError(f"not a step record: {type(item).__name__}")


def _as_error(item: Any) -> ErrorSeen:
    if isinstance(item, ErrorSeen):
        return item
    if isinstance(item, BaseException):
        return ErrorSeen(type(item).__name__, str(item))
    if isinstance(item, Mapping):
        # {"type", "message"} or a run's crash record {"exc_type", "message", ...}
        return ErrorSeen(str(item.get("type") or item.get("exc_type") or ""),
                         str(item.get("message", "")))
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return ErrorSeen(str(item[0]), str(item[1]))
    return ErrorSeen("", str(item))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _train(records: Sequence[StepRecord]) -> list[StepRecord]:
    return [r for r in records if r.phase == "train"]


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _rounded(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


# --------------------------------------------------------------------------------------
# Detectors on step records
# --------------------------------------------------------------------------------------

def _missing_zero_grad(records: Sequence[StepRecord]) -> Iterable[Finding]:
    # The hooks report, per step, the params whose .grad still held the previous step's
    # value at the first backward after an optimizer step. Intentional accumulation resets
    # grads after each step, so its later backwards add to *this* step's grads only and
    # never show up here — that is what separates the bug from the technique.
    hit = [r for r in _train(records) if r.signals.get("grad_carried_over")]
    if not hit:
        return
    params = sorted({p for r in hit for p in r.signals["grad_carried_over"]})
    norms = [r.grad_norm for r in _train(records) if _finite(r.grad_norm)]
    evidence: dict[str, Any] = {
        "steps_with_carried_grads": len(hit),
        "train_steps": len(_train(records)),
        "first_step": hit[0].step,
        "params": params[:8],
    }
    if len(norms) >= 2 and norms[0] > 0:
        evidence["grad_norm_first"] = _rounded(norms[0])
        evidence["grad_norm_last"] = _rounded(norms[-1])
        evidence["grad_norm_growth"] = _rounded(norms[-1] / norms[0], 3)
    yield Finding(
        "missing-zero-grad", "error",
        "Gradients carry over from one optimizer step to the next",
        evidence,
        "Call optimizer.zero_grad() once per step (before the forward or right after "
        "optimizer.step()); backward() adds into .grad, it never replaces it.",
        "training",
    )


def _eval_without_no_grad(records: Sequence[StepRecord]) -> Iterable[Finding]:
    counts = [(r.step, int(r.signals.get("eval_forward_with_graph") or 0)) for r in records]
    total = sum(c for _, c in counts)
    if total <= 0:
        return
    yield Finding(
        "eval-without-no-grad", "warning",
        "Evaluation builds an autograd graph nobody will use",
        {"eval_forwards_with_graph": total, "steps": [s for s, c in counts if c][:8]},
        "Wrap evaluation in `with torch.no_grad():` (or torch.inference_mode()); "
        "model.eval() only switches Dropout/BatchNorm, it does not stop graph building.",
        "graph",
    )


def _train_mode_in_eval(records: Sequence[StepRecord]) -> Iterable[Finding]:
    total = sum(int(r.signals.get("train_mode_forward_no_grad") or 0) for r in records)
    if total <= 0:
        return
    yield Finding(
        "train-mode-in-eval", "error",
        "Dropout/BatchNorm ran in training mode during evaluation",
        {"train_mode_forwards_under_no_grad": total},
        "Call model.eval() before evaluating (and model.train() before training again): "
        "otherwise Dropout stays random and BatchNorm uses the batch's statistics, so "
        "predictions change with the batch size.",
        "model",
    )


def _item_sync(records: Sequence[StepRecord]) -> Iterable[Finding]:
    # watch() counts only sampled steps (host_syncs None on the others; core/syncs.py picks
    # them at random gaps so periodic logging cannot alias): judge the measured steps alone.
    train = _train(records)
    measured = [r for r in train if r.signals.get("host_syncs") is not None]
    if len(measured) < MIN_STEPS_FOR_TREND:
        return
    syncing = [r for r in measured if int(r.signals["host_syncs"]) > 0]
    fraction = len(syncing) / len(measured)
    if fraction < SYNC_STEP_FRACTION:
        return
    per_step = _median([int(r.signals["host_syncs"]) for r in measured])
    kinds = {(r.memory or {}).get("kind") for r in train if r.memory}
    if kinds == {"cpu-rss"}:
        # On the CPU nothing is queued, so a read waits for nothing: the habit is named
        # (it stalls every step once the model moves to a GPU), but not as a fault.
        severity = "info"
        title = ("The training loop reads tensors to the host every step (.item(), .cpu(), "
                 "print of a tensor): free on this CPU run, a stall per step on a GPU")
    else:
        severity = "warning"
        title = ("The training loop waits for the device every step (.item(), .cpu(), "
                 "print of a tensor)")
    yield Finding(
        "item-sync-in-loop", severity, title,
        {"steps_measured": len(measured), "steps_with_sync": len(syncing),
         "median_syncs_per_step": per_step, "train_steps": len(train)},
        "Accumulate losses on the device (total += loss.detach()) and fetch once per "
        "epoch or every N steps; on CUDA, torch.cuda.set_sync_debug_mode('warn') shows each sync.",
        "training",
    )


def _device_mismatch_signal(records: Sequence[StepRecord]) -> list[str]:
    seen: list[str] = []
    for r in records:
        for obs in r.signals.get("device_mismatch") or []:
            if obs not in seen:
                seen.append(obs)
    return seen


def _nonfinite(records: Sequence[StepRecord]) -> Iterable[Finding]:
    bad = [r for r in records if r.loss is not None and not _finite(r.loss)]
    # With a GradScaler, inf/nan *gradients* are expected now and then (the scaler skips
    # those steps); a non-finite *loss* is never expected.
    if bad:
        yield Finding(
            "nonfinite-loss", "error",
            "The loss became NaN or infinite",
            {"first_step": bad[0].step, "steps": len(bad), "value": str(bad[0].loss),
             "last_finite_loss": next((_rounded(r.loss) for r in reversed(records)
                                       if r.step < bad[0].step and _finite(r.loss)), None)},
            "Look at the step before: a too-high lr, log/sqrt/division of zero, or fp16 "
            "overflow. Lower the lr, clip gradients, add an eps, or use AMP's GradScaler.",
            "training",
        )


def _grad_norm_trend(records: Sequence[StepRecord]) -> Iterable[Finding]:
    train = [r for r in _train(records) if r.grad_norm is not None]
    if not train:
        return
    finite = [r.grad_norm for r in train if _finite(r.grad_norm)]
    if len(train) >= 1 and finite:
        peak = max(finite)
        start = _median(finite[:MIN_STEPS_FOR_TREND])
        growth = peak / start if start > 0 else math.inf
        if peak > EXPLODING_GRAD_NORM or (len(finite) >= MIN_STEPS_FOR_TREND * 2
                                          and growth > EXPLODING_GROWTH):
            yield Finding(
                "exploding-gradients", "error",
                "Gradient norms explode",
                {"grad_norm_start": _rounded(start), "grad_norm_peak": _rounded(peak),
                 "growth": _rounded(growth, 3), "threshold": EXPLODING_GRAD_NORM},
                "Clip with nn.utils.clip_grad_norm_(params, max_norm=1.0), lower the lr, "
                "and check the initialisation (Kaiming for ReLU, Xavier for tanh).",
                "training",
            )
    if len(finite) >= MIN_STEPS_FOR_TREND:
        tail = finite[-MIN_STEPS_FOR_TREND:]
        losses = [r.loss for r in train[-MIN_STEPS_FOR_TREND:] if _finite(r.loss)]
        # A tiny gradient on a loss that is already ~0 is convergence, not vanishing.
        if max(tail) < VANISHING_GRAD_NORM and losses and min(losses) > 1e-4:
            yield Finding(
                "vanishing-gradients", "warning",
                "Gradients vanish: the weights receive almost nothing",
                {"grad_norm_last": _rounded(tail[-1]), "threshold": VANISHING_GRAD_NORM,
                 "loss_last": _rounded(losses[-1])},
                "Check the initialisation and saturating activations (sigmoid/tanh); "
                "use Kaiming init with ReLU, normalisation layers, or residual connections.",
                "model",
            )
            return
    # Per-weight: some layers get gradients far smaller than the largest one. Per-weight
    # norms come with detail steps only (watch() spaces them out): the latest such step. A
    # plain step lists only weights whose gradient was not finite: not a comparison.
    last = next((r for r in reversed(train)
                 if r.params and r.signals.get("detail", True) is not False), train[-1])
    weights = {n: s.get("grad_norm") for n, s in last.params.items()
               if n.endswith("weight") and _finite(s.get("grad_norm"))}
    if len(weights) >= 2 and len(train) >= MIN_STEPS_FOR_TREND:
        top = max(weights.values())
        starved = sorted(n for n, v in weights.items() if top > 0 and v < top * VANISHING_LAYER_RATIO)
        if starved:
            yield Finding(
                "vanishing-gradients", "warning",
                "Some layers get almost no gradient",
                {"layers": starved[:8], "largest_grad_norm": _rounded(top),
                 "smallest_grad_norm": _rounded(min(weights.values())),
                 "ratio_threshold": VANISHING_LAYER_RATIO},
                "Check the initialisation and saturating activations in those layers; "
                "Kaiming init with ReLU, normalisation, or residual connections help.",
                "model",
            )


def _params_not_updating(records: Sequence[StepRecord]) -> Iterable[Finding]:
    train = _train(records)
    outside = sorted({p for r in train for p in (r.signals.get("params_not_in_optimizer") or [])})
    # Skipped AMP steps leave every param unchanged on purpose: not evidence.
    counted = [r for r in train if not (r.amp or {}).get("skipped")
               and r.signals.get("params_unchanged") is not None]
    frozen: list[str] = []
    if len(counted) >= MIN_STEPS_FOR_TREND:
        sets = [set(r.signals["params_unchanged"]) for r in counted]
        frozen = sorted(set.intersection(*sets))
    if not outside and not frozen:
        return
    yield Finding(
        "params-not-updating", "error",
        "Parameters that require grad never change",
        {"not_in_optimizer": outside[:8], "unchanged_every_step": frozen[:8],
         "steps_checked": len(counted)},
        "Give every trainable parameter to the optimizer (build it after the model is "
        "complete, from model.parameters()); check that the loss depends on them "
        "(a detach() or an unused branch cuts their gradient).",
        "model",
    )


def _dead_relu(records: Sequence[StepRecord]) -> Iterable[Finding]:
    # Module stats from the hooks: "dead_fraction" is the fraction of a ReLU's units that
    # were zero for every sample of the batch. It must hold on the last few steps: one
    # odd batch does not kill a unit.
    train = _train(records)[-MIN_STEPS_FOR_TREND:]
    if len(train) < MIN_STEPS_FOR_TREND:
        return
    dead: dict[str, float] = {}
    for path in train[-1].modules:
        stats = [r.modules.get(path, {}) for r in train]
        values = [st.get("dead_fraction") for st in stats]
        if all(_finite(v) for v in values):
            if min(values) >= DEAD_RELU_FRACTION:
                dead[path] = _rounded(min(values), 3)
            continue
        # Without per-unit counts (tensorscope.watch gives output stats): an output that is
        # never negative (a ReLU's) and almost all exact zeros, step after step.
        zeros = [st.get("zero_frac") for st in stats]
        lows = [st.get("min") for st in stats]
        if (all(_finite(z) for z in zeros) and all(_finite(m) and m >= 0 for m in lows)
                and min(zeros) >= DEAD_RELU_ZERO_FRAC):
            dead[path] = _rounded(min(zeros), 3)
    if dead:
        yield Finding(
            "dead-relu", "warning",
            "ReLU units that never fire",
            {"modules": dead, "threshold": DEAD_RELU_FRACTION},
            "Lower the lr (a big step can push biases so negative a unit never fires "
            "again), use Kaiming init, or LeakyReLU/GELU which pass a gradient below zero.",
            "model",
        )


def _amp_skipped(records: Sequence[StepRecord]) -> Iterable[Finding]:
    train = [r for r in _train(records) if r.amp]
    skipped = [r for r in train if r.amp.get("skipped")]
    if not skipped:
        return
    fraction = len(skipped) / len(train)
    index = {id(r): i for i, r in enumerate(train)}
    # A scheduler that steps on a skipped step advances the lr schedule although the
    # weights did not move: the lr after the skip differs from the lr of the skip.
    sched_on_skip = []
    for r in skipped:
        i = index[id(r)]
        if i + 1 < len(train) and r.lr and train[i + 1].lr and train[i + 1].lr != r.lr:
            sched_on_skip.append(r.step)
    scales = [r.amp.get("scale") for r in train if _finite(r.amp.get("scale"))]
    evidence = {"skipped_steps": [r.step for r in skipped][:8], "skipped": len(skipped),
                "amp_steps": len(train), "skipped_fraction": _rounded(fraction, 3)}
    if scales:
        evidence["scale_first"] = scales[0]
        evidence["scale_min"] = min(scales)
    frequent = fraction > AMP_SKIP_WARN_FRACTION
    if not frequent and not sched_on_skip:
        return  # an isolated skip is the scaler doing its job: calibrating its scale
    severity = "warning"
    fix = ("A few skipped steps while the scaler calibrates are normal. Frequent skips mean "
           "the gradients overflow: lower the lr or clip after scaler.unscale_(optimizer).")
    if sched_on_skip:
        evidence["scheduler_stepped_on_skipped"] = sched_on_skip[:8]
        fix += (" The lr scheduler stepped on a skipped step: step it only when the "
                "scale did not drop (compare scaler.get_scale() before/after update()).")
    yield Finding("amp-skipped-steps", severity,
                  "The GradScaler skipped optimizer steps (inf/NaN gradients)",
                  evidence, fix, "training")


def _lr_too_high(records: Sequence[StepRecord]) -> Iterable[Finding]:
    train = _train(records)
    losses = [(r, r.loss) for r in train if r.loss is not None]
    if len(losses) < MIN_STEPS_FOR_TREND * 2:
        return
    finite = [(r, x) for r, x in losses if _finite(x)]
    if not finite:
        return
    best = min(x for _, x in finite)
    tail = [x for _, x in losses[-MIN_STEPS_FOR_TREND:]]
    # A loss that turned non-finite after being finite has diverged too.
    diverged = all((not _finite(x)) or x > DIVERGENCE_FACTOR * max(best, 1e-8) for x in tail)
    rising = _finite(tail[-1]) and _finite(losses[0][1]) and tail[-1] > losses[0][1]
    if not diverged or not (rising or not _finite(tail[-1])):
        return
    # The lr when it went (a schedule may have annealed it to nothing by the end): the
    # first step past the best one whose loss is non-finite or over the threshold.
    at = next(i for i, (_, x) in enumerate(losses) if _finite(x) and x == best)
    gone = next((r for r, x in losses[at + 1:]
                 if not _finite(x) or x > DIVERGENCE_FACTOR * max(best, 1e-8)), losses[-1][0])
    lr = gone.lr or next((r.lr for r in reversed(train) if r.lr), [])
    yield Finding(
        "lr-too-high", "error",
        "The loss diverges",
        {"loss_best": _rounded(best), "loss_last": _rounded(tail[-1]) if _finite(tail[-1]) else str(tail[-1]),
         "factor_threshold": DIVERGENCE_FACTOR, "diverged_at_step": gone.step,
         "lr": [_rounded(x) for x in lr][:4]},
        "Lower the learning rate (a range test finds the edge: pick ~10x below where the "
        "loss starts to climb), or add warm-up and gradient clipping.",
        "training",
    )


# --------------------------------------------------------------------------------------
# Detectors on errors, the model and the graph
# --------------------------------------------------------------------------------------

def _from_errors(errors: Sequence[ErrorSeen], records: Sequence[StepRecord]) -> Iterable[Finding]:
    for err in errors:
        text = err.message.lower()
        if any(m in text for m in _INPLACE_MARKERS):
            yield Finding(
                "inplace-modified-saved-tensor", "error",
                "An in-place operation changed a tensor autograd had saved for backward",
                {"error": err.type, "message": _first_line(err.message)},
                "Replace the in-place op (x += 1, x.relu_(), x[idx] = v) on that tensor with "
                "its out-of-place form (x = x + 1), or clone() before modifying.",
                "graph",
            )
        elif any(m in text for m in _VIEW_MARKERS):
            yield Finding(
                "view-non-contiguous", "error",
                "view() on a tensor whose strides cannot express the new shape",
                {"error": err.type, "message": _first_line(err.message)},
                "Use reshape() (copies only when it must) or .contiguous().view(); "
                "transposes and some slices are non-contiguous views of their storage.",
                "storage",
            )
    mixed = _device_mismatch_signal(records)
    device_errors = [e for e in errors if any(m in e.message.lower() for m in _DEVICE_MARKERS)]
    if mixed or device_errors:
        evidence: dict[str, Any] = {"observations": mixed[:8]}
        if device_errors:
            evidence["error"] = device_errors[0].type
            evidence["message"] = _first_line(device_errors[0].message)
        yield Finding(
            "device-mismatch", "error",
            "Tensors on different devices meet in one operation",
            evidence,
            "Pick one device (device = torch.device(...)), move the model once "
            "(model.to(device)) and every batch as it arrives (x.to(device)).",
            "model",
        )


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


def _graph_roots(graph: Any) -> list[Any]:
    """Tensors (or grad_fn nodes) to start a walk from: a tensor, a dict of them, an
    object with ``roots``, or a list."""
    if graph is None:
        return []
    if isinstance(graph, Mapping):
        return list(graph.values())
    roots = getattr(graph, "roots", None)
    if roots is not None and not callable(roots):
        return list(roots.values()) if isinstance(roots, Mapping) else list(roots)
    if isinstance(graph, (list, tuple)):
        return list(graph)
    return [graph]


def _graph_inplace(graph: Any) -> Iterable[Finding]:
    # Reading a saved tensor back from its grad_fn makes autograd compare the version
    # counter it recorded with the tensor's current one; a mismatch raises the very error
    # backward() would raise later. So the walk finds the bug before anyone calls backward.
    starts = []
    for root in _graph_roots(graph):
        fn = getattr(root, "grad_fn", root)
        if fn is not None and hasattr(fn, "next_functions"):
            starts.append(fn)
    seen: set[int] = set()
    stack = list(starts)
    broken: list[str] = []
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        for attr in dir(fn):
            if not attr.startswith("_saved_"):
                continue
            try:
                getattr(fn, attr)
            except RuntimeError as exc:
                if any(m in str(exc) for m in _INPLACE_MARKERS):
                    broken.append(f"{type(fn).__name__}.{attr[len('_saved_'):]}")
            except Exception:  # other accessor quirks say nothing about versions
                continue
        stack.extend(next_fn for next_fn, _ in fn.next_functions if next_fn is not None)
    if broken:
        yield Finding(
            "inplace-modified-saved-tensor", "error",
            "An in-place operation changed a tensor autograd had saved for backward",
            {"saved_tensors_modified": broken[:8], "nodes_walked": len(seen)},
            "Replace the in-place op on that tensor with its out-of-place form "
            "(x = x * 2 instead of x *= 2), or clone() before modifying.",
            "graph",
        )


def _from_model(model: Any, records: Sequence[StepRecord]) -> Iterable[Finding]:
    # After training steps, a trainable parameter that has never had a gradient at all
    # (grad is None while its siblings have one) is cut off from the loss.
    if model is None or not _train(records) or not hasattr(model, "named_parameters"):
        return
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    with_grad = [n for n, p in params if p.grad is not None]
    without = [n for n, p in params if p.grad is None]
    if with_grad and without:
        yield Finding(
            "params-not-updating", "error",
            "Parameters that require grad receive no gradient",
            {"params_without_grad": without[:8], "params_with_grad": len(with_grad)},
            "The loss does not depend on them: look for a detach(), a branch not used in "
            "forward, or a tensor made outside the graph (torch.tensor(x) of a param).",
            "model",
        )


# --------------------------------------------------------------------------------------

_RECORD_DETECTORS = (
    _missing_zero_grad, _eval_without_no_grad, _train_mode_in_eval, _item_sync, _nonfinite,
    _grad_norm_trend, _params_not_updating, _dead_relu, _amp_skipped, _lr_too_high,
)


def diagnose(records: Iterable[Any] = (), *, model: Any = None, errors: Iterable[Any] = (),
             graph: Any = None) -> list[Finding]:
    """Run every detector; return the findings, most severe first, one per code.

    ``records``: StepRecords or their JSON dicts. ``errors``: exceptions, (type, message)
    pairs or {"type", "message"} dicts. ``graph``: a tensor, a dict of tensors, or an
    object with ``roots`` — walked iteratively for in-place changes to saved tensors.
    """
    recs = [_as_record(r) for r in records]
    errs = [_as_error(e) for e in errors]
    found: list[Finding] = []
    for detector in _RECORD_DETECTORS:
        found.extend(detector(recs))
    found.extend(_from_errors(errs, recs))
    found.extend(_graph_inplace(graph))
    found.extend(_from_model(model, recs))
    unique: dict[str, Finding] = {}
    for f in found:
        unique.setdefault(f.code, f)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(unique.values(), key=lambda f: order.get(f.severity, len(order)))


CODES = (
    "missing-zero-grad", "inplace-modified-saved-tensor", "eval-without-no-grad",
    "train-mode-in-eval", "item-sync-in-loop", "view-non-contiguous", "device-mismatch",
    "nonfinite-loss", "exploding-gradients", "vanishing-gradients", "params-not-updating",
    "dead-relu", "amp-skipped-steps", "lr-too-high",
)
"""Every code a detector can emit."""
