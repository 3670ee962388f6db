"""Counting the host syncs a training loop makes, on sampled steps only.

``watch()`` opens a counting *window* at the end of one step (the optimizer's post hook,
or ``session.step()``) and closes it when the next step's optimizer ``step()`` begins (or
at ``session.step()``), so a window covers one whole iteration of the user's loop —
wherever in it the ``.item()`` sits — but neither the optimizer's internals (Adam reads its
step counter with ``.item()``) nor tensorscope's own one fetch per step, which happens
after the window has closed.

Inside a window a :class:`torch.overrides.TorchFunctionMode` counts the tensor calls that
copy a value to the host — on an accelerator each one waits for all queued work:
``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``np.asarray(t)``, ``bool/float/int(t)``,
using a tensor as an index, formatting or printing a tensor, and ``.to("cpu")`` of a tensor
that is not already on the CPU (device-generic ``x.to(device)`` on a CPU-only run copies
nothing and is not counted). The mode is PyTorch's own API: nothing is patched. It is
entered and exited from hooks on the training thread; if the stack top is not ours at
exit, someone else's mode sits above it and popping would remove theirs, so the window is
abandoned, counted as an error, and sampling stops (the stale mode passes calls through
and is popped as soon as it is on top again).

On CUDA, :class:`CudaSyncWatch` can additionally count the synchronizations the CUDA
runtime itself reports with ``torch.cuda.set_sync_debug_mode("warn")`` (this also sees
syncs hidden inside torch ops, e.g. ``nonzero``, boolean-mask indexing). It is written
against the documented API but UNTESTED here (no GPU on the build machine).

Sampling (:class:`SyncSampler`): the mode routes every Python-level torch call of the
window through a Python function (a few µs each), so only some steps are counted: steps
2–4 (step 1 is a warm-up and has no window start before it), then one step at random
gaps averaging :data:`SAMPLE_MEAN_GAP`. A model run through ``torch.compile`` (the watched
module or one of its submodules compiled) is never counted: dynamo guards on the mode stack
and would recompile on every sampled step. A compiled step *function* around an uncompiled
module cannot be seen from the module: there sampled steps recompile once (then cached). Random (own seeded RNG; torch's RNG is never
touched) rather than every k-th step, so that a loop which logs ``.item()`` every 10 or
25 steps cannot line up with the sample and look like a sync on every step.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import warnings
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

SAMPLE_FIRST = (2, 3, 4)
"""Steps always sampled: enough (the doctor's MIN_STEPS_FOR_TREND is 3) for a short run to be
diagnosed; step 1 has no window (the window opens when a step ends)."""

SAMPLE_MEAN_GAP = 25
"""After the first samples, one step in about this many is counted: with the mode costing a
few µs per Python-level torch call, this keeps the average overhead under ~1/25 of the
sampled step's extra cost (see bench/README.md, Hooks and watch())."""

_HOST_COPY = frozenset(
    getattr(torch.Tensor, name) for name in (
        "item", "tolist", "cpu", "numpy", "__array__", "__bool__", "__float__", "__int__",
        "__index__", "__complex__", "__format__", "__repr__",
    ) if hasattr(torch.Tensor, name)
)
"""Tensor methods that copy values to the host (and so wait for the device)."""

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_DISPATCH_FILES = ("overrides.py", "_tensor.py", os.path.join("utils", "_device.py"))
"""torch's own files that sit between a caller and the mode (Python-level Tensor methods such
as __format__ dispatch from here): skipped when looking for who made the call."""


def _made_by_loop(depth: int = 2, limit: int = 8) -> bool:
    """Whether the counted call came from the user's code, not from inside torch (GradScaler
    and optimizers read flags with .item(): torch's business, not the loop's) or tensorscope's
    core (its own reads). Only runs for the rare host-copying call, so the frame walk is cheap."""
    try:
        frame = sys._getframe(depth)
    except ValueError:  # called straight from C with no Python caller: not torch's code either
        return True
    for _ in range(limit):
        if frame is None:
            return True
        name = frame.f_code.co_filename
        if name.startswith(_TORCH_DIR):
            if name[len(_TORCH_DIR):] not in _DISPATCH_FILES:
                return False
        else:
            return not name.startswith(_OWN_DIR)
        frame = frame.f_back
    return True


def _to_cpu_copy(args: tuple, kwargs: dict) -> bool:
    """Whether ``Tensor.to(*args, **kwargs)`` moves a non-CPU tensor to the CPU."""
    if not args or not isinstance(args[0], torch.Tensor) or args[0].device.type == "cpu":
        return False
    target: Any = kwargs.get("device")
    for a in args[1:]:
        if isinstance(a, (str, torch.device)):
            target = a
        elif isinstance(a, torch.Tensor):
            target = a.device
    if target is None:
        return False
    try:
        return torch.device(target).type == "cpu"
    except (RuntimeError, TypeError, ValueError):
        return False


class _CountingMode(TorchFunctionMode):
    """Counts host-copying tensor calls while on the stack (torch pops it during each call,
    so the calls a counted method makes internally are not counted again)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.live = True
        """False once abandoned: a stale mode passes every call through uncounted."""
        self.errors = 0
        """Failures of the counting itself (the call still went through)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            if (self.live and (func in _HOST_COPY or (func is torch.Tensor.to and _to_cpu_copy(args, kwargs)))
                    and _made_by_loop()):
                self.count += 1
        except Exception:  # counting must never break the user's call
            self.errors += 1
        return func(*args, **kwargs)


def _stack() -> list[Any]:
    return list(torch.overrides._get_current_function_mode_stack())


class SyncCounter:
    """One counting window at a time: :meth:`start`, then :meth:`stop` -> count or None.

    ``stop`` returns None when the window could not be measured (never started, started on
    another thread, or the mode stack was disturbed). ``errors`` counts disturbances;
    after one, ``enabled`` is False and no more windows open.
    """

    def __init__(self) -> None:
        self.enabled = True
        self.errors = 0
        self._mode: _CountingMode | None = None
        self._thread: int | None = None
        self._stale: list[_CountingMode] = []

    @property
    def active(self) -> bool:
        return self._mode is not None

    def start(self) -> bool:
        """Open a window on this thread; False (nothing entered) when it is not safe to."""
        self._pop_stale()
        if not self.enabled or self._mode is not None:
            return False
        # Only over an empty stack or set_default_device's DeviceContext (which re-pushes the
        # modes above it when it leaves): a user's `with SomeMode():` spanning our window
        # would otherwise pop *our* mode at its exit and leave its own behind.
        from torch.utils._device import DeviceContext

        if any(not isinstance(m, DeviceContext) for m in _stack()):
            return False
        mode = _CountingMode()
        mode.__enter__()
        self._mode, self._thread = mode, threading.get_ident()
        return True

    def stop(self) -> int | None:
        """Close the window; its count, or None if it was not measured."""
        mode, self._mode = self._mode, None
        if mode is None:
            return None
        if threading.get_ident() != self._thread:
            return self._abandon(mode)
        stack = _stack()
        if not stack or stack[-1] is not mode:
            return self._abandon(mode)
        mode.__exit__(None, None, None)
        self.errors += mode.errors
        return mode.count

    def close(self) -> None:
        """End any open window (session exit/detach); never pops another's mode."""
        if self._mode is not None:
            self.stop()
        self._pop_stale()

    def _abandon(self, mode: _CountingMode) -> None:
        mode.live = False
        self.errors += 1
        self.enabled = False
        if any(m is mode for m in _stack()):
            self._stale.append(mode)
        return None

    def _pop_stale(self) -> None:
        # A stale mode of ours that has come back to the top (the mode above it left) is
        # ours to remove; anything else stays where it is.
        while self._stale:
            stack = _stack()
            if stack and any(stack[-1] is m for m in self._stale):
                top = stack[-1]
                top.__exit__(None, None, None)
                self._stale = [m for m in self._stale if m is not top]
            else:
                break


class SyncSampler:
    """Which steps get a counting window: :data:`SAMPLE_FIRST`, then random gaps."""

    def __init__(self, mean_gap: int = SAMPLE_MEAN_GAP, seed: int = 0x5EED) -> None:
        self._rng = random.Random(seed)  # our own RNG: the user's random/torch streams untouched
        self._gap = max(1, int(mean_gap))
        self._next = max(SAMPLE_FIRST) + self._draw()

    def _draw(self) -> int:
        return self._rng.randint(1, 2 * self._gap - 1) if self._gap > 1 else 1

    def sampled(self, step: int) -> bool:
        """Whether 1-based ``step`` is counted. Call with increasing steps."""
        if step in SAMPLE_FIRST:
            return True
        if step < self._next:
            return False
        while self._next <= step:
            hit = self._next == step
            self._next += self._draw()
        return hit


class CudaSyncWatch:
    """UNTESTED (no GPU here): counts the syncs CUDA reports via set_sync_debug_mode("warn").

    Captures warnings during the window like ``warnings.catch_warnings(record=True)``, keeps
    the sync warnings as the count and re-emits every other warning at :meth:`stop`, after
    the filters and the previous debug mode are restored.
    """

    MESSAGE = "called a synchronizing CUDA operation"

    def __init__(self) -> None:
        self._catcher: Any = None
        self._caught: list[Any] | None = None
        self._prev_mode: int | None = None

    @staticmethod
    def available() -> bool:
        return torch.cuda.is_available() and hasattr(torch.cuda, "set_sync_debug_mode")

    def start(self) -> bool:
        if self._catcher is not None or not self.available():
            return False
        self._catcher = warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        self._prev_mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("warn")
        return True

    def stop(self) -> int | None:
        if self._catcher is None:
            return None
        try:
            torch.cuda.set_sync_debug_mode(self._prev_mode or 0)
        finally:
            catcher, caught = self._catcher, self._caught or []
            self._catcher = self._caught = None
            catcher.__exit__(None, None, None)
        syncs = 0
        for w in caught:
            if self.MESSAGE in str(w.message):
                syncs += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return syncs


def _compiled(model: Any) -> bool:
    """Whether ``model`` runs through torch.compile: dynamo guards on the function-mode stack,
    so a counting window would recompile the model on sampled steps. Not counted there."""
    if model is None:
        return False
    return any(type(m).__name__ == "OptimizedModule" or getattr(m, "_compiled_call_impl", None) is not None
               for m in model.modules())


class StepSyncs:
    """What ``watch()`` holds: opens a window when a sampled step begins, closes it when the
    step's optimizer step begins, and turns it into the step's signals.

    ``begin(step)`` at the end of the previous step; ``end()`` at the optimizer's pre hook
    (or at ``session.step()``; a second call is a no-op); ``signals(partial)`` for the record.
    On CUDA the runtime's own count goes to ``host_syncs_cuda`` (untested; it also sees
    torch's internal syncs such as GradScaler's, so the doctor keeps reading ``host_syncs``).
    """

    def __init__(self, model: Any = None, mean_gap: int = SAMPLE_MEAN_GAP) -> None:
        self.model = model
        self.sampler = SyncSampler(mean_gap)
        self.counter = SyncCounter()
        self.cuda = CudaSyncWatch() if CudaSyncWatch.available() else None
        self._count: int | None = None
        self._cuda_count: int | None = None

    @property
    def errors(self) -> int:
        """Disturbed windows (mode stack not as we left it); sampling stops after the first."""
        return self.counter.errors

    def begin(self, step: int) -> None:
        self._count = self._cuda_count = None
        if step not in SAMPLE_FIRST and step < self.sampler._next:
            return  # most steps (called on every one: the sampler's answer without a call)
        if (self.sampler.sampled(step) and not _compiled(self.model) and self.counter.start()
                and self.cuda is not None):
            self.cuda.start()

    def end(self) -> None:
        if self.counter._mode is not None:  # (not the property: called three times a step)
            self._count = self.counter.stop()
            if self.cuda is not None:
                self._cuda_count = self.cuda.stop()

    def signals(self, partial: bool = False) -> dict[str, Any]:
        """``host_syncs`` (None: not measured this step) and ``host_syncs_sampled``."""
        if self._count is None and self._cuda_count is None and self.counter._mode is None:
            return {"host_syncs": None, "host_syncs_sampled": False}  # not a sampled step
        self.end()
        count, cuda = self._count, self._cuda_count
        self._count = self._cuda_count = None
        if partial:  # a window cut short by exit is not a whole iteration of the loop
            count = cuda = None
        out: dict[str, Any] = {"host_syncs": count, "host_syncs_sampled": count is not None}
        if cuda is not None:
            out["host_syncs_cuda"] = cuda
        return out

    def close(self) -> None:
        self.end()
        self.counter.close()
