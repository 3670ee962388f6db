"""Instrumentation for ``tensorscope run``: watches an unmodified script from inside its process.

Installed by ``tensorscope._bootstrap`` before the script starts, with PyTorch's global
registration APIs only (nothing is patched):

- global module forward pre/post hooks find the *root* model (a module called while no other
  module is running) and the loss modules (``nn.modules.loss._Loss`` called at top level);
- global optimizer step pre/post hooks find the optimizer and end each step.

At the first optimizer step the root model is the one whose parameters the optimizer holds;
from then on the global module hooks are removed (they would put every submodule call on
PyTorch's slow path). ``tensorscope.watch(model, optimizer, scaler)`` is then attached for
the per-module detail, and it carries the runner too: the watch's own forward pre-hook,
criterion hooks and optimizer pre-hook call the runner (``forward_listener``,
``loss_listener``, ``step_listener``), each step ends in the watch's sink, and the runner's
global optimizer hooks go at the first record. One set of hooks runs per step, not two.
With ``--detail steps`` the watch records step-level facts only (no per-module or per-weight
statistics). Without a watch (one that failed to attach) the runner hooks the model and the
loss modules itself.

Step 1 is measured by the runner alone (the watch attaches inside it), at the optimizer:
after any clipping. Its record waits for the next one with a gradient norm (step 2's, unless
GradScaler skipped it), which says whether the script clips; if it does, step 1's norm is
reported as the clipped one and its norm before clipping as unknown. An evaluation, the end
of the script or a crash sends it as it is.

The loss is the output of a top-level loss module; a script with a functional loss
(``F.cross_entropy``) gets its own variable named ``loss`` read at the optimizer step instead
(``signals["loss_source"]`` says which). A criterion used only for validation and first
called after the first optimizer step is looked for during the first evaluation phases.

Facts per step, all read with one host sync: the loss, the global gradient norm (before
and, when the script clips, after clipping), the GradScaler's scale and growth tracker.
With the watch attached (the default) that sync is the watch's own, and its record carries
everything this side needs — the runner adds epoch, memory, rank and the loss source, and
hands its extra tensors (multi-rank parameter checksums) to the watch's fetch. Without the
watch the runner does the one fetch itself.
A GradScaler is found by looking at the frames that called the optimizer step (``scaler.step``
is on the stack); a step it skipped never reaches the optimizer, so a skip is seen as a scale
that went down between two forwards with no optimizer step in between.

Every hook body is wrapped: an error is counted in ``hook_errors`` and never reaches the script.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
import types
import weakref
from functools import partial
from typing import Any, Callable, Iterator

import torch

from tensorscope.loss_weights import add_weight, weight_vector
from tensorscope.plain_step import FIELDS as PLAIN_FIELDS, plain_record
from tensorscope.telemetry import StepRecord, autocast_dtype, memory_snapshot, scaler_steps

SYNC_CHECK_EVERY = 10
"""Multi-rank runs: parameter checksums on steps 1-10, then on every 10th step."""
DETAILS = ("steps", "sampled", "full")
"""How much ``tensorscope run`` measures: step-level facts only; plus per-module statistics
as often as RUN_MAX_OVERHEAD of the step time allows (the default); or per-module
statistics at every step whatever they cost."""
RUN_MAX_OVERHEAD = 0.02
"""The watch's share of step time under ``run``: below watch()'s own 3 %, because the
runner's bookkeeping and the sender thread's JSON encoding come on top."""
EVAL_PROBE_PHASES = 2
"""A criterion first used in evaluation, after the first optimizer step, is looked for
during this many evaluation phases (a global module hook while they run)."""
FIRST_LOSSES_MAX = 256
"""Criterion calls kept before the first optimizer step (more: step 1 has no loss)."""
TAKEOVER_STREAK = 8
"""Steps in a row by another optimizer, with none by the charted one, after which it is
charted instead (when the script still holds the charted one; else at its first step).
Above a WGAN critic's usual 5 steps per generator step."""
HOLD_MAX = 8
"""Step 1's record waits for at most this many records after it (see _flush)."""
MEMORY_EVERY_S = 0.1
"""Memory is a system call on CPU: read it at most ten times a second, not every step."""
SCALER_SCAN_S = 1.0
"""A script without a GradScaler at its first step may create one later (mixed precision
turned on after a warm-up): the optimizer step's callers are looked at again at most this
often (a walk over their variables, ~50 µs) until one is found."""


class Instrumentation:
    """Global hooks that turn a running script into a stream of step records."""

    def __init__(self, script_path: str, emit: Callable[[dict[str, Any]], None],
                 detail: str = "sampled",
                 emit_later: Callable[[Callable[[], dict[str, Any]]], None] | None = None) -> None:
        if detail not in DETAILS:
            detail = "sampled"
        self.script_path = os.path.abspath(script_path)
        self.emit = emit
        self.emit_later = emit_later
        """Queues a function that returns an event, called in order with the events that
        ``emit`` queues but off the training thread (EventSender.send_later). With it,
        plain steps' records are built there (_on_plain_step)."""
        self.detail = detail
        self._memory: dict[str, Any] | None = None
        self._memory_at = -float("inf")
        self._rank_seen: int | None = None
        self.hook_errors = 0
        self.step = 0
        self.model: Any = None
        self.optimizer: Any = None
        self.scaler: Any = None
        self.watch_status = "not attached yet"
        self._watch_session: Any = None
        self._watched: Any = None
        """The WatchSession this runner attached (None when adopting the script's own). While
        there is one, it carries the runner's callbacks (see _attach_watch): no model, loss
        or optimizer hooks of the runner's own stay installed."""
        self._watch_attached = False
        self._watch_record: StepRecord | None = None
        self._global_handles: list[Any] = []
        self._handles: list[Any] = []
        self._depth = 0
        self._roots: dict[int, weakref.ref] = {}
        self._loss_modules: dict[int, weakref.ref] = {}
        self._loss: Any = None
        self._loss_source: str | None = None
        self._eval_losses: list[Any] = []
        self._eval_weights: list[int | None] = []
        """Each evaluation loss's batch size (None: not a batch mean, or unknown)."""
        self._eval_batch: int | None = None
        self._eval_epoch: int | None = None
        self._eval_forwards = 0
        self._eval_probe: Any = None
        self._eval_phases_probed = 0
        self._grad_norm: Any = None
        self._held: list[StepRecord] = []
        """Step 1's record and any after it, until one says whether the script clips (_flush)."""
        self._model_event: dict[str, Any] | None = None
        self._others: dict[int, str] = {}
        self._other_names: dict[int, str | None] = {}
        """The script's names for the optimizers in _others (None: not found)."""
        """Optimizers stepping besides the charted one (id -> class name)."""
        self._batch: int | None = None
        self._autocast: str | None = None
        self._t_step_end: float | None = None
        self._t_forward: float | None = None
        self._pending: StepRecord | None = None
        self._last_scale: float | None = None
        self._device: Any = None
        self._lookout: Any = None
        self._stepped: "weakref.WeakSet[Any]" = weakref.WeakSet()
        """The optimizers seen stepping (each checked once for a takeover)."""
        self._streak: tuple[Any, int, int] | None = None
        """(weakref to the optimizer, charted steps when it began, its steps since): the
        latest run of steps by one other optimizer with no charted step between them."""
        self._stepping_at = -1
        """The step count when the charted optimizer's step last began (see _other_step)."""
        self._no_owner: "weakref.WeakSet[Any]" = weakref.WeakSet()
        """Optimizers whose parameters no module in sight holds (no takeover)."""
        self._replaced_by_streak: Any = None
        """A weakref to the optimizer the last streak took the chart from (_other_step)."""
        self._no_streak: "weakref.WeakSet[Any]" = weakref.WeakSet()
        """Optimizers seen taking turns with another: never charted by a streak."""
        self._charted_from: list[dict[str, Any]] = []
        """The optimizers charted before the current one (see _take_over)."""
        self._hold_step = 1
        """The step whose record waits for the clipping verdict (see _flush)."""
        self._first_losses: list[Any] = []
        """Copies of the criterion outputs before the first optimizer step (step 1's loss)."""
        self._first_weights: dict[int, Any] = {}
        """Index in _first_losses -> the gradient that reached that output."""
        self._first_batches: dict[int, int] = {}
        """Root module id -> samples its training forwards took before the first step."""
        self._charted_since = 1
        """The first step of the charted optimizer (after a takeover, see _take_over)."""
        self._scaler_scan_at = 0.0
        self._step_caller: tuple[int, Any] | None = None
        """(depth from _look_for_scaler, code) of the frame that called the optimizer's step."""
        from tensorscope.distributed import rank_from_env

        launched = rank_from_env()  # read once: the environment does not change
        self._env_rank = launched.rank if launched is not None else None
        self._multi_rank = launched is not None and launched.world_size > 1
        self._skip_since_step = False
        self._adopted: Any = None
        self._group_rank: int | None = None
        self._inner: set[int] = set()
        """ids of the model's own modules: a criterion among them is part of the model's
        forward (an auxiliary term), not the script's loss."""
        self._frame_depths: dict[str, tuple[int, Any]] = {}
        """Call site -> (depth, code) where the script's frame was last found (_script_frame)."""

    # --- install / remove -------------------------------------------------------------

    def install(self) -> None:
        from torch.nn.modules import module as nn_module
        from torch.optim import optimizer as optim

        self._global_handles = [
            nn_module.register_module_forward_pre_hook(self._guard(self._global_pre)),
            nn_module.register_module_forward_hook(self._guard(self._global_post),
                                                   always_call=True),
        ]
        self._handles = [
            optim.register_optimizer_step_pre_hook(self._guard(self._opt_pre)),
            optim.register_optimizer_step_post_hook(self._guard(self._opt_post)),
        ]
        # Stays for the whole run (the two above go once the watch carries the steps): the
        # only way to see an optimizer other than the charted one step.
        self._lookout = optim.register_optimizer_step_pre_hook(self._any_step)

    def finish(self) -> None:
        """End of the script: emit what is pending and remove every hook."""
        try:
            self._check_skipped()
            self._flush_eval()
            self._flush()
        except Exception:
            self.hook_errors += 1
        try:
            self._release_held()
        except Exception:
            self.hook_errors += 1
        self._remove_global()
        self._end_eval_probe()
        if self._lookout is not None:
            self._lookout.remove()
            self._lookout = None
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._watch_session is not None:
            try:
                self._watch_session.__exit__(None, None, None)
            except Exception:
                self.hook_errors += 1
            self._watch_session = None
        self._watched = None

    def _remove_global(self) -> None:
        for handle in self._global_handles:
            handle.remove()
        self._global_handles = []

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., None]:
        def hook(*args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except Exception:  # tensorscope's own bug: counted, never the script's problem
                self.hook_errors += 1
            return None
        return hook

    # --- discovery (global module hooks, before the first optimizer step) -------------

    def _global_pre(self, module: Any, args: Any) -> None:
        if self._depth == 0:
            if self._is_loss(module):
                pass
            else:
                self._roots.setdefault(id(module), weakref.ref(module))
                self._on_root_forward(module, args)
                if module.training and torch.is_grad_enabled():
                    # Step 1's batch is the model's forwards' (all of them: gradient
                    # accumulation); which root is the model is known at discovery.
                    size = _batch_size(args)
                    if size:
                        self._first_batches[id(module)] = self._first_batches.get(id(module), 0) + size
        self._depth += 1

    def _global_post(self, module: Any, args: Any, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0 and self._is_loss(module):
            self._loss_modules.setdefault(id(module), weakref.ref(module))
            self._on_loss(output, module)

    @staticmethod
    def _is_loss(module: Any) -> bool:
        from torch.nn.modules.loss import _Loss

        return isinstance(module, _Loss)

    def _switch_to_model_hooks(self) -> None:
        """After discovery: hooks on the model and the loss modules only (fast path elsewhere)."""
        self._depth = 0
        if self.model is not None:
            self._handles.append(
                self.model.register_forward_pre_hook(self._guard(self._on_root_forward)))
        for ref in self._loss_modules.values():
            loss_module = ref()
            if loss_module is not None:
                self._handles.append(loss_module.register_forward_hook(
                    self._guard(lambda m, a, out: self._on_loss(out, m))))

    # --- per-iteration events -----------------------------------------------------------

    def _on_root_forward(self, module: Any, args: Any) -> None:
        now = time.perf_counter()
        evaluating = (not module.training) or (not torch.is_grad_enabled())
        if evaluating:
            self._eval_forwards += 1
            self._eval_batch = _batch_size(args)
            if self._eval_forwards == 1:
                # Read now: the record goes out at the next training forward, by when the
                # script may be in its next epoch.
                self._eval_epoch = self._script_epoch("eval")
            if (self._eval_forwards == 1 and self.optimizer is not None and self._eval_probe is None
                    and self._eval_phases_probed < EVAL_PROBE_PHASES):
                # A validation criterion of its own is first called now, after discovery:
                # look for it while this evaluation runs (no cost on training steps).
                from torch.nn.modules import module as nn_module

                self._eval_phases_probed += 1
                self._eval_probe = nn_module.register_module_forward_hook(
                    self._guard(self._probe_eval_loss))
            return
        # A training forward: what the previous iteration left is now complete. (Each call
        # guarded here: this runs on every step, and a Python call right after the step's
        # kernels costs several times its warm price.)
        if self._eval_probe is not None:
            self._end_eval_probe()
        if self._loss is not None:
            self._check_skipped()
        if self._eval_forwards:
            self._flush_eval()
        if self._pending is not None:
            self._flush()
        if self._t_forward is None:
            self._t_forward = now
            if self._watched is not None:
                return  # autocast and batch come with the watch's record
            self._autocast = autocast_dtype()
            size = _batch_size(args)
            if size is not None:
                self._batch = size

    def _on_loss(self, output: Any, module: Any = None) -> None:
        if not isinstance(output, torch.Tensor) or output.numel() != 1:
            return
        if self._eval_forwards and ((self.model is not None and not self.model.training)
                                    or not torch.is_grad_enabled()):
            self._eval_losses.append(output.detach())
            # A batch mean weighs as many samples as its batch had (a last, smaller batch
            # counts for less); a summed or per-element loss is averaged as it is.
            mean = getattr(module, "reduction", None) == "mean"
            self._eval_weights.append(self._eval_batch if mean else None)
            return
        self._loss = output.detach()
        self._loss_source = "a loss module"
        if self.optimizer is None and len(self._first_losses) < FIRST_LOSSES_MAX:
            # Step 1's loss (see _from_watch): each call's copy (`loss /= accum` after the
            # criterion must not change it), weighed by the gradient that reaches it, as
            # the watch does for later steps: a metric drops out, a sum adds up. Bounded:
            # a loop with no torch optimizer never gets past this point.
            self._first_losses.append(self._loss.float().reshape(()).clone())
            if output.requires_grad:
                output.register_hook(partial(self._first_loss_grad, len(self._first_losses) - 1))

    def _first_loss_grad(self, index: int, grad: Any) -> None:
        try:
            add_weight(self._first_weights, index, grad)
        except Exception:
            self.hook_errors += 1
        return None  # never change the gradient

    def _on_watch_loss(self, module: Any, output: Any) -> None:
        """A criterion the watch hooks ran: the script's loss if it is not the model's own."""
        key = id(module)
        if key in self._inner:
            return
        if key not in self._loss_modules:  # (setdefault would build a weakref every step)
            self._loss_modules[key] = weakref.ref(module)
        self._on_loss(output, module)

    def _probe_eval_loss(self, module: Any, args: Any, output: Any) -> None:
        if not self._is_loss(module) or id(module) in self._inner:
            return
        if id(module) in self._loss_modules:
            self._end_eval_probe()  # this evaluation uses a criterion already hooked
            return
        self._loss_modules[id(module)] = weakref.ref(module)
        if self._watched is not None:
            self._watched._hook_loss(module)
        else:
            self._handles.append(module.register_forward_hook(
                self._guard(lambda m, a, out: self._on_loss(out, m))))
        self._on_loss(output, module)  # this call's value: the hook just added fires from the next
        self._end_eval_probe()

    def _end_eval_probe(self) -> None:
        probe, self._eval_probe = self._eval_probe, None
        if probe is not None:
            probe.remove()

    def _opt_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.optimizer is None:
            self._discover(optimizer)
            if self._watched is not None:
                return  # the watch's pre-hook, added just now, runs next and calls _before_step
        if optimizer is not self.optimizer:
            return  # another optimizer: see _any_step
        self._before_step(optimizer)

    def _any_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """Every optimizer's step, before it runs (the charted one's: one comparison)."""
        if optimizer is self.optimizer or self.optimizer is None:
            return None
        try:
            self._other_step(optimizer)
        except Exception:  # tensorscope's own bug: counted, never the script's problem
            self.hook_errors += 1
        return None

    def _other_step(self, optimizer: Any) -> None:
        """An optimizer other than the charted one steps: a GAN's second one (named, not
        charted), or a new one that has taken over (the next training phase, the next
        fold of a cross-validation), which is charted from now on.

        It has taken over when, at its first step, nothing of the script's holds the charted
        optimizer any more (the old one was dropped or rebound: _held_by_script), or when it
        has made TAKEOVER_STREAK steps in a row with no step of the charted one between them."""
        if self._stepping_at == self.step:
            # Inside the charted step (it began, it is not counted yet): an optimizer it
            # steps itself (ZeroRedundancyOptimizer, a SAM-style wrapper) is its own part.
            return
        if optimizer in self._no_owner:
            self._not_charted(optimizer)
            return
        streak = self._streak
        # (Weak references and sets throughout: a dropped optimizer must be free to go,
        # and a new one may be given a dead one's id.)
        if streak is not None and streak[0]() is optimizer and streak[1] == self.step:
            self._streak = streak = (streak[0], self.step, streak[2] + 1)
        else:
            self._streak = streak = (weakref.ref(optimizer), self.step, 1)
        frame = sys._getframe(2)  # (the optimizer's step wrapper; the script above it)
        if optimizer not in self._stepped:
            self._stepped.add(optimizer)
            if not self._held_by_script():
                self._take_over(optimizer, frame)
                return
        if self._replaced_by_streak is not None and self._replaced_by_streak() is optimizer:
            # The one a streak replaced steps again: the two take turns (a probe trained
            # for a few steps now and then): back to it, and no more streaks for the other.
            self._no_streak.add(self.optimizer)
            self._take_over(optimizer, frame)
            return
        if streak[2] >= TAKEOVER_STREAK and optimizer not in self._no_streak:
            replaced = weakref.ref(self.optimizer)
            if self._take_over(optimizer, frame):
                self._replaced_by_streak = replaced
                return
        self._not_charted(optimizer)

    def _not_charted(self, optimizer: Any) -> None:
        """Another optimizer steps and stays uncharted: named, and what the script computed
        since the charted step (its loss, batch, backward passes) was for this one."""
        self._note_other_optimizer(optimizer)
        self._loss = None
        if self._watched is not None:
            self._watched.other_step()

    def _held_by_script(self) -> bool:
        """Whether anything besides tensorscope still holds the charted optimizer: the
        script's variables, an object of its (a trainer, an LR scheduler), a closure.

        Its reference count less tensorscope's own references: this runner's, the watch
        session's, and the watch() generator's frame that made it (and, on several ranks,
        the checksum closure). Any reference left uncounted here only makes it look held,
        so that a takeover waits for a streak instead of coming too early."""
        optimizer = self.optimizer
        ours = 2 + _CALL_EXTRA  # self.optimizer, this local name, and getrefcount's own
        if self._watched is not None and self._watched.optimizer is optimizer:
            ours += 2  # the session's attribute, and the watch() generator frame's argument
        if self._watched is not None and self._watched.extra_fetch is not None:
            ours += 1  # the checksum closure (several ranks)
        return sys.getrefcount(optimizer) > ours

    def _take_over(self, optimizer: Any, frame: Any) -> bool:
        """Chart ``optimizer`` from this step on, through a new watch on the module whose
        parameters it steps; its steps before this one are not counted (the run's step
        count is the charted steps: its record's and the --json summary's agree).
        False when no module in sight holds its parameters (then it is only named)."""
        model = _owner_of(optimizer, [self.model, *_caller_modules(frame)])
        if model is None:
            # No module in sight holds its parameters (a bare tensor optimized, a model
            # only an unseen object holds): named, and not looked for again.
            self._no_owner.add(optimizer)
            self._note_other_optimizer(optimizer)
            return False
        self._replaced_by_streak = None
        old_held = self._held_by_script()  # (before this method's own name for it)
        self._flush()
        self._release_held()
        old = self.optimizer
        if self._watch_session is not None:
            session, self._watch_session, self._watched = self._watch_session, None, None
            session.__exit__(None, None, None)
        self._watch_record = None  # the old session's partial record, cut short here
        self._watch_attached = False
        self._adopted = None
        self._others.pop(id(optimizer), None)
        if old_held:
            self._others[id(old)] = type(old).__name__  # it may step again: named, not charted
        self._charted_from.append({"optimizer": type(old).__name__, "until_step": self.step})
        self._charted_since = self.step + 1
        self._hold_step = self.step + 1  # held for the clipping verdict, as step 1 is
        # Its first step is timed from its own forward: the forward seen last may be the
        # old optimizer's, steps ago (a streak's worth of time read as compute).
        self._t_step_end = None
        self._t_forward = None
        self._streak = None
        self._step_caller = None
        self.optimizer = optimizer
        self.scaler = None  # the old one may not step this optimizer (mixed precision off)
        self._last_scale = None
        self._set_model(model, optimizer)
        self._attach_watch(model, optimizer)  # its pre-hook, added just now, runs next
        if self._watched is None and not self._handles:
            # No watch of the runner's (the script watches this model itself, or watch()
            # failed): the runner's own step hooks, on this optimizer itself. Global ones
            # would be added to the dict torch is going through right now.
            self._handles = [
                optimizer.register_step_pre_hook(self._guard(self._opt_pre)),
                optimizer.register_step_post_hook(self._guard(self._opt_post)),
            ]
            self._switch_to_model_hooks()  # (as at discovery: its forward flushes the step)
        self._announce({k: v for k, v in (self._model_event or {}).items()
                        if k in ("epochs", "batches_per_epoch")})
        return True

    def _before_step(self, optimizer: Any) -> None:
        """The optimizer is about to step: the loss fallback, and the norm without a watch."""
        self._stepping_at = self.step  # until this step is counted (see _other_step)
        if self._eval_probe is not None:
            self._end_eval_probe()  # forwards that looked like evaluation were training ones
        if self._eval_forwards:
            self._flush_eval()
        if self.scaler is None and self.optimizer is not None:
            self._look_for_scaler()
        if self._loss is None:
            # No loss module ran (a functional loss such as F.cross_entropy): fall back on
            # the script's own variable named `loss`, if it holds a one-element tensor.
            value = self._script_local("loss", "step")
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                self._loss = value.detach()
                self._loss_source = "the script's `loss` variable"
        if self._watch_attached and self._adopted is not None and not self._adopted._attached:
            self._watch_attached = False  # the script's own watch() ended: measure here again
            self._adopted = None
        if self._watch_attached:
            if self._watched is not None and self._loss_source == "the script's `loss` variable":
                self._watched.log_loss(self._loss)  # fetched in the watch's one sync
            return  # the watch measures the gradient norms (and fetches them) itself
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if grads:
            from tensorscope.stats import total_norm

            self._grad_norm = total_norm(grads)  # stays on device

    def _opt_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if optimizer is not self.optimizer:
            return
        now = time.perf_counter()
        self.step += 1
        detail, self._watch_record = self._watch_record, None
        if detail is not None:
            self._from_watch(now, detail)
            return
        self._own_step(now, self._param_checksum(optimizer, self.step))

    def _own_step(self, now: float, checksum: Any = None) -> None:
        """This step's record from the runner's own fetch (no watch record to complete)."""
        values = self._fetch(self._loss, self._grad_norm, checksum)
        loss, grad_norm, scale, tracker = values[:4]
        record = self._record(now, loss, grad_norm)
        if checksum is not None and values[4] is not None:
            record.signals["param_checksum"] = values[4]
        self._end_step(record, now, scale, tracker)

    def _end_step(self, record: StepRecord, now: float, scale: Any, tracker: Any) -> None:
        """Attach the AMP state to this step's record and make it the pending one.

        ``scale`` and ``tracker`` were read inside scaler.step(), before update(): they are
        replaced by what update() will make of a clean step, so that a later drop below that
        can only mean a skip (see _check_skipped)."""
        if self.scaler is not None and scale is not None:
            scale, tracker = _after_clean_update(self.scaler, scale, tracker)
            self._last_scale = scale
            record.amp = {"scale": scale, "growth_tracker": None if tracker is None else int(tracker),
                          "skipped": False, "autocast_dtype": self._autocast}
        elif self._autocast is not None:
            record.amp = {"scale": None, "growth_tracker": None, "skipped": False,
                          "autocast_dtype": self._autocast}
        self._pending = record
        self._step_done(now)

    def _step_done(self, now: float) -> None:
        """What one iteration kept for its record, cleared for the next (ended at ``now``)."""
        self._loss = None
        self._grad_norm = None
        self._t_forward = None
        self._t_step_end = now

    def _from_watch(self, now: float, detail: StepRecord) -> None:
        """This step's record from the watch's (already fetched): no second host sync."""
        # The watch's record is completed in place (not copied into a new one): its timing,
        # loss, norms, lr and detail are this step's; the runner adds what it alone knows.
        record = detail
        if self._watched is None:  # the script's own session: its records stay as they are
            record = dataclasses.replace(detail, signals=dict(detail.signals))
        first = self._t_step_end is None
        if first:
            # The first step: the watch was built inside it, so its clock started mid-step.
            self._timing(record, now)
            losses, weights = self._first_losses, self._first_weights
            self._first_losses, self._first_weights = [], {}
            if record.loss is None and len(losses) > 1 and self.scaler is None:
                # Every criterion call before the first step (the watch saw none of them),
                # weighed as the backward passes used them; with no gradient seen, or more
                # calls than were kept: not known, rather than a wrong number. (Not with a
                # GradScaler: iterations it skipped before any step look the same, and its
                # last call stays step 1's loss.)
                self._loss = None
                if weights and len(losses) < FIRST_LOSSES_MAX:
                    with torch.no_grad():
                        w = weight_vector(weights, len(losses), losses[0].device)
                        self._loss = (torch.stack(losses) * w).sum()
        if self._skip_since_step:
            # GradScaler skipped the previous iteration: it never reached the optimizer, so
            # the watch's record spans two iterations (loss averaged, batches added). This
            # iteration's own loss, batch and timing are the runner's (one extra fetch, on
            # the step after a skip only).
            self._skip_since_step = False
            record.loss = self._fetch(self._loss, None)[0] if self._loss is not None else None
            self._timing(record, now)
        if record.loss is None and self._loss is not None:
            record.loss = self._fetch(self._loss, None)[0]  # the script's own watch() had no loss
        if record.loss is not None and self._loss_source is None:
            self._loss_source = "a loss module"
        record.step = self.step
        record.epoch = self._script_epoch("watch")
        if now - self._memory_at >= MEMORY_EVERY_S:  # (checked here: most steps make no call)
            record.memory, record.rank = self._slow_facts(now)
        else:
            record.memory, record.rank = None, self._rank_seen
        if self._batch and not record.batch_size:
            record.batch_size = self._batch
        signals = record.signals
        signals["hook_errors"] = self.hook_errors + int(signals.get("hook_errors") or 0)
        signals["loss_source"] = self._loss_source
        extra = self._watched.last_extra if self._watched is not None else None
        if extra is not None:
            record.signals["param_checksum"] = extra
        amp = detail.amp or {}
        scale, tracker = amp.get("scale"), amp.get("growth_tracker")
        if self._watched is not None and not first:  # the first step's forward ran before the watch
            self._autocast = amp.get("autocast_dtype")
            self._batch = record.batch_size or self._batch
        self._end_step(record, now, scale, tracker)

    def _timing(self, record: StepRecord, now: float) -> None:
        """Step time, data wait, compute and samples/s of the step ending ``now``, by the
        runner's own clock (forward start, previous step end)."""
        step_time = None if self._t_step_end is None else now - self._t_step_end
        if step_time is None and self._t_forward is not None:
            # The first step counts from its first forward: what came before it (imports,
            # building the data) is the script's set-up, not a step of its loop.
            step_time = now - self._t_forward
        record.step_time_s = step_time
        record.compute_time_s = None if self._t_forward is None else now - self._t_forward
        record.data_time_s = None
        if self._t_step_end is not None and self._t_forward is not None:
            record.data_time_s = max(0.0, self._t_forward - self._t_step_end)
        record.batch_size = self._batch
        record.samples_per_s = (self._batch / step_time) if self._batch and step_time else None
        if self._t_step_end is None:
            # A first step is timed from its forward: without its data loading, its rate
            # would read several times the steady one and set the chart's scale.
            record.samples_per_s = None

    def _record(self, now: float, loss: float | None, grad_norm: float | None) -> StepRecord:
        memory, rank = self._slow_facts(now)
        lr = []
        for group in self.optimizer.param_groups:
            try:
                lr.append(float(group["lr"]))
            except (KeyError, TypeError, ValueError):
                lr.append(float("nan"))
        record = StepRecord(
            step=self.step, loss=loss, epoch=self._script_epoch("own"), phase="train",
            wall_time=time.time(), lr=lr, grad_norm=grad_norm,
            memory=memory, rank=rank,
            signals={"hook_errors": self.hook_errors, "loss_source": self._loss_source},
        )
        self._timing(record, now)
        return record

    def _checksum_next(self, optimizer: Any) -> Any:
        """_param_checksum for the step being recorded (the watch's extra_fetch)."""
        return self._param_checksum(optimizer, self.step + 1)

    def _param_checksum(self, optimizer: Any, step: int) -> Any:
        """Under a multi-rank launch: [sum, sum of squares] of the parameters, on device.

        Compared across ranks (tensorscope.rank_stats.compare_checksums) to see that they
        stay in sync after the optimizer step. Fetched with the step's other figures.
        Every step at first, then every SYNC_CHECK_EVERY-th: it reads every parameter once,
        which on CPU is a visible share of a small model's step; all ranks count steps
        alike, so they check the same steps and a divergence shows within that many steps.
        """
        if not self._multi_rank:
            return None
        if step > SYNC_CHECK_EVERY and step % SYNC_CHECK_EVERY:
            return None
        from tensorscope.rank_stats import param_checksum

        return param_checksum(p for group in optimizer.param_groups for p in group["params"])

    def _slow_facts(self, now: float) -> tuple[dict[str, Any] | None, int | None]:
        """Memory and rank for a step ending at ``now`` (perf_counter), both read at most
        every MEMORY_EVERY_S: memory is None on the steps between, the rank is the last one
        read (it changes once at most, when the script starts its process group; asking
        torch.distributed costs ~8 µs right after a step's kernels)."""
        if now - self._memory_at < MEMORY_EVERY_S:
            return None, self._rank_seen
        self._memory_at = now
        self._rank_seen = self._rank()
        return memory_snapshot(self._device), self._rank_seen

    def _fetch(self, loss: Any, grad_norm: Any, extra: Any = None) -> tuple[Any, ...]:
        """loss, grad norm, scale, growth tracker as Python numbers: one host sync.

        With ``extra`` (a 1-D tensor), a fifth item holds its values as a list, fetched in
        the same sync.
        """
        parts = [loss, grad_norm]
        if self.scaler is not None:
            parts += [getattr(self.scaler, "_scale", None), getattr(self.scaler, "_growth_tracker", None)]
        else:
            parts += [None, None]
        present = [(i, p) for i, p in enumerate(parts) if isinstance(p, torch.Tensor)]
        out: list[Any] = [None, None, None, None]
        if extra is not None:
            out.append(None)
        if not present and extra is None:
            return tuple(out)  # type: ignore[return-value]
        from tensorscope.hooks import fetch

        try:
            values = fetch([p.detach() for _, p in present] + ([extra] if extra is not None else []))
            for (i, _), value in zip(present, values):
                out[i] = value[0]
            if extra is not None:
                out[4] = values[-1]
        except Exception:
            for i, p in present:
                out[i] = float(p.detach().reshape(()).item())
        return tuple(out)  # type: ignore[return-value]

    def _check_skipped(self) -> None:
        """A loss was computed but no optimizer step followed: did GradScaler skip it?"""
        if self._loss is None:
            return
        # (A scaler is not looked for here: after its update() it steps no optimizer, and
        # the next step it does make finds it, in _look_for_scaler.)
        if self.scaler is None or self.optimizer is None:
            return
        loss, _, scale, tracker = self._fetch(self._loss, None)
        if scale is None or self._last_scale is None or scale >= self._last_scale:
            if scale is not None and self._last_scale is None:
                self._last_scale = scale
            return  # gradient accumulation, not a skip
        now = time.perf_counter()
        self.step += 1
        record = self._record(now, loss, None)
        record.amp = {"scale": scale, "growth_tracker": None if tracker is None else int(tracker),
                      "skipped": True, "autocast_dtype": self._autocast}
        self._last_scale = scale
        self._flush()
        self._pending = record
        self._skip_since_step = True  # the watch folds the skipped iteration into its next record
        self._step_done(now)

    def _flush_eval(self) -> None:
        if not self._eval_forwards:
            return
        loss = None
        if self._eval_losses:
            # One copy to the host, then weighed there in double precision (float64 on
            # the device is missing on MPS).
            values = torch.stack([v.float().reshape(()) for v in self._eval_losses]).tolist()
            weights = self._eval_weights
            if all(weights):
                loss = sum(v * w for v, w in zip(values, weights)) / sum(weights)
            else:
                loss = sum(values) / len(values)
        self._flush()
        self._release_held()  # records go out in order: step 1 before this evaluation
        self.emit(StepRecord(step=self.step, loss=loss, phase="eval", wall_time=time.time(),
                             epoch=self._eval_epoch, rank=self._rank(),
                             signals={"eval_forwards": self._eval_forwards}).to_json())
        self._eval_losses = []
        self._eval_weights = []
        self._eval_forwards = 0

    def _flush(self) -> None:
        record, self._pending = self._pending, None
        if record is None:
            return
        detail, self._watch_record = self._watch_record, None
        if detail is not None:
            record.modules = detail.modules
            record.params = detail.params
            record.signals = {**detail.signals, **record.signals,
                              "hook_errors": self.hook_errors
                              + int(detail.signals.get("hook_errors") or 0)}
            if record.grad_norm is None:
                record.grad_norm = detail.grad_norm
            if record.grad_norm_clipped is None:
                record.grad_norm_clipped = detail.grad_norm_clipped
            if record.loss is None:
                record.loss = detail.loss
        if self._held:
            self._held.append(record)
            if record.grad_norm is None and len(self._held) < HOLD_MAX:
                return  # a skipped or failed step says nothing about clipping: wait on
            first = self._held[0]
            if record.grad_norm is not None and record.grad_norm_clipped is not None:
                # The script clips: step 1's norm, taken at the optimizer, was the clipped
                # one; the norm before clipping was gone by then.
                first.grad_norm_clipped, first.grad_norm = first.grad_norm, None
            self._release_held()
            return
        if (record.step == self._hold_step and record.grad_norm is not None
                and self._adopted is None):
            # (The script's own watch, attached before the loop, saw step 1's backward.)
            self._held = [record]  # sent with the next record that has a norm (or sooner)
            return
        self.emit(record.to_json())

    def _release_held(self) -> None:
        """Send held records as they are, in order: something else must go out after them."""
        held, self._held = self._held, []
        for record in held:
            self.emit(record.to_json())

    def flush_records(self) -> None:
        """Send every record that waits (the pending one, a held step 1) now: the script
        crashed, and its error must come after its steps."""
        try:
            self._flush()
            self._release_held()
        except Exception:
            self.hook_errors += 1

    # --- discovery of model, scaler and watch -------------------------------------------

    def _discover(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self._stepped.add(optimizer)
        roots = [ref() for ref in self._roots.values()]
        best = _owner_of(optimizer, [m for m in roots if m is not None])
        self._set_model(best, optimizer)
        # (Not with a GradScaler: its skipped iterations, before any step, look the same.)
        if best is not None and self._first_batches.get(id(best)) and self.scaler is None:
            self._batch = self._first_batches[id(best)]
        self._first_batches = {}
        self._scaler_scan_at = time.perf_counter() + SCALER_SCAN_S
        length = _script_length(sys._getframe(1), self.script_path)
        self._remove_global()
        if best is not None:
            # Every detail measures through a watch (``steps``: one without detail): the
            # runner's own hooks alone cannot see the norm before the script clips.
            self._attach_watch(best, optimizer)
        if self._watched is None:
            self._switch_to_model_hooks()
        # Announced last: a sink that fails here must not leave the run without hooks.
        # (Other optimizers are named when they step: _any_step sees every one. Naming
        # those among the script's variables here also named a wrapper around this one,
        # and a second phase's optimizer long before it stepped.)
        self._announce(length)

    def _set_model(self, model: Any, optimizer: Any) -> None:
        """The charted model (None: no module owns the optimizer's parameters), its device,
        and the scaler that steps the optimizer now, if any."""
        self.model = model
        self._inner = {id(m) for m in model.modules()} if model is not None else set()
        first = next((p for group in optimizer.param_groups for p in group["params"]), None)
        self._device = getattr(first, "device", None)
        if self.scaler is None:
            self.scaler = _find_scaler(sys._getframe(2), optimizer)

    def _announce(self, length: dict[str, int]) -> None:
        """Send the model event: what is charted (model, optimizer, scaler) and what is not."""
        model, optimizer = self.model, self.optimizer
        self._model_event = {
            "type": "model",
            "model": type(model).__name__ if model is not None else None,
            "parameters": sum(p.numel() for p in model.parameters()) if model is not None else None,
            "optimizer": type(optimizer).__name__,
            "model_name": self._script_name(model) if model is not None else None,
            "optimizer_name": self._script_name(optimizer),
            "param_groups": len(optimizer.param_groups),
            "scaler": self.scaler is not None,
            "loss_modules": sorted({type(r()).__name__ for r in self._loss_modules.values()
                                    if r() is not None}),
            "device": str(self._device),
            **length,
        }
        if self._others:
            self._model_event["other_optimizers"] = list(self._others.values())
            self._model_event["other_optimizer_names"] = [self._other_names.get(key)
                                                          for key in self._others]
        if self._charted_from:
            # Charted optimizers before this one, each with the last step it made.
            self._model_event["earlier"] = list(self._charted_from)
            self._model_event["charted_since"] = self._charted_since
        self.emit(dict(self._model_event))

    def _look_for_scaler(self) -> None:
        """Is a GradScaler stepping the optimizer now? (Called from _before_step on every
        step until one is found: a script may create its scaler after a warm-up.)

        Exact and cheap on most steps: the frame that called the optimizer's ``step`` (above
        torch.optim's wrappers and these hooks) sits at the same depth from one step to the
        next; if it runs the same code as last time, no scaler came between; if it runs
        GradScaler's own step, that scaler is the one. Only when it runs other code is the
        chain walked again. A scaler of a class first imported later, or one that steps
        through a path of its own, is found by the full look at the callers' variables,
        made at most every SCALER_SCAN_S."""
        known = self._step_caller
        if known is not None:
            try:
                frame = sys._getframe(known[0])
            except ValueError:
                frame = None
            code = frame.f_code if frame is not None else None
            if code is known[1]:
                pass  # the same caller as before: no scaler stepping
            elif code in _SCALER_CODES:
                if self._adopt_scaler(_frame_local(frame, "self")):
                    return
                self._step_caller = (known[0], code)  # a disabled one: a plain caller
            else:
                known = None
        if known is None:
            frame, depth = _step_caller(sys._getframe(1))
            if (frame is not None and frame.f_code in _SCALER_CODES
                    and self._adopt_scaler(_frame_local(frame, "self"))):
                return
            self._step_caller = None if frame is None else (depth + 1, frame.f_code)
        now = time.perf_counter()
        if now >= self._scaler_scan_at:
            self._scaler_scan_at = now + SCALER_SCAN_S
            self._adopt_scaler(_find_scaler(sys._getframe(2), self.optimizer))

    def _adopt_scaler(self, scaler: Any) -> bool:
        """A GradScaler first seen after the first step: read from now on, by this side and
        by the attached watch (whose per-module gradient norms it divides out), and the
        model announced again so that the Training screen shows its AMP panel. False when
        it is not taken (none, disabled, or one is already read)."""
        if scaler is None or self.scaler is not None or not scaler.is_enabled():
            return False  # (a disabled scaler steps the optimizer as if it were not there)
        self.scaler = scaler
        if self._watched is not None:
            self._watched.use_scaler(scaler)
        if self._model_event is not None:
            self._model_event["scaler"] = True
            self.emit(dict(self._model_event))
        return True

    def _note_other_optimizer(self, optimizer: Any) -> None:
        """Another optimizer steps too (a GAN's second one, a second model): one is charted.
        Said once per optimizer, by announcing the model again with its class and the
        script's name for it."""
        if id(optimizer) in self._others or self._model_event is None:
            return
        self._others[id(optimizer)] = type(optimizer).__name__
        self._other_names[id(optimizer)] = self._script_name(optimizer)
        self._model_event["other_optimizers"] = list(self._others.values())
        self._model_event["other_optimizer_names"] = [self._other_names.get(key)
                                                      for key in self._others]
        self.emit(dict(self._model_event))

    def _script_name(self, value: Any) -> str | None:
        """The name the script knows ``value`` by ("netD", "self.opt_g"), from its own frames
        on the stack now (a GAN's two Sequentials and two Adams are told apart by it)."""
        try:
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_filename == self.script_path:
                    variables = _frame_snapshot(frame)
                    for name, held in variables.items():
                        if held is value:
                            return name
                    for name, held in variables.items():
                        for attribute, inner in _members(held):
                            if inner is value:
                                return f"{name}.{attribute}"
                frame = frame.f_back
        except Exception:
            return None
        return None

    def _attach_watch(self, model: Any, optimizer: Any) -> None:
        try:
            from tensorscope.watch import watch
        except ImportError as exc:
            self.watch_status = f"unavailable ({exc})"
            return
        from tensorscope.watch import live_session_for

        own = live_session_for(model)
        if own is not None:
            # The script watches this model itself: stream its records, with the detail the
            # script asked for, instead of paying for a second set of hooks.
            own.add_observer(self._on_watch_record)
            self._adopted = own
            self._watch_attached = True
            self.watch_status = "the script's own watch()"
            return
        try:
            steps_only = self.detail == "steps"
            budget = None if self.detail in ("full", "steps") else RUN_MAX_OVERHEAD
            session = watch(model, optimizer, self.scaler, max_overhead=budget,
                            modules=None if steps_only else "*", sink=self._on_watch_record)
            watched = session.__enter__()
            if steps_only:
                watched.step_level_only()
            watched.record_memory = False  # _flush keeps this side's rate-limited reading
            watched.min_budget_s = 0.0  # the share alone: short steps are the common case here
            if self._multi_rank:
                # Called in the watch's post-hook, before this step is counted here.
                watched.extra_fetch = partial(self._checksum_next, optimizer)
            watched.max_records = 0  # records go to the sink only; the runner keeps none
            # One set of hooks for both: the watch's own model, criterion and optimizer hooks
            # call the runner, and each step ends in the sink. The runner's global optimizer
            # hooks go once the first record arrives (removing them now, while PyTorch
            # iterates over them, would break the script's step).
            # (Not wrapped in _guard: the watch counts what they raise in its own errors,
            # which each record's hook_errors adds in; a wrapper is a call more per step.)
            watched.forward_listener = self._on_root_forward
            watched.loss_listener = self._on_watch_loss
            watched.step_listener = self._before_step
            watched.failed_step_listener = self._guard(self._on_failed_watch_step)
            if self.emit_later is not None:
                watched.plain_sink = self._on_plain_step
            for ref in self._loss_modules.values():
                loss_module = ref()
                if loss_module is not None:
                    watched._hook_loss(loss_module)  # eval-only criteria the watch never saw
            self._watch_session = session
            self._watched = watched
            self._watch_attached = True
            self.watch_status = "attached"
        except Exception as exc:
            self.hook_errors += 1
            self.watch_status = f"failed ({type(exc).__name__}: {exc})"

    def _on_failed_watch_step(self) -> None:
        """The watch could not build this step's record: count the step with the runner's
        own figures (loss, timing, AMP; no gradient norm) rather than lose it."""
        if self._watched is None:
            return  # _opt_post runs next and fetches for itself
        self.hook_errors += 1
        self._retire_own_hooks()
        self.step += 1
        self._own_step(time.perf_counter())  # no gradient norm: the watch takes that one
        self._flush()

    def _retire_own_hooks(self) -> None:
        """At the first step the watch ends: it carries everything from now on. Called from
        the watch's own optimizer post-hook, which PyTorch runs before the global ones, so
        removing those now cannot disturb its iteration over them."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def _on_watch_record(self, record: StepRecord) -> None:
        if self._watched is None:
            self._watch_record = record  # merged by _opt_post, which runs next
            return
        try:
            if record.signals.get("partial"):
                return  # the watch closing mid-iteration at the script's end: not a step
            now = time.perf_counter()
            if self._handles:  # the first record only; this path runs on every step
                self._retire_own_hooks()
            self.step += 1
            self._from_watch(now, record)
            self._flush()  # nothing can change it any more: send it now
        except Exception:
            self.hook_errors += 1

    def _on_plain_step(self, raw: tuple[Any, ...]) -> bool:
        """A plain step's raw values from the watch: what _on_watch_record does with a
        record, with the record itself built later on the sender's thread (_plain_event).

        Taken only where _from_watch and _flush would do nothing that reads the record:
        not the first steps (held step 1, the hooks still to retire), not after a skip,
        no GradScaler, no loss to fetch here instead. Otherwise False: the watch builds
        the record now and it comes through _on_watch_record."""
        if (self._held or self._handles or self._skip_since_step or self._t_step_end is None
                or self.scaler is not None or self._pending is not None
                or (raw[_RAW_LOSS] is None and self._loss is not None)):
            return False
        try:
            now = raw[_RAW_NOW]
            self.step += 1
            epoch = self._script_epoch("plain")  # (its own site: one frame less deep)
            if now - self._memory_at >= MEMORY_EVERY_S:
                memory, rank = self._slow_facts(now)
            else:
                memory, rank = None, self._rank_seen
            if raw[_RAW_LOSS] is not None and self._loss_source is None:
                self._loss_source = "a loss module"
            batch = self._batch
            self._autocast = raw[_RAW_AUTOCAST]
            self._batch = raw[_RAW_BATCH] or batch
            self._step_done(now)
            self.emit_later(partial(_plain_event, raw, self.step, epoch, memory, rank, batch,
                                    self.hook_errors, self._loss_source))
        except Exception:
            self.hook_errors += 1
        return True

    def _rank(self) -> int | None:
        """This process's rank: the process group's once it is up, else the launcher's."""
        if self._group_rank is not None:
            return self._group_rank  # a process keeps its rank for as long as its group lives
        try:
            dist = _distributed()
            if dist is not None and dist.is_initialized():
                self._group_rank = int(dist.get_rank())
                return self._group_rank
        except Exception:
            return None
        return self._env_rank

    def _script_epoch(self, site: str) -> int | None:
        """The script's own ``epoch`` variable, read from its innermost frame, if it has one
        (``site``: see _script_frame)."""
        frame = self._script_frame(site)
        if frame is None:
            return None
        code = frame.f_code
        optimized = code.co_flags & _CO_OPTIMIZED
        if (optimized and "epoch" not in code.co_varnames
                and "epoch" not in code.co_cellvars and "epoch" not in code.co_freevars):
            # A function with no local of that name: its f_locals cannot hold one, and
            # building that snapshot is most of this call's price.
            return None
        values = frame.f_locals  # (_frame_local, inlined: this runs on every step)
        value = values.get("epoch")
        if optimized and type(values) is dict:
            values.clear()  # see _drop_snapshot
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _script_local(self, name: str, site: str) -> Any:
        """``name`` in the script's innermost running frame (None when absent)."""
        frame = self._script_frame(site)
        return _frame_local(frame, name) if frame is not None else None

    def _script_frame(self, site: str) -> Any:
        """The script's innermost running frame, for a call from ``site`` (a name that each
        place in this file asking for it passes, always through one of the two methods
        above).

        The walk up to it goes through ~10 frames, each an object Python builds on demand,
        on every step. The chain from a given place to the script repeats from one step to
        the next, so the depth found last time from that site is tried first: the frame
        there is taken if it runs the same script code as it did then; if not, walk.
        """
        known = self._frame_depths.get(site)
        if known is not None:
            depth, code = known
            try:
                frame = sys._getframe(depth)
            except ValueError:
                frame = None
            if frame is not None and frame.f_code is code:
                return frame
        frame, depth = sys._getframe(1), 1
        while frame is not None:
            if frame.f_code.co_filename == self.script_path:
                self._frame_depths[site] = (depth, frame.f_code)
                return frame
            frame, depth = frame.f_back, depth + 1
        return None


_RAW_LOSS, _RAW_NOW, _RAW_AUTOCAST, _RAW_BATCH = (
    PLAIN_FIELDS.index(name) for name in ("loss", "now", "autocast", "batch"))


def _plain_event(raw: tuple[Any, ...], step: int, epoch: int | None, memory: Any, rank: Any,
                 batch: int | None, hook_errors: int, loss_source: str | None) -> dict[str, Any]:
    """A plain step's event, on the sender's thread: the watch's record (plain_record)
    completed as _from_watch and _end_step complete it (the runner's step count, the
    script's epoch, memory and rank, its hook errors and loss source, the AMP state)."""
    record = plain_record(raw)
    record.step = step
    record.epoch = epoch
    record.memory, record.rank = memory, rank
    if batch and not record.batch_size:
        record.batch_size = batch
    signals = record.signals
    signals["hook_errors"] = hook_errors + int(signals.get("hook_errors") or 0)
    signals["loss_source"] = loss_source
    if record.amp is not None:  # autocast without a GradScaler: no step is ever skipped
        record.amp["skipped"] = False
    return record.to_json()


_DIST: Any = None


def _distributed() -> Any:
    """torch.distributed, imported once (None where this build lacks it): asked on every
    step, where an import statement and is_available() cost more than the answer."""
    global _DIST
    if _DIST is None:
        import torch.distributed as dist

        _DIST = dist if dist.is_available() else False
    return _DIST or None


def _call_extra() -> int:
    """What ``sys.getrefcount(name)`` counts beyond the object's own references: its
    argument on CPython up to 3.13, nothing where a local is lent, not copied, to the
    call (3.14's borrowed loads). Measured the way _held_by_script counts."""
    class Holder:
        pass

    holder = Holder()
    holder.value = object()
    value = holder.value
    return sys.getrefcount(value) - 2  # the attribute and this local name


_CALL_EXTRA = _call_extra()


def _batch_size(args: Any) -> int | None:
    """The leading dimension of a forward's first tensor-like argument."""
    for value in args if isinstance(args, tuple) else (args,):
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 0:
            return int(shape[0])
    return None


def _owner_of(optimizer: Any, modules: list[Any]) -> Any:
    """The module among ``modules`` that holds the most of ``optimizer``'s parameters (on a
    tie the larger one: a root over its own submodule); None when none holds any."""
    owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    best, best_key = None, (0, 0)
    seen: set[int] = set()
    for module in modules:
        if module is None or id(module) in seen:
            continue
        seen.add(id(module))
        params = list(module.parameters())
        key = (sum(1 for p in params if id(p) in owned), len(params))
        if key[0] and key > best_key:
            best, best_key = module, key
    return best


def _caller_modules(frame: Any) -> list[Any]:
    """The nn.Modules among the calling frames' variables, and among the attributes of
    the objects there (a trainer's ``self.model``)."""
    from torch import nn

    found = []
    for value in _caller_values(frame):
        if isinstance(value, nn.Module):
            found.append(value)
        else:
            found.extend(inner for _, inner in _members(value) if isinstance(inner, nn.Module))
    return found


def _members(value: Any) -> list[tuple[str, Any]]:
    """(name, value) of a plain object's first 64 attributes (a trainer's ``self.model``);
    none for classes, modules, tensors and objects without a ``__dict__``."""
    if isinstance(value, (type, torch.Tensor, types.ModuleType)):
        return []
    attributes = getattr(value, "__dict__", None)
    return list(attributes.items())[:64] if isinstance(attributes, dict) else []


def _caller_values(frame: Any, depth: int = 30) -> Iterator[Any]:
    """The local variables of ``frame`` and of up to ``depth`` frames that called it."""
    while frame is not None and depth > 0:
        yield from _frame_snapshot(frame).values()
        frame = frame.f_back
        depth -= 1


def _frame_local(frame: Any, name: str) -> Any:
    """``name`` among ``frame``'s variables (None when absent), without keeping any alive."""
    values = frame.f_locals
    value = values.get(name)
    _drop_snapshot(frame, values)
    return value


def _frame_snapshot(frame: Any) -> dict[str, Any]:
    """A copy of ``frame``'s variables; the frame keeps none alive (see _drop_snapshot)."""
    values = frame.f_locals
    found = dict(values)
    _drop_snapshot(frame, values)
    return found


def _drop_snapshot(frame: Any, values: Any) -> None:
    """Empty the dict that reading ``f_locals`` of a function's frame filled.

    Up to Python 3.12 that read copies every variable of the frame into a dict the frame
    keeps: the script's ``batch``, ``out`` and ``loss`` of this step would then stay alive
    through the whole next step (peak memory up by one step's tensors, and the previous
    graph freed in tensorscope's hook instead of where the script drops it). Emptying it
    changes nothing for the frame, whose own variables are the real ones; a module's
    frame, whose f_locals are its globals, is left alone, and so is 3.13's live proxy.
    """
    if type(values) is dict and frame.f_code.co_flags & _CO_OPTIMIZED:
        values.clear()


_CO_OPTIMIZED = 0x0001  # inspect.CO_OPTIMIZED: a function's frame (variables in fast slots)


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
_OPTIM_DIR = os.path.dirname(os.path.abspath(torch.optim.__file__))


def _step_caller(frame: Any, depth: int = 30) -> tuple[Any, int]:
    """The first frame above ``frame`` that is neither tensorscope's nor torch.optim's (its
    step wrappers, an LR scheduler's), and how many frames up it is; (None, 0) if none."""
    up = 0
    while frame is not None and up < depth:
        where = frame.f_code.co_filename
        if not (where.startswith(_OWN_DIR) or where.startswith(_OPTIM_DIR)):
            return frame, up
        frame, up = frame.f_back, up + 1
    return None, 0


def _scaler_codes() -> frozenset[Any]:
    """The code of GradScaler's step and of its helper that calls the optimizer, for the
    classes imported now (a subclass that keeps them shares their code)."""
    try:
        from torch.amp import GradScaler
    except ImportError:
        return frozenset()
    classes, codes = [GradScaler], set()
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        for name in ("step", "_maybe_opt_step"):
            code = getattr(getattr(cls, name, None), "__code__", None)
            if code is not None:
                codes.add(code)
    return frozenset(codes)


_SCALER_CODES = _scaler_codes()


def _find_scaler(frame: Any, optimizer: Any = None) -> Any:
    """An enabled GradScaler among the locals of the calling frames (``scaler.step`` is
    one of them) that is stepping ``optimizer`` now, when one is given: a GAN's generator
    may have a scaler of its own, and a script may keep one it no longer uses."""
    try:
        from torch.amp import GradScaler
    except ImportError:
        return None
    for value in _caller_values(frame):
        if (isinstance(value, GradScaler) and value.is_enabled()
                and (optimizer is None or scaler_steps(value, optimizer))):
            return value
    return None





_EPOCH_NAMES = ("epochs", "num_epochs", "n_epochs", "max_epochs", "EPOCHS", "NUM_EPOCHS")


def _script_length(frame: Any, script_path: str) -> dict[str, int]:
    """How long the run is, when the script's own variables say it.

    ``batches_per_epoch``: ``len()`` of a shuffling DataLoader in the script's frames (an
    unshuffled one may be the validation set), or of the only DataLoader there is;
    ``epochs``: an int named like ``epochs`` (or such an attribute of an argparse result).
    Read once; a script that hides both simply gets no progress bar.
    """
    from torch.utils.data import DataLoader, RandomSampler

    out: dict[str, int] = {}
    unshuffled: dict[int, int] = {}  # id -> len() of the loaders that do not shuffle
    while frame is not None:
        if frame.f_code.co_filename == script_path:
            values = _frame_snapshot(frame)
            for value in values.values():
                if isinstance(value, DataLoader) and "batches_per_epoch" not in out:
                    try:
                        if isinstance(value.sampler, RandomSampler) or value.batch_sampler is None:
                            out["batches_per_epoch"] = len(value)
                        else:
                            unshuffled[id(value)] = len(value)
                    except TypeError:  # an iterable dataset has no length
                        pass
                elif hasattr(value, "_get_kwargs") and "epochs" not in out:  # argparse result
                    for name in _EPOCH_NAMES:
                        number = getattr(value, name, None)
                        if isinstance(number, int) and not isinstance(number, bool):
                            out["epochs"] = number
            for name in _EPOCH_NAMES:
                number = values.get(name)
                if isinstance(number, int) and not isinstance(number, bool) and "epochs" not in out:
                    out["epochs"] = number
        frame = frame.f_back
    if "batches_per_epoch" not in out and len(unshuffled) == 1:
        out["batches_per_epoch"] = next(iter(unshuffled.values()))
    return out


def _after_clean_update(scaler: Any, scale: float, tracker: Any) -> tuple[float, Any]:
    """Scale and growth tracker after ``update()`` of a step with no inf (GradScaler's rule)."""
    if tracker is None:
        return scale, tracker
    try:
        tracker = int(tracker) + 1
        if tracker >= scaler.get_growth_interval():
            return scale * scaler.get_growth_factor(), 0
    except Exception:
        pass
    return scale, tracker


def format_script_traceback(exc: BaseException, script_path: str) -> str:
    """The traceback as Python prints it for ``python script.py``: bootstrap frames left out."""
    tb = exc.__traceback__
    script_path = os.path.abspath(script_path)
    cursor = tb
    while cursor is not None and os.path.abspath(cursor.tb_frame.f_code.co_filename) != script_path:
        cursor = cursor.tb_next
    return "".join(traceback.format_exception(type(exc), exc, cursor or tb))
