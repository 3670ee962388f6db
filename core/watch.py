"""``tensorscope.watch()``: watch a model while the user's own training loop runs.

::

    with tensorscope.watch(model, optimizer) as session:
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()          # each step ends here and becomes a StepRecord
    session.records[-1].loss, session.records[-1].modules["fc1"]["mean"]

A step ends at the optimizer's step (its post hook) or, for loops without an optimizer, when
the caller calls ``session.step()``. Everything is observed through PyTorch's registration
APIs — module hooks, one global module hook for the first steps (to find criterion modules
that live outside the model), tensor hooks on the model's outputs, optimizer step hooks —
and every handle is removed on exit, on error and on ``detach()``. Statistics stay on the
device until the step ends and are fetched with one copy per device (see
:func:`tensorscope.hooks.fetch`).

What it costs: loss, timing, the gradient norm and most of the doctor's signals are measured
every step (a few hook calls, one norm pass over the gradients, one fetch). What needs a hook
inside backward — gradients carried over from the last step, backward passes per step, the
norm before clipping — is measured on *full* steps: detail steps, the first three, and every
step of a script seen to clip (see ``_reset_step``). Per-module and per-weight *detail*
costs more — a few passes over every watched output — so by default it is spaced out to keep
tensorscope's own measured time under ``max_overhead`` (3 %) of the step
(``signals["detail_every"]`` is the spacing in use); ``max_overhead=None`` gives detail on
every ``every``-th step whatever it costs.

Exceptions inside tensorscope's hooks and in ``sink`` are caught and counted
(``signals["hook_errors"]``); the user's own exceptions pass through unchanged.
"""

from __future__ import annotations

import sys
import time
from collections import deque
import types
import weakref
from contextlib import contextmanager
from functools import partial
from itertools import chain
from operator import itemgetter, mul
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.autograd import Variable
from torch.nn.modules import module as _module_globals
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.loss import _Loss
from torch.optim import optimizer as _optim_globals

from tensorscope.errors import UserError, one_line
from tensorscope.hooks import HookSet, PendingFetch, fetch, fetch_later, hook_clock
from tensorscope.loss_weights import add_weight, weight_vector
from tensorscope.plain_step import FIELDS as _PLAIN_FIELDS, plain_record, settle
from tensorscope.stats import first_float_tensor, float_tensors
from tensorscope.syncs import StepSyncs
from tensorscope.telemetry import StepRecord, memory_snapshot, scaler_steps

UPDATE_SAMPLE = 1 << 16
"""Parameters larger than this many elements get their update-to-weight ratio from a strided
sample of this size: the copy of the weights taken before each detail step stays bounded."""

MEMORY_EVERY_S = 0.1
"""Records within this many seconds of the last memory reading carry that reading."""

MAX_RECORDS = 10_000
"""``session.records`` keeps at most this many recent steps (bounded memory)."""

DEFAULT_MAX_OVERHEAD = 0.03
"""watch()'s default share of step time for tensorscope's own work (see _schedule_detail)."""

MIN_BUDGET_S = 0.0005
"""Whatever the share, a step may always spend this much on tensorscope: toy models with
sub-millisecond steps (the syllabus's examples) then still get detail on most steps."""

UNSEEN_COST = 1.6
"""Real overhead over what the hooks' own clock measures: PyTorch's dispatch into the hooks
(module slow path, autograd calling Python tensor hooks) happens outside them.
bench_watch_interleaved.py measured 1.4-1.5x on the TransformerEncoder; the schedule
budgets for a little more."""

MAX_DETAIL_GAP = 50
"""Detail comes at least once in this many steps, however expensive (or once in
MAX_DETAIL_WAIT_S, when that is more steps): the charts never go stale for long."""

MAX_DETAIL_WAIT_S = 1.0
"""Short steps may wait up to this long for detail: 50 steps of 7 ms would put a detail step
(a third of a step's time on a small CPU model) in every third of a second."""

PRE_CLIP_PROBE_STEPS = 3
"""The norm "before clipping" needs a pass over the gradients at the end of backward as well
as the one at the optimizer step. It is taken on the first steps and on every detail step;
only a script seen to change its gradients in between (clipping, ``.data`` edits — a
GradScaler's unscaling is divided out) keeps it on every step. Others pay one pass a step."""

NORM_SHARE = 1 / 3
"""Under a budget (``max_overhead``), the exact global gradient norm may use this share of it.

The norm reads every gradient once: on a CPU that pass runs at memory speed and costs a
fixed ~2 % of a small MLP's step (both grow with the parameter count; bench/README.md), more
than the rest of a plain step's bookkeeping. When one pass costs more than this share of the
step, plain steps take it every few steps (``signals["grad_norm_every"]``) and the others
record ``grad_norm`` as None: never an estimate. The share is what is left once the rest of
the bookkeeping is paid, if that is less: on short CPU steps that bookkeeping alone can fill
the budget, and the pass then comes once in MAX_NORM_GAP steps. Detail steps, the first steps and
``max_overhead=None`` always take it. On an accelerator the pass is queued, costs its launch
only, and so is taken every step."""

WIDE_NORM_SCALE = 2.0 ** 32
"""From this GradScaler scale up, backward-time norms (of still-scaled gradients) are summed
in float64: float32 squares overflow once scale x |grad| passes ~1.8e19, and a scale that
doubles every 2,000 clean steps gets there in a long run (the record divides the scale
out afterwards). Below it float64 would only cost: 3x the pass on a CPU."""

NORM_ALWAYS_S = 0.00005
"""A pass over the gradients cheaper than this is taken every step, whatever the share: it
costs less than the rest of a plain step's bookkeeping, and small models (the syllabus's
examples) keep a norm on every step."""

NORM_READINGS = 3
"""Steps that took the norm (after the first ones) before its spacing may change."""

MAX_NORM_GAP = 8
"""However costly the pass, the gradient norm is taken at least once in this many steps."""

LOSS_DISCOVERY_STEPS = 2
"""Criterion modules outside the model are found by a global forward hook during this many
steps, then hooked directly; the global hook would put every module call in the process on
PyTorch's slow path for the whole run."""

_FETCH_GROUPS = ("loss", "grad", "clipped", "weights", "update", "modules", "scale", "extra")
"""What _fetch_step reads, in order."""
_FLAT_GROUPS = frozenset({"grad", "clipped", "weights", "update"})

_MAX_OUTPUT_HOOKS = 4
"""Float outputs of the model that get a gradient hook (to see each backward pass begin)."""

_STEP_TIME = _PLAIN_FIELDS.index("step_time")
_first, _second = itemgetter(0), itemgetter(1)


_LIVE: "weakref.WeakSet[WatchSession]" = weakref.WeakSet()
"""Sessions attached right now. ``tensorscope run`` looks here so that a script which calls
``watch()`` itself is not watched twice (hooks paid twice, steps counted twice)."""


def live_session_for(model: nn.Module) -> "WatchSession | None":
    """The attached session watching ``model``, if the user's own code started one."""
    for session in list(_LIVE):
        if session.model is model and session._attached:
            return session
    return None


class WatchSession:
    """The live side of ``watch()``: hooks, per-step state and the finished records."""

    def __init__(self, model: nn.Module, optimizer: Any = None, scaler: Any = None, *,
                 modules: Any = "*", every: int = 1, loss: Any = None,
                 max_overhead: float | None = DEFAULT_MAX_OVERHEAD,
                 sink: Callable[[StepRecord], Any] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"watch() needs an nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise UserError(f"optimizer= must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"every= must be a whole number of steps >= 1, got {every!r}")
        if loss is not None and not isinstance(loss, nn.Module):
            raise UserError(f"loss= must be a criterion module (e.g. nn.CrossEntropyLoss()), got {type(loss).__name__}")
        if max_overhead is not None and (isinstance(max_overhead, bool)
                                         or not isinstance(max_overhead, (int, float))
                                         or not 0 < max_overhead < 1):
            raise UserError(f"max_overhead= must be a share of step time between 0 and 1 "
                            f"(e.g. 0.03) or None, got {max_overhead!r}")
        if sink is not None and not callable(sink):
            raise UserError("sink= must be a callable taking a StepRecord")
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.every = every
        self.max_overhead = max_overhead
        self.min_budget_s = MIN_BUDGET_S
        """Overhead a step may always use (see MIN_BUDGET_S); ``tensorscope run`` sets 0."""
        self.detail_every = every
        """The spacing of detail steps in use now (>= every; larger when detail is costly)."""
        self._cost_detail: deque[float] = deque(maxlen=7)
        self._cost_plain: deque[float] = deque(maxlen=15)
        self._cost_rest: deque[float] = deque(maxlen=15)
        """Plain steps' cost without their passes over the gradients (see _schedule_norm)."""
        self._work_s: deque[float] = deque(maxlen=15)
        self._norm_costs: deque[tuple[float, float]] = deque(maxlen=9)
        """(all passes of a step, one pass) for the last steps that took the norm."""
        self._since_detail = 0
        self._since_detail_s = 0.0
        self._next_norm = 1
        self.norm_every = 1
        """The spacing of steps that take the exact gradient norm (see NORM_SHARE)."""
        self.norm_always_s = NORM_ALWAYS_S
        """A pass over the gradients cheaper than this is taken every step (NORM_ALWAYS_S)."""
        self.extra_fetch: Callable[[], torch.Tensor | None] | None = None
        """Called at each step end; a 1-D tensor it returns is fetched in the step's one sync
        and its values left in :attr:`last_extra` (``tensorscope run``'s parameter checksums)."""
        self.last_extra: list[float] | None = None
        self.sink = sink
        self._observers: list[Callable[[StepRecord], Any]] = []
        self._loss_module = loss
        self.records: list[StepRecord] = []
        self.hooks = HookSet(model, modules)
        # Until a scale has been read (the first step), any enabled scaler may be a big one.
        self.hooks.wide_grads = bool(scaler is not None
                                     and getattr(scaler, "is_enabled", lambda: False)())
        self._named_params = [(n, p) for n, p in model.named_parameters()]
        self._trainable = [(n, p) for n, p in self._named_params if p.requires_grad]
        self._trainable_names = [n for n, _ in self._trainable]
        self._module_names = {id(m): (n or "(model)") for n, m in model.named_modules()}
        # Only these modules can produce a signal (device mismatch; train-mode layers run
        # under no_grad), so only they get a hook: every other call stays on the fast path.
        self._param_owners = [m for m in model.modules()
                              if any(p is not None for p in m._parameters.values())]
        self._mode_sensitive = [m for m in model.modules() if isinstance(m, (_DropoutNd, _BatchNorm))]
        self._loss_hooks: "weakref.WeakKeyDictionary[nn.Module, Any]" = weakref.WeakKeyDictionary()
        """Criterion module -> its hook handle (weak: criteria built per step die freely)."""
        self._loss_seen = False
        self._keep_discovery = False
        self._device_wait = 0.0
        self._discovery: Any = None
        self._output_handles: list[Any] = []
        self._device_handles: list[Any] = []
        self._memory_cache: tuple[float, dict[str, Any]] | None = None
        self._handles: list[Any] = []
        self._attached = False
        self._step = 0
        self._next_detail = 1
        """The step that gets per-module detail next (see _build_record for how it moves)."""
        self._errors_total = 0
        self.last_error: str | None = None
        self._overhead_s = 0.0
        self._overhead_reported = 0.0
        self._prev_end = time.perf_counter()
        self._prev_scale: float | None = None
        self._update_buffers: list[torch.Tensor] | None = None
        self._update_sampled = False
        self._callback_queued = False
        self._pre_clip_needed = False
        self._scaled = scaler is not None
        """Whether the scaler steps this step's optimizer (set at each step's start)."""
        self._loss_weights: torch.Tensor | None = None
        """Each criterion call's weight in the loss, as the last full step saw (_loss_part)."""
        self.max_records = MAX_RECORDS
        """How many recent records ``records`` keeps (0: none, the sink gets them all)."""
        self.record_memory = True
        """Read memory into each record. ``tensorscope run`` turns it off: it reads memory
        itself (rate-limited) and keeps its own field when merging this session's records."""
        self.forward_listener: Callable[[nn.Module, Any], Any] | None = None
        self.loss_listener: Callable[[nn.Module, Any], Any] | None = None
        self.step_listener: Callable[[Any], Any] | None = None
        """Called from this session's own hooks (the model's forward pre-hook, each criterion
        call, the optimizer pre-hook) so that ``tensorscope run`` needs no hooks of its own
        on those paths: every hook call costs more than its body right after the step's
        kernels. An exception a listener raises is counted in :attr:`errors`."""
        self.plain_sink: Callable[[tuple[Any, ...]], bool] | None = None
        """Offered each plain step's raw values (core/plain_step.py) instead of a record;
        returns True when it takes them (and builds the record later, off this thread),
        False for a record now, through ``sink`` as usual. ``tensorscope run`` sets it."""
        self.failed_step_listener: Callable[[], Any] | None = None
        """Called when a step's record could not be built (the step still happened)."""
        self._held_key: tuple[int, int] | None = None
        self._not_held: list[str] = []
        self._closure = False
        self._early: dict[str, list[Any]] | None = None
        """A plain CPU step's numbers, fetched in the optimizer pre-hook (see _on_opt_pre)."""
        self._copy_losses = False
        """Copy the loss at every criterion call: set once a script is seen to change its
        loss in place after computing it (``loss /= accum``)."""
        self._syncs = StepSyncs(model)  # host-sync counting on sampled steps (core/syncs.py)
        self._detail_step = self.hooks.recording
        self._reset_step()
        self._mark_grads()

    # -- public ------------------------------------------------------------------------
    @property
    def hook_count(self) -> int:
        """Hooks tensorscope holds right now (0 after detach)."""
        return (len(self._handles) + len(self._loss_hooks) + len(self._output_handles)
                + len(self._device_handles)
                + (self._discovery is not None) + self.hooks.hook_count)

    @property
    def overhead(self) -> dict[str, float]:
        """Time the training thread spent in tensorscope's hooks and step bookkeeping (hook_clock)."""
        total = self._overhead_s + self.hooks.overhead_s
        steps = max(1, self._step)
        return {"total_s": total, "per_step_s": total / steps, "steps": self._step}

    @property
    def errors(self) -> int:
        """tensorscope's own exceptions caught since the session began."""
        return self._errors_total + self.hooks.errors + self._syncs.counter.errors

    def log_loss(self, value: Any) -> None:
        """Record the loss of this step (for functional losses no criterion module sees)."""
        try:
            if isinstance(value, torch.Tensor):
                self._logged_losses.append(value.detach().float().mean().reshape(1))
            else:
                self._logged_losses.append(torch.tensor([float(value)], dtype=torch.float64))
        except Exception as exc:
            self._count_error(exc)

    def step(self) -> StepRecord | None:
        """End the current step now (loops without an optimizer call this once per step)."""
        return self._end_step()

    def attach(self) -> "WatchSession":
        if self._attached:
            return self
        self._attached = True
        _LIVE.add(self)
        try:
            self.hooks.attach()
            add = self._handles.append
            add(self.model.register_forward_pre_hook(self._guard(self._on_root_pre)))
            add(self.model.register_forward_hook(self._guard(self._on_root_forward)))
            self._set_device_checks(self.hooks.recording)
            if self._loss_module is not None:
                self._hook_loss(self._loss_module)
            else:
                for module in self.model.modules():
                    if isinstance(module, _Loss):
                        self._hook_loss(module)
                self._discovery = _module_globals.register_module_forward_hook(
                    self._guard(self._discover_loss))
            if self.optimizer is not None:
                add(self.optimizer.register_step_pre_hook(self._guard(self._on_opt_pre)))
                add(self.optimizer.register_step_post_hook(self._guard(self._on_opt_post, timed=False)))
            else:
                add(_optim_globals.register_optimizer_step_pre_hook(self._guard(self._on_opt_pre)))
                add(_optim_globals.register_optimizer_step_post_hook(self._guard(self._on_opt_post, timed=False)))
        except BaseException:
            self.detach()
            raise
        return self

    def detach(self) -> None:
        """Remove every hook; records stay. Safe to call twice."""
        handles, self._handles = self._handles, []
        handles += list(self._loss_hooks.values()) + self._output_handles + self._device_handles
        if self._discovery is not None:
            handles.append(self._discovery)
        self._loss_hooks, self._output_handles, self._discovery = weakref.WeakKeyDictionary(), [], None
        self._device_handles = []
        for handle in handles:
            handle.remove()
        self.hooks.detach()
        self._syncs.close()  # host syncs: close an open counting window
        self._attached = False
        _LIVE.discard(self)

    def close(self) -> None:
        """Flush an unfinished step that observed something, then detach."""
        try:
            if self._attached and self._has_pending():
                self._end_step(partial=True)
        finally:
            self.detach()

    def __enter__(self) -> "WatchSession":
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- per-step state ----------------------------------------------------------------
    def _reset_step(self) -> None:
        # New lists, never cleared in place: a plain step's raw values (_plain_values) keep
        # the old ones and are read later, on the sender's thread.
        self._losses: list[torch.Tensor] = []
        self._loss_refs: list[tuple[torch.Tensor, int]] = []
        self._logged_losses: list[torch.Tensor] = []
        self._grad_norms: tuple[list[str], list[torch.Tensor]] = ([], [])
        self._clipped: list[torch.Tensor] | None = None
        self._backwards = 0
        self._norms_at_step = False
        self._callback_queued = False  # a backward that raised never ran its callback
        self._carried: list[str] = []
        self._loss_grads: dict[int, torch.Tensor] = {}
        """Criterion call (its index in _loss_refs) -> the gradient that reached it (full steps)."""
        self._loss_from = 0
        """The first criterion call of this step's loss (later when earlier passes were
        thrown away by zero_grad; full steps)."""
        self._refs_at_pass = 0
        self._eval_graph = 0
        self._train_no_grad = 0
        self._mismatch: list[str] = []
        self._batch = 0
        self._first_forward: float | None = None
        self._autocast: str | None = None
        self._step_errors = self.errors
        self._pre_weights_taken = False
        self._norm_time = 0.0
        self._norm_passes = 0
        step = self._step + 1
        detail = step >= self._next_detail  # (_is_detail, inlined: this runs every step)
        # Whether this step takes the gradient norm (see NORM_SHARE): >= for the same
        # reason as _is_detail.
        self._norm_due = detail or step <= PRE_CLIP_PROBE_STEPS or step >= self._next_norm
        # A *full* step also watches backward: a gradient hook on the model's outputs counts
        # backward passes, checks for gradients carried over from the last step, and takes
        # the norm before clipping. Detail steps, the first steps, and every step of a script
        # seen to change its gradients before the optimizer. On the others nothing runs
        # between the forward and the optimizer step.
        self._full = detail or step <= PRE_CLIP_PROBE_STEPS or (self._pre_clip_needed
                                                                and self._norm_due)
        # _detail_step: what hooks.recording says, without a property call on every step.
        if self._detail_step != detail:
            self.hooks.recording = detail
        self._detail_step = detail
        if self._attached and detail != bool(self._device_handles):
            self._set_device_checks(detail)

    def use_scaler(self, scaler: Any) -> None:
        """Read ``scaler`` from the next step on (``tensorscope run`` found it only after the
        session began): its scale and skips go into the records, and gradient norms are
        unscaled by it."""
        self.scaler = scaler
        self._scaled = True  # (it was found stepping this optimizer)
        self._prev_scale = None
        # Until its scale has been read, it may be a big one (see __init__).
        self.hooks.wide_grads = bool(getattr(scaler, "is_enabled", lambda: False)())

    def other_step(self) -> None:
        """Another optimizer is about to step (``tensorscope run`` sees every optimizer): the
        losses, batches and backward passes since this session's last step were that
        step's — a GAN's generator loss, computed through the watched discriminator — and
        not this one's."""
        self._losses = []
        self._loss_refs = []
        self._batch = 0
        self._backwards = 0
        self._carried = []
        self._loss_grads = {}
        self._loss_from = self._refs_at_pass = 0
        self._callback_queued = False
        if self._full:
            # The gradient check compares the next backward with now: the other step's
            # backward pass added to these gradients, and zero_grad before ours resets them.
            self._mark_grads()

    def step_level_only(self) -> None:
        """No detail steps from now on: loss, norms (before and after clipping), timing and
        the signals every step, no per-module or per-weight statistics (``run --detail
        steps``). Full steps still come as usual: the first ones, and every step of a
        script that changes its gradients before the optimizer."""
        self._next_detail = sys.maxsize
        self.hooks.recording = self._detail_step = False

    def _is_detail(self, step: int) -> bool:
        # >=, not ==: a step whose record failed to build must not leave the next detail
        # step in the past for ever.
        return step >= self._next_detail

    def _has_pending(self) -> bool:
        return bool(self._backwards or self._losses or self._loss_refs or self._logged_losses
                    or self._mismatch or self._eval_graph or self._train_no_grad)

    def _mark_grads(self) -> None:
        # A grad that is the same tensor at the same version at the next backward was never
        # reset (zero_grad bumps the version or sets None): it is carried over.
        self._grad_marks = {
            name: (id(p.grad), p.grad._version) if p.grad is not None else None
            for name, p in self._trainable
        }

    # -- hooks -------------------------------------------------------------------------
    def _guard(self, fn: Callable[..., Any], timed: bool = True) -> Callable[..., None]:
        # Overhead is time inside tensorscope's hooks on the training thread (hooks.hook_clock
        # says why a wall clock and not a thread-CPU clock).
        def hook(*args: Any, **kwargs: Any) -> None:
            start = hook_clock()
            try:
                fn(*args, **kwargs)
            except Exception as exc:  # tensorscope's failure, never the user's problem
                self._count_error(exc)
            finally:
                if timed:
                    self._overhead_s += hook_clock() - start
            return None

        return hook

    def _count_error(self, exc: BaseException) -> None:
        self._errors_total += 1
        self.last_error = one_line(exc)

    def _on_root_pre(self, module: nn.Module, args: Any) -> None:
        if self.forward_listener is not None:
            try:  # (here, not in a wrapper of the caller's: one Python call less per step)
                self.forward_listener(module, args)
            except Exception as exc:
                self._count_error(exc)
        if not torch.is_grad_enabled():
            # Evaluation under no_grad with Dropout/BatchNorm still in training mode: the
            # model forgot model.eval(). Checked here, once per forward, not per layer.
            if any(m.training for m in self._mode_sensitive):
                self._train_no_grad += 1
            return
        # Grad-enabled forwards are training forwards, in train or eval mode (fine-tuning
        # with frozen BatchNorm runs the model in eval mode and still steps).
        # A new forward means any earlier backward is over: a backward that raised never
        # ran the callback that clears this flag.
        self._callback_queued = False
        if self._first_forward is None:
            self._first_forward = time.perf_counter()
        first = None
        for arg in args:
            if isinstance(arg, torch.Tensor):
                first = arg
                break
        if first is not None and first.dim() > 0:
            self._batch += int(first.shape[0])
        kind = first.device.type if first is not None else "cpu"
        if kind in ("cpu", "cuda", "mps", "xpu") and torch.is_autocast_enabled(kind):
            self._autocast = str(torch.get_autocast_dtype(kind)).replace("torch.", "")

    def _on_root_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        if not module.training:
            out = first_float_tensor(output)
            if out is not None and out.requires_grad:
                self._eval_graph += 1
        # A gradient hook on the model's outputs fires when a backward pass reaches them,
        # before any parameter gradient of that pass is accumulated: one hook call per
        # backward instead of one per parameter. Full steps only (see _reset_step).
        if not self._full:
            return
        for tensor in float_tensors(output, _MAX_OUTPUT_HOOKS, requires_grad=True):
            self._output_handles.append(tensor.register_hook(self._output_grad_hook))

    def _output_grad_hook(self, grad: torch.Tensor) -> None:
        start = hook_clock()
        try:
            self._on_backward_begin()
        except Exception as exc:
            self._count_error(exc)
        finally:
            self._overhead_s += hook_clock() - start
        return None  # never change the gradient

    def _on_backward_begin(self) -> None:
        if self._callback_queued:
            return  # a second output of the same backward pass
        if self._backwards == 0:
            # A grad that is the same tensor at the same version as at the last step's end
            # was never reset (zero_grad bumps the version or sets None): carried over.
            marks = self._grad_marks
            for name, p in self._trainable:
                grad = p.grad
                if grad is not None and marks.get(name) == (id(grad), grad._version):
                    self._carried.append(name)
        elif all(p.grad is None for _, p in self._trainable):
            # zero_grad since the last pass (set to None): what the passes before computed
            # was thrown away (a micro-batch left over at an epoch's end), and so were their
            # losses: this step's loss starts with this pass's criterion calls.
            self._loss_from = self._refs_at_pass
        self._refs_at_pass = len(self._loss_refs)
        self._backwards += 1
        self._callback_queued = True  # also: "this backward pass is counted"
        Variable._execution_engine.queue_callback(self._on_backward_end)

    def _hook_loss(self, module: nn.Module) -> None:
        if module not in self._loss_hooks:
            self._loss_hooks[module] = module.register_forward_hook(self._guard(self._on_loss_forward))

    def _discover_loss(self, module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, _Loss) and module not in self._loss_hooks:
            self._hook_loss(module)  # fires from the next call on
            self._on_loss_forward(module, args, output)

    def _set_device_checks(self, on: bool) -> None:
        """Device checks (a pre-hook per parameter owner) on detail steps only: a mismatch
        almost always raises in the forward anyway, and the check is a Python call per
        layer per step."""
        if on and not self._device_handles:
            hook = self._guard(self._on_owner_pre)
            self._device_handles = [m.register_forward_pre_hook(hook) for m in self._param_owners]
        elif not on and self._device_handles:
            handles, self._device_handles = self._device_handles, []
            for handle in handles:
                handle.remove()

    def _on_owner_pre(self, module: nn.Module, args: Any) -> None:
        param = next((p for p in module._parameters.values() if p is not None), None)
        if param is None:
            return
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is not None and first.device != param.device:
            name = self._module_names.get(id(module), type(module).__name__)
            note = f"{name}: param on {param.device}, input on {first.device}"
            if note not in self._mismatch and len(self._mismatch) < 32:
                self._mismatch.append(note)

    def _on_loss_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.loss_listener is not None:
            try:
                self.loss_listener(module, output)
            except Exception as exc:
                self._count_error(exc)
        # Only losses that will be back-propagated count as the training loss; a validation
        # loss computed under no_grad is left out.
        if isinstance(output, torch.Tensor) and output.requires_grad and output.is_floating_point():
            # Kept by reference with its version, read at the step's end; on plain steps no
            # copy (the first tensor ops after the forward's kernels are the dearest kind).
            # Detached (it shares the version counter): a reference to the output itself
            # would keep its whole graph alive until the step ends (validation batches run
            # with grad enabled would pile up).
            self._loss_refs.append((output.detach(), output._version))
            if self._full or self._copy_losses:
                # Also a copy (mean() makes one): `loss /= accum_steps` must not change it.
                self._losses.append(output.detach().float().mean())
            if self._full and output.numel() == 1:
                # What the backward passes make of it (see _loss_part): the gradient that
                # reaches it is its weight in the loss they minimise (0: never used).
                output.register_hook(partial(self._on_loss_grad, len(self._loss_refs) - 1))

    def _on_loss_grad(self, index: int, grad: torch.Tensor) -> None:
        start = hook_clock()
        try:
            add_weight(self._loss_grads, index, grad)
        except Exception as exc:
            self._count_error(exc)
        finally:
            self._overhead_s += hook_clock() - start
        return None  # never change the gradient

    def _loss_part(self) -> list[torch.Tensor]:
        """The step's loss as one fetch part (empty: none). Losses the script logged win;
        else its criterion calls, one (the common case) as it is. Several are weighed as
        the backward passes used them: each by the gradient that reached it (unscaled by
        a GradScaler), so `loss = real + fake` sums, `(loss / accum).backward()` over
        micro-batches averages, `a + 0.1 * b` weighs, and a criterion computed as a metric
        (no gradient) drops out. The weights are taken on full steps, the only ones that
        watch backward passes, and used while the step makes as many calls; with none
        yet, the calls are averaged."""
        if self._logged_losses:
            return _mean_loss(self._logged_losses)
        losses = self._step_losses()
        start = self._loss_from
        if start and start < len(losses):
            losses = losses[start:]
        if len(losses) < 2:
            return _mean_loss(losses)
        n = len(losses)
        grads = self._loss_grads
        if self._full and grads:
            weights = weight_vector(grads, n, losses[0].device, start)
            scale = self._scaler_tensors()
            self._loss_weights = weights / scale[0].float() if scale else weights
        weights = self._loss_weights
        if weights is not None and weights.numel() < n and not self._full:
            # More calls than the weights know: the earliest are the ones left over (a
            # micro-batch at an epoch's end, backpropagated, then thrown away by the next
            # zero_grad); the latest line up with the weights.
            losses = losses[n - weights.numel():]
            n = len(losses)
        if weights is None or weights.numel() != n or weights.device != losses[0].device:
            return _mean_loss(losses)
        values = torch.stack([t.detach().float().mean() for t in losses])
        return [(values * weights).sum().reshape(1)]

    def _step_losses(self) -> list[torch.Tensor]:
        """This step's criterion losses: the copies when taken, else the references.

        A reference whose version moved was changed in place after the criterion computed
        it (``loss /= accum``): from then on every call is copied. A plain step that sees
        it first has lost the value (its loss is None); the first steps are full steps,
        so a script that always does this is caught before any value is lost.
        """
        refs = self._loss_refs  # cleared with the step (_reset_step): it also says "a loss ran"
        kept = []
        for t, version in refs:
            if t._version != version:
                self._copy_losses = True
                return self._losses
            kept.append(t)
        return self._losses or kept

    def _on_backward_end(self) -> None:
        # Runs once at the end of each backward pass (queued when it began): the gradients
        # are accumulated and not yet clipped or unscaled, so this is the norm "before
        # clipping". One foreach kernel for all parameters; the optimizer pre-hook reuses
        # it unless a gradient changed in between (clip_grad_norm_, unscale_).
        start = hook_clock()
        try:
            self._callback_queued = False
            named = [(n, p.grad) for n, p in self._trainable if p.grad is not None]
            if named:
                grads = [g for _, g in named]
                begin = hook_clock()
                # Until a scale has been read (the first step), any scaler may be a big one.
                scale = self._prev_scale
                wide = (scale >= WIDE_NORM_SCALE if scale is not None
                        else self.scaler is not None and bool(self._scaler_tensors()))
                with torch.no_grad():  # grads made with create_graph=True need no graph here
                    norms = (torch._foreach_norm(grads, 2, dtype=torch.float64) if wide
                             else torch._foreach_norm(grads))
                self._norm_time += hook_clock() - begin
                self._norm_passes += 1
                self._grad_norms = ([n for n, _ in named], list(norms))
        except Exception as exc:
            self._count_error(exc)
        finally:
            self._overhead_s += hook_clock() - start

    def _owns(self, optimizer: Any) -> bool:
        if self.optimizer is not None:
            return optimizer is self.optimizer
        # No optimizer given: adopt the first one whose params belong to the model.
        mine = {id(p) for _, p in self._trainable}
        for group in optimizer.param_groups:
            if any(id(p) in mine for p in group["params"]):
                self.optimizer = optimizer
                return True
        return False

    def _on_opt_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if optimizer is not self.optimizer and not self._owns(optimizer):
            return
        self._early = None  # left by a step whose optimizer raised
        if self.step_listener is not None:
            try:
                self.step_listener(optimizer)
            except Exception as exc:
                self._count_error(exc)
        self._syncs.end()  # host syncs: the counted window ends where the optimizer begins
        # PyTorch hands the hooks step()'s own args, the optimizer first: (opt, closure?).
        self._closure = (len(args) > 1 and args[1] is not None) or kwargs.get("closure") is not None
        # This step's gradients are scaled only if the scaler steps it (an AMP phase may
        # end while the optimizer goes on: then nothing is divided out, and no AMP state).
        self._scaled = self.scaler is not None and scaler_steps(self.scaler, optimizer)
        if self._detail_step and self._trainable:
            self._take_pre_weights()  # the weights before the step, for the update ratio
        if self._closure:
            # step(closure) (LBFGS, ...): the forward and backward run inside the step, so
            # the gradients and loss are known only after it (see _on_opt_post).
            self._grad_norms = ([], [])
            self._clipped = None
            return
        self._measure_at_step()

    def _take_pre_weights(self) -> None:
        with torch.no_grad():
            views = self._update_views()
            if self._update_buffers is None:
                self._update_buffers = [torch.empty_like(v) for v in views]
            torch._foreach_copy_(self._update_buffers, views)
            self._pre_weights_taken = True

    def _measure_at_step(self) -> None:
        """Gradient norms as the optimizer sees them (and, on a plain CPU step, the fetch)."""
        # Plain loops and direct calls throughout: this runs right after the backward's
        # kernels, where each Python call costs several times its warm price.
        grads = []
        for _, p in self._trainable:
            grad = p.grad
            if grad is not None:
                grads.append(grad)
        if not self._norm_due:
            # Not this step's turn (see NORM_SHARE): no pass over the gradients.
            self._grad_norms = ([], [])
            self._clipped = None
        elif grads:
            begin = hook_clock()
            # No graph for the norms (grads made with create_graph=True have one): what
            # torch.no_grad() does, without its Python frames.
            grad_mode = torch.is_grad_enabled()
            torch._C._set_grad_enabled(False)
            try:
                if not self._grad_norms[1]:
                    # No backward pass was seen through the model's outputs (a plain step;
                    # the loss built from a submodule; a backward outside this session):
                    # measure here, as the optimizer sees them — already unscaled and clipped.
                    if len(grads) == len(self._trainable):
                        # Every weight has a gradient: the names made once (nobody changes
                        # the list, so records may share it).
                        names = self._trainable_names
                    else:
                        names = []
                        for name, p in self._trainable:
                            if p.grad is not None:
                                names.append(name)
                    self._grad_norms = (names, list(torch._foreach_norm(grads)))
                    self._norms_at_step = True
                    self._clipped = None
                else:
                    # Norm as the optimizer sees it, always measured again: clipping through
                    # `.data` (p.grad.data.clamp_) changes values without bumping versions.
                    self._clipped = list(torch._foreach_norm(grads))
            finally:
                torch._C._set_grad_enabled(grad_mode)
            self._norm_time += hook_clock() - begin
            self._norm_passes += 1
        elif not self._grad_norms[1]:
            self._grad_norms = ([], [])
            self._norms_at_step = True
            self._clipped = None
        else:
            self._clipped = []
        if not self._detail_step and self.extra_fetch is None and grads:
            if grads[0].is_cpu:
                # A plain step on the CPU: everything it records is known now, so fetch
                # while the norms just computed are warm, rather than in a second entry
                # after the optimizer's kernels (measured: 46 µs there, under 10 here).
                self._early = (self._fetch_step(None, None, [], []) if self._scaled
                               else self._fetch_plain())
            elif (grads[0].is_cuda and not self._scaled and not self._clipped
                  and self.plain_sink is not None):
                # A plain step on CUDA whose record can be built later: its numbers are
                # copied behind the queued kernels and read off the training thread, so
                # the script keeps running ahead of the GPU (hooks.fetch_later). Elsewhere
                # the fetch waits for the queued work, after the optimizer's kernels.
                self._early = self._fetch_later()

    def _update_views(self) -> list[torch.Tensor]:
        """What the update ratio compares: each parameter, or a strided view of at most
        UPDATE_SAMPLE of its elements (so the copy taken before the step stays bounded)."""
        views = []
        sampled = False
        for _, p in self._trainable:
            data = p.detach()
            n = data.numel()
            if n > UPDATE_SAMPLE and data.is_contiguous():
                data = data.view(-1)[:: -(-n // UPDATE_SAMPLE)]
                sampled = True
            views.append(data)
        self._update_sampled = sampled
        return views

    def _on_opt_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if optimizer is not self.optimizer:
            return
        if self._closure:
            try:
                self._measure_at_step()  # the last closure call's gradients
            except Exception as exc:
                self._count_error(exc)
        self._end_step()

    # -- the end of a step -------------------------------------------------------------
    def _end_step(self, partial: bool = False) -> StepRecord | None:
        start = hook_clock()
        self._syncs.end()  # host syncs: close the window before this step's own fetch
        had_loss = bool(self._losses or self._logged_losses or self._loss_refs)
        raw = None
        try:
            early = self._early
            # (An early fetch is made on plain steps only, and never with extra_fetch.)
            if (early is not None and self.plain_sink is not None and not partial
                    and not early["clipped"] and not early["scale"]
                    and not self._observers and self.max_records <= 0):
                # A plain step whose consumer can wait: its record is built later, off
                # the training thread (core/plain_step.py).
                record = None
                raw = self._plain_values(early)
            else:
                record = self._build_record(partial)
        except Exception as exc:
            self._count_error(exc)
            record = None
            if not partial and self.failed_step_listener is not None:
                try:
                    self.failed_step_listener()
                except Exception as exc2:
                    self._count_error(exc2)
        finally:
            if self._output_handles:
                self._drop_output_hooks()
            if had_loss:
                self._loss_seen = True
            if self._discovery is not None or not had_loss:
                self._update_discovery(had_loss)
            seen = self._first_forward is not None or self._backwards > 0
            # On an accelerator the fetch waits for the step's queued kernels: that wait is
            # the user's compute, not tensorscope's (UNTESTED here: no GPU on the build box).
            self._overhead_s += hook_clock() - start - self._device_wait
            self._device_wait = 0.0
            # This step's cost includes this very call (building the record, the fetch):
            # measured here, not in _build_record, so a detail step is charged its own
            # decoding rather than the plain step after it.
            total = self._overhead_s + self.hooks.overhead_s
            cost, self._overhead_reported = total - self._overhead_reported, total
            if raw is not None:
                self._schedule_detail(False, cost, raw[_STEP_TIME], seen)
                raw += (cost, self.detail_every, self.norm_every)
            elif record is not None:
                record.signals["overhead_s"] = cost
                if not partial:
                    self._schedule_detail(bool(record.signals.get("detail")), cost,
                                          record.step_time_s or 0.0, seen)
                    record.signals["detail_every"] = self.detail_every
                    record.signals["grad_norm_every"] = self.norm_every
            self._reset_step()
            if self._full:
                self._mark_grads()  # what the next step's first backward compares against
            if self._attached:
                self._syncs.begin(self._step + 1)  # host syncs: count the next step if sampled
        if raw is not None:
            sink_start = hook_clock()
            try:
                if self.plain_sink(raw):
                    return None
                record = plain_record(raw)  # the consumer wants it now after all
            except Exception as exc:
                self._count_error(exc)
                return None
            finally:
                # The consumer runs on the training thread too (tensorscope run's
                # bookkeeping): its time is charged with the next step's, this step's
                # cost being already in ``raw``.
                self._overhead_s += hook_clock() - sink_start
        if record is not None:
            if self.max_records > 0:
                self.records.append(record)
                if len(self.records) > 2 * self.max_records:
                    del self.records[:-self.max_records]
            if self.sink is not None:
                try:
                    self.sink(record)
                except Exception as exc:
                    self._count_error(exc)
            for consumer in self._observers:
                try:
                    consumer(record)
                except Exception as exc:
                    self._count_error(exc)
        return record

    def _update_discovery(self, had_loss: bool) -> None:
        """Keep the global criterion-finding hook only as long as it is needed.

        It goes after LOSS_DISCOVERY_STEPS; it comes back for good when criteria were seen
        before but none fired this step — a loop that builds its criterion each step
        (``nn.CrossEntropyLoss()(out, y)``) gets a new module every time.
        """
        if had_loss:
            self._loss_seen = True  # (also set by _end_step, which calls this only when needed)
        if self._discovery is not None:
            if self._step >= LOSS_DISCOVERY_STEPS and not self._keep_discovery:
                self._discovery.remove()
                self._discovery = None
        elif (not had_loss and self._loss_seen and self._loss_module is None and self._attached
              and not self._keep_discovery):
            self._keep_discovery = True
            self._discovery = _module_globals.register_module_forward_hook(
                self._guard(self._discover_loss))

    def _drop_output_hooks(self) -> None:
        handles, self._output_handles = self._output_handles, []
        for handle in handles:
            handle.remove()

    def _schedule_detail(self, detail: bool, cost: float, step_time: float, seen: bool) -> None:
        """Measure what detail costs and place the next detail step.

        ``cost`` is tensorscope's own time in this step, ``step_time`` the whole step. With
        a budget, detail steps are spaced so that the average overhead,
        ``plain + (detail - plain) / gap``, stays under ``max_overhead`` of the user's own
        step time (at least ``min_budget_s``): gap = (detail - plain) / (budget - plain).
        Medians of the last few steps of each kind, so that one slow step (a sampled
        host-sync count, a first-step allocation, the OS taking the core away) does not
        swing the schedule.
        """
        self._work_s.append(max(step_time - cost, 1e-9))
        if detail:
            self._cost_detail.append(cost)
        else:
            self._cost_plain.append(cost)
            self._cost_rest.append(cost - self._norm_time)
        if self._norm_due:
            self._schedule_norm()
        if not detail:
            # A gap set while steps were short (up to a second of them) must not hold once
            # they grow: detail comes at least once in MAX_DETAIL_GAP steps or
            # MAX_DETAIL_WAIT_S, whichever is longer, whatever gap was planned.
            self._since_detail += 1
            self._since_detail_s += step_time
            if (self.max_overhead is not None
                    and self._since_detail >= max(self.every, MAX_DETAIL_GAP)
                    and self._since_detail_s >= MAX_DETAIL_WAIT_S):
                self._next_detail = min(self._next_detail, self._step + 1)
            return
        self._since_detail, self._since_detail_s = 0, 0.0
        if not seen:
            # Attached mid-step (tensorscope run attaches inside the first optimizer.step):
            # that step saw no forward; the next one gets detail at once.
            self._next_detail = self._step + 1
            return
        gap = self.every
        if self.max_overhead is not None:
            detail_cost = _median(self._cost_detail)
            plain = _median(self._cost_plain) if self._cost_plain else 0.0
            share = self.max_overhead / UNSEEN_COST
            budget = max(share * _median(self._work_s), self.min_budget_s)
            if plain >= detail_cost:
                plain = 0.0  # plain steps seen only at odd moments so far: not a baseline
            if detail_cost > budget:
                room = budget - plain
                extra = detail_cost - plain
                cap = max(MAX_DETAIL_GAP, int(MAX_DETAIL_WAIT_S / max(_median(self._work_s), 1e-6)))
                wanted = cap if room <= 0 else -(-extra // room)
                # Grow at most twofold per detail step: the first estimates come from few
                # (and often unusual) steps, and a long gap would keep a wrong one for long.
                ramp = max(2 * self.detail_every, 4)
                gap = int(min(max(gap, wanted), ramp, max(self.every, cap)))
        self.detail_every = gap
        self._next_detail = self._step + gap

    def _schedule_norm(self) -> None:
        """Place the next step that takes the gradient norm (see NORM_SHARE).

        Runs once per step, after _schedule_detail has the step's work time. A step that
        took the norm is charged all its passes over the gradients (a full step makes two,
        more with gradient accumulation) against NORM_SHARE of the budget, or against what
        the rest of a plain step's bookkeeping leaves of it when that is less: the least
        over the last few such steps; NORM_ALWAYS_S is a price per pass. The gap grows at
        most twofold per measured step, so no one reading can drop many norms.
        """
        if not self._norm_due:
            return
        if self._norm_passes and self._step > PRE_CLIP_PROBE_STEPS:
            # Not the first steps: they take two passes and pay PyTorch's first-call costs.
            self._norm_costs.append((self._norm_time, self._norm_time / self._norm_passes))
        gap = 1
        # On an accelerator the pass is queued behind the step's kernels and costs the
        # training thread its launch only: taken every step.
        on_host = not self._trainable or self._trainable[0][1].device.type == "cpu"
        # The price of a pass is the *least* of the last few: a wall clock only ever reads
        # more (the OS took the core away mid-pass, as on a loaded machine), and a toy
        # model's 10 µs pass must not be spaced out because of it. Three readings first.
        if (self.max_overhead is not None and len(self._norm_costs) >= NORM_READINGS
                and self._work_s and on_host):
            per_pass = min(map(_second, self._norm_costs))  # map, not a generator: no frames
            if per_pass > self.norm_always_s:
                whole = max(self.max_overhead * _median(self._work_s), self.min_budget_s)
                budget = max(NORM_SHARE * whole, self.norm_always_s)
                if self._cost_rest:
                    # The rest of a plain step's bookkeeping is paid first, with PyTorch's
                    # dispatch into the hooks on top (UNSEEN_COST): the pass gets at most
                    # what that leaves of the budget, and MAX_NORM_GAP when nothing is left
                    # (short CPU steps, where the bookkeeping alone fills the budget).
                    budget = min(budget, whole - UNSEEN_COST * _median(self._cost_rest))
                cost = min(map(_first, self._norm_costs))
                wanted = -(-cost // budget) if budget > 0 else MAX_NORM_GAP
                gap = int(min(max(wanted, 1), 2 * self.norm_every, MAX_NORM_GAP))
        self.norm_every = gap
        self._next_norm = self._step + gap

    def add_observer(self, observer: Callable[[StepRecord], Any]) -> None:
        """Also call ``observer`` with each finished record (after ``sink``; errors counted)."""
        self._observers.append(observer)

    def _build_record(self, partial: bool) -> StepRecord:
        now = time.perf_counter()
        self._step += 1
        detail = self._is_detail(self._step)
        weights = update = None
        if detail and self._pre_weights_taken and self._update_buffers is not None:
            with torch.no_grad():
                params = [p.detach() for _, p in self._trainable]
                weights = torch._foreach_norm(params)
                views = self._update_views()
                torch._foreach_sub_(self._update_buffers, views)  # buffers now hold -update
                update = torch._foreach_norm(self._update_buffers)
                if self._update_sampled:
                    # update/weight over the same sampled elements
                    sampled_w = torch._foreach_norm(views)
                    update = torch._foreach_div(update, torch._foreach_clamp_min(sampled_w, 1e-30))
                    update = torch._foreach_mul(update, weights)  # ratio x full norm: decoded as ratio
        pending = self.hooks.take()
        got, self._early = self._early, None
        if got is not None and not detail:
            got = _settled(got)  # a deferred fetch whose record is wanted now after all
        if got is None or detail:
            got = self._fetch_step(weights, update, pending.tensors, self._extra_tensors())
        grad_named = self._grad_norms[0]

        self.last_extra = got["extra"][0] if got["extra"] else None
        loss = got["loss"][0][0] if got["loss"] else None
        gnorm = dict(zip(grad_named, got["grad"]))
        scale_vals = got["scale"]
        scale = scale_vals[0][0] if scale_vals else None
        if scale and not self._norms_at_step:
            gnorm = {n: v / scale for n, v in gnorm.items()}  # backward-time grads are scaled
        total = _root_sum_sq(list(gnorm.values())) if gnorm else None
        clipped_vals = got["clipped"]
        clipped = _root_sum_sq(clipped_vals) if clipped_vals else None
        grad_norm_clipped = clipped if (clipped is not None and total is not None
                                        and abs(clipped - total) > 1e-6 * max(1.0, total)) else None
        if grad_norm_clipped is not None:
            self._pre_clip_needed = True  # the script changes gradients before the step

        # Per-weight entries on detail steps; on the others only for a weight whose gradient
        # is not finite (the step's total says so), so that a plain record stays small.
        params: dict[str, dict[str, Any]] = {}
        if detail or (total is not None and not total < float("inf")):
            for n, _ in self._trainable:
                entry: dict[str, Any] = {}
                if n in gnorm:
                    g = gnorm[n]
                    entry["grad_norm"] = g
                    entry["nonfinite_grad"] = not (g == g and abs(g) != float("inf"))
                if detail or entry.get("nonfinite_grad"):
                    params[n] = entry
        # None when not measured (steps without detail): the doctor reads [] as "measured,
        # all changed", and a frozen weight would then never show.
        unchanged: list[str] | None = [] if got["weights"] else None
        if got["weights"]:
            names = [n for n, _ in self._trainable]
            for n, w, u in zip(names, got["weights"], got["update"]):
                params[n]["weight_norm"] = w
                params[n]["update_ratio"] = u / w if w else None
                if u == 0.0 and unchanged is not None:
                    unchanged.append(n)

        step_time = now - self._prev_end
        first = self._first_forward
        self._prev_end = now
        lr, memory = self._lr_and_memory()
        errors_now = self.errors - self._step_errors
        amp = None
        if scale_vals:
            skipped = (scale < self._prev_scale) if self._prev_scale is not None else None
            self._prev_scale = scale
            # The outputs' gradients are the scaled loss's too (see WIDE_NORM_SCALE).
            self.hooks.wide_grads = scale >= WIDE_NORM_SCALE
            amp = {"scale": scale, "growth_tracker": int(scale_vals[1][0]) if len(scale_vals) > 1 else None,
                   "skipped": skipped, "autocast_dtype": self._autocast}
        elif self._autocast:
            amp = {"scale": None, "growth_tracker": None, "skipped": None, "autocast_dtype": self._autocast}
        return StepRecord(
            step=self._step,
            loss=loss,
            wall_time=time.time(),
            lr=lr,
            grad_norm=total,
            grad_norm_clipped=grad_norm_clipped,
            batch_size=self._batch or None,
            samples_per_s=(self._batch / step_time) if self._batch and step_time > 0 else None,
            step_time_s=step_time,
            data_time_s=(first - (now - step_time)) if first is not None else None,
            compute_time_s=(now - first) if first is not None else None,
            memory=memory,
            amp=amp,
            modules=_unscaled(pending.decode(got["modules"]), scale) if pending.pending else {},
            params=params,
            signals={
                # Measured on full steps only (None: not this step; see _reset_step).
                "grad_carried_over": list(self._carried) if self._full else None,
                "backward_passes": self._backwards if self._full else None,
                "eval_forward_with_graph": self._eval_graph,
                "train_mode_forward_no_grad": self._train_no_grad,
                **self._syncs.signals(partial),  # host_syncs (None: step not sampled)
                "params_not_in_optimizer": self._not_in_optimizer(),
                "params_unchanged": unchanged,
                "device_mismatch": list(self._mismatch),
                "hook_errors": errors_now,
                "overhead_s": None,  # set by _end_step once the step's own cost is known
                "detail": detail,
                "detail_every": self.detail_every,
                "grad_norm_every": self.norm_every,
                "partial": partial,
            },
        )

    def _lr_and_memory(self) -> tuple[list[float], dict[str, Any] | None]:
        """This step's learning rate per group, and memory when this session reads it."""
        lr = []
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:  # a loop: a comprehension is one more call
                lr.append(float(group["lr"]))
        memory = None
        if self.record_memory:
            device = self._trainable[0][1].device if self._trainable else (
                self._named_params[0][1].device if self._named_params else None)
            memory = self._memory(device)
        return lr, memory

    def _plain_values(self, got: dict[str, Any]) -> tuple[Any, ...]:
        """A plain step's raw values, in plain_step.FIELDS order up to ``grad_norm_every``
        (_end_step adds the last three once the step's cost is known); what _build_record
        would read for such a step, and nothing more."""
        now = time.perf_counter()
        self._step += 1
        self._early = None
        self.last_extra = None
        self.hooks.take()  # nothing recorded on a plain step: clears what a stray call left
        step_time = now - self._prev_end
        self._prev_end = now
        lr, memory = self._lr_and_memory()
        full = self._full
        loss = got["loss"]
        # Lists are passed as they are: _reset_step gives the next step new ones.
        return (self._step, loss[0][0] if loss else None, self._grad_norms[0], got["grad"],
                time.time(), lr, self._batch, step_time, now, self._first_forward, memory,
                self._autocast, self.errors - self._step_errors,
                self._carried if full else None, self._backwards if full else None,
                self._eval_graph, self._train_no_grad, self._syncs.signals(False),
                self._not_in_optimizer(), self._mismatch)

    def _fetch_plain(self) -> dict[str, Any]:
        """_fetch_step's answer for a plain CPU step without a GradScaler: the loss and
        the norms, each read with item() (what fetch does for a few CPU scalars), without
        the general path's flattening and regrouping."""
        got: dict[str, Any] = dict.fromkeys(_FETCH_GROUPS, ())
        loss = self._loss_part()
        if loss:
            got["loss"] = [[loss[0].item()]]
        norms = self._grad_norms[1]
        if norms:
            got["grad"] = _floats(norms)
        clipped = self._clipped
        if clipped:
            got["clipped"] = _floats(clipped)
        return got

    def _fetch_later(self) -> dict[str, Any] | None:
        """_fetch_plain's answer without its host sync (CUDA): the loss and the norms as one
        PendingFetch, in both groups; plain_record (or _settled) reads it when it builds.
        None when there is nothing to read or it is not all on one device (a model split
        across devices): that step fetches at its end, as before."""
        loss = self._loss_part()
        norms = self._grad_norms[1]
        parts = loss + norms
        if not parts:
            return None
        device = parts[0].device
        for t in parts:
            if t.device != device:
                return None
        got: dict[str, Any] = dict.fromkeys(_FETCH_GROUPS, ())
        pending = fetch_later(parts)
        if loss:
            got["loss"] = [[pending]]
        if norms:
            got["grad"] = pending
        return got

    def _fetch_step(self, weights: Any, update: Any, modules: list[torch.Tensor],
                    extra: list[torch.Tensor]) -> dict[str, list[Any]]:
        """This step's numbers on the host, by group: the step's one host sync."""
        # foreach_norm gives 0-dim tensors: passed as they are (on CPU, fetch reads each with
        # item(); elsewhere it stacks them with the loss into one copy). Plain loops, not
        # comprehensions: every Python call here runs cold, right after the step's kernels.
        parts = (self._loss_part(), self._grad_norms[1], self._clipped or (), weights or (),
                 update or (), modules, self._scaler_tensors(),
                 extra)
        flat: list[torch.Tensor] = []
        for part in parts:
            if part:
                flat.extend(part)
        fetch_start = hook_clock()
        values = fetch(flat)
        if flat and flat[0].device.type != "cpu":
            self._device_wait += hook_clock() - fetch_start
        got: dict[str, Any] = dict.fromkeys(_FETCH_GROUPS, ())  # () for every empty group
        pos = 0
        for key, part in zip(_FETCH_GROUPS, parts):
            if not part:
                continue
            chunk = values[pos:pos + len(part)]
            pos += len(part)
            # norms: one flat list of floats per group; the rest: one list per tensor
            got[key] = list(chain.from_iterable(chunk)) if key in _FLAT_GROUPS else chunk
        return got

    def _memory(self, device: Any) -> dict[str, Any]:
        """Memory for this record, read at most every MEMORY_EVERY_S seconds: on CPU the
        reading is a system call that costs more than a short step's other bookkeeping."""
        now = time.monotonic()
        cached = self._memory_cache
        if cached is None or now - cached[0] >= MEMORY_EVERY_S:
            cached = self._memory_cache = (now, memory_snapshot(device))
        return dict(cached[1])

    def _extra_tensors(self) -> list[torch.Tensor]:
        if self.extra_fetch is None:
            return []
        extra = self.extra_fetch()
        return [extra.detach().reshape(-1)] if isinstance(extra, torch.Tensor) else []

    def _scaler_tensors(self) -> list[torch.Tensor]:
        scaler = self.scaler
        if (scaler is None or not self._scaled
                or not getattr(scaler, "is_enabled", lambda: False)()):
            return []
        scale = getattr(scaler, "_scale", None)
        tracker = getattr(scaler, "_growth_tracker", None)
        if scale is None:
            return []
        return [scale.reshape(1)] + ([tracker.reshape(1)] if tracker is not None else [])

    def _not_in_optimizer(self) -> list[str]:
        if self.optimizer is None:
            return []
        groups = self.optimizer.param_groups
        count = 0
        for group in groups:
            count += len(group["params"])
        key = (len(groups), count)
        if self._held_key != key:  # add_param_group changes this
            held = {id(p) for g in groups for p in g["params"]}
            self._held_key = key
            self._not_held = [n for n, p in self._trainable if id(p) not in held]
        return list(self._not_held)


def _median(values: Any) -> float:
    """The median of a few floats (statistics.median's checks cost ~5 µs a call, and the
    norm schedule asks twice on every step that takes the norm)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _floats(norms: list[torch.Tensor]) -> list[float]:
    """0-dim CPU norms as floats: item() each for a few (as fetch does), one copy for many."""
    if len(norms) <= 16:
        return [t.item() for t in norms]
    return list(chain.from_iterable(fetch(norms)))


def _settled(got: dict[str, Any]) -> dict[str, Any]:
    """An early fetch with its loss and norms as floats (waits for a deferred one)."""
    loss = got["loss"][0][0] if got["loss"] else None
    if not isinstance(loss, PendingFetch) and not isinstance(got["grad"], PendingFetch):
        return got
    loss, norms = settle(loss, got["grad"])
    return {**got, "loss": [[loss]] if loss is not None else (), "grad": norms}


def _unscaled(modules: dict[str, dict[str, Any]], scale: float | None) -> dict[str, dict[str, Any]]:
    """Per-module statistics with a GradScaler's scale divided out of the gradient norms:
    the gradients flowing out of modules are those of the scaled loss (as the per-weight
    norms taken during backward are; _build_record divides those too)."""
    if scale:
        for entry in modules.values():
            norm = entry.get("grad_norm")
            if norm is not None:
                entry["grad_norm"] = norm / scale
    return modules


def _root_sum_sq(values: list[float]) -> float:
    """sqrt(sum of squares), in C (map over operator.mul): no Python frame per value."""
    return sum(map(mul, values, values)) ** 0.5


def _mean_loss(losses: list[torch.Tensor]) -> list[torch.Tensor]:
    """The step's loss as one fetch part: the mean over its criterion calls (usually one)."""
    if not losses:
        return []
    if len(losses) == 1:
        loss = losses[0]
        return [loss if loss.dim() == 0 and loss.dtype == torch.float32 else loss.float().mean()]
    device = losses[0].device
    return [torch.stack([t.float().mean().to(device) for t in losses]).mean().reshape(1)]


@contextmanager
def watch(model: nn.Module, optimizer: Any = None, scaler: Any = None, *, modules: Any = "*",
          every: int = 1, loss: Any = None, max_overhead: float | None = DEFAULT_MAX_OVERHEAD,
          sink: Callable[[StepRecord], Any] | None = None) -> Iterator[WatchSession]:
    """Watch ``model`` for the duration of the ``with`` block; yields a :class:`WatchSession`.

    - ``optimizer``: its ``step()`` ends each step. None: the first optimizer that steps any
      of the model's parameters is adopted (global optimizer hooks, removed on exit); loops
      with no optimizer call ``session.step()``.
    - ``scaler``: a GradScaler, read for the ``amp`` field (its scale also unscales the
      backward-time gradient norms).
    - ``modules``: which modules get activation/gradient statistics ("*", a path, a glob,
      a class, a list of these, or None for none).
    - ``every``: per-module and per-weight detail at most every k-th step (1: every step);
      loss, timing and the doctor's signals are recorded every step.
    - ``max_overhead``: the share of step time tensorscope may spend on itself (default
      0.03; a step may always use 0.5 ms). When detail costs more, detail steps are spaced
      out (``signals["detail_every"]``, at most MAX_DETAIL_GAP apart, or
      MAX_DETAIL_WAIT_S for short steps). None: detail on
      every ``every``-th step whatever it costs.
    - ``loss``: a criterion module to read the loss from; None reads every criterion
      (subclass of ``nn.modules.loss._Loss``) called while the session is active, and
      ``session.log_loss(t)`` overrides both for functional losses.
    - ``sink``: called with each finished StepRecord (errors in it are counted, not raised).
    """
    session = WatchSession(model, optimizer, scaler, modules=modules, every=every, loss=loss,
                           max_overhead=max_overhead, sink=sink)
    session.attach()
    try:
        yield session
    finally:
        session.close()


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`watch`.

    ``tensorscope.watch`` is both this submodule and the public function. Once anything
    imports the submodule, Python binds the *module* to the package attribute, which would
    shadow the lazily loaded function; making the module callable keeps
    ``tensorscope.watch(model, ...)`` working whichever import came first.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return watch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
