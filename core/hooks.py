"""HookSet: forward and gradient hooks on a chosen set of modules, held by their handles.

A :class:`HookSet` attaches one forward hook per selected module. The forward hook reduces
the module's output to a small stats vector on the output's device
(:func:`tensorscope.stats.activation_stats`) and, when the output takes part in autograd,
registers a *tensor* hook on it that reduces the gradient flowing out of the module to its
norm. Tensor hooks on outputs (rather than ``register_full_backward_hook``) keep working
when the next op modifies the output in place, and for modules that return tuples or dicts.

Nothing is read back to the host inside a hook: the stats tensors wait in ``pending`` until
the owner (``watch``) fetches the whole step with :func:`fetch` — one copy per device.

Every handle is kept and removed by :meth:`HookSet.detach`; errors inside tensorscope's
hooks are caught and counted in :attr:`HookSet.errors`, never raised into the user's code.
"""

from __future__ import annotations

import fnmatch
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from tensorscope.errors import UserError, one_line
from tensorscope.stats import (
    HEAD_LEN,
    HIST_BINS,
    SAMPLE_HEAD_LEN,
    HIST_SAMPLE,
    activation_stats,
    decode_activation,
    describe_output,
    first_float_tensor,
    grad_stats,
    sample_stats,
)

ROOT = "(model)"
"""The display name of the root module (its real path in named_modules is "")."""


hook_clock = time.perf_counter
"""The clock that hooks charge to tensorscope's overhead: wall seconds on the calling thread.

Not CPU time, on purpose. The thread-CPU clocks were measured on this project's Linux VMs:
``getrusage(RUSAGE_THREAD)`` only advances in 4 ms ticks (a hook of 50 µs reads 0 or 4000),
and ``clock_gettime(CLOCK_THREAD_CPUTIME_ID)`` (``time.thread_time``) costs 1-2 ms a call
right after tensor work. ``perf_counter`` is precise and costs ~50 ns; inside a hook the
training thread holds the GIL and runs tensorscope's own work, so wall time is that work,
plus any time the OS or another Python thread takes the processor away — which the
training loop loses too."""


def module_names(model: nn.Module) -> list[str]:
    """Paths of every module below the root, in named_modules order."""
    return [name for name, _ in model.named_modules() if name]


def select_modules(model: nn.Module, spec: Any) -> list[tuple[str, nn.Module]]:
    """The modules ``spec`` names, as (path, module) in model order.

    ``spec`` is "*" (every module below the root; the root itself for a model with no
    children), a path, a glob ("encoder.layers.*", "*.linear1"), a module class
    (``nn.Linear``), a comma-separated string, an iterable of any of these, or None / [] for
    none. A part that matches nothing is a :class:`UserError` naming what exists.
    """
    named = [(name, mod) for name, mod in model.named_modules()]
    if spec is None:
        return []
    parts: list[Any]
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
    elif isinstance(spec, type):
        parts = [spec]
    elif isinstance(spec, Iterable):
        parts = list(spec)
    else:
        raise UserError(f"modules= takes a name, a glob, a module class or a list of them, not {type(spec).__name__}")
    chosen: dict[str, nn.Module] = {}
    for part in parts:
        hits = _match(named, part)
        if not hits:
            raise UserError(_no_match_message(model, part))
        for name, mod in hits:
            chosen.setdefault(name, mod)
    order = {name: i for i, (name, _) in enumerate(named)}
    return sorted(chosen.items(), key=lambda item: order[item[0]])


def _match(named: list[tuple[str, nn.Module]], part: Any) -> list[tuple[str, nn.Module]]:
    if isinstance(part, type):
        if not issubclass(part, nn.Module):
            raise UserError(f"modules=: {part.__name__} is not an nn.Module class")
        return [(n, m) for n, m in named if isinstance(m, part)]
    if not isinstance(part, str):
        raise UserError(f"modules=: expected a name, glob or module class, got {type(part).__name__}")
    if part == "*":
        below = [(n, m) for n, m in named if n]
        return below or named[:1]
    if part in ("", ROOT):
        return named[:1]
    exact = [(n, m) for n, m in named if n == part]
    if exact:
        return exact
    return [(n, m) for n, m in named if n and fnmatch.fnmatchcase(n, part)]


def _no_match_message(model: nn.Module, part: Any) -> str:
    names = module_names(model)
    label = part.__name__ if isinstance(part, type) else repr(part)
    if not names:
        return f"no module matches {label}: {type(model).__name__} has no submodules (use '*' for the model itself)"
    shown = ", ".join(names[:12]) + (f", … ({len(names) - 12} more)" if len(names) > 12 else "")
    return f"no module matches {label}; the model's modules are: {shown}"


@dataclass
class _Pending:
    """What one module produced during the current step (device tensors, not yet fetched)."""

    calls: int = 0
    head: torch.Tensor | None = None
    """Whole-tensor sums and range of the last call's output (see activation_stats)."""
    part: torch.Tensor | None = None
    """The strided sample of that output, reduced for all modules at once at step end."""
    grads: list[torch.Tensor] = field(default_factory=list)
    """Gradient-norm tensors, one per call whose output received a gradient."""
    numel: int = 0
    shape: list[int] | None = None
    dtype: str | None = None
    note: str | None = None


class HookSet:
    """Forward hooks (and per-output gradient hooks) on the selected modules of a model.

    Usage::

        hooks = HookSet(model, "encoder.layers.*").attach()
        loss = model(x).sum(); loss.backward()
        step = hooks.take()                          # device tensors of this step
        stats = step.decode(fetch(step.tensors))     # one host sync -> {path: {...}}
        hooks.detach()

    ``recording = False`` unhooks the modules until it is set True again (the selection is
    kept): between detail steps a module call then costs nothing at all, not even a Python
    call that returns at once.
    """

    def __init__(self, model: nn.Module, modules: Any = "*", *, bins: int = HIST_BINS,
                 sample: int = HIST_SAMPLE, grads: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"expected an nn.Module, got {type(model).__name__}")
        self.model = model
        self.bins = bins
        self.sample = sample
        self.grads = grads
        self.wide_grads = False
        """Gradient norms in float64 (set by a watch whose GradScaler scale is large)."""
        self._recording = True
        self._attached = False
        self.errors = 0
        """tensorscope's own exceptions caught in hooks (never raised into the user's code)."""
        self.last_error: str | None = None
        self.overhead_s = 0.0
        """Seconds (hook_clock) spent inside these hooks since attach."""
        self._lock = threading.Lock()
        self._selected: dict[str, nn.Module] = dict(select_modules(model, modules))
        self._module_handles: dict[str, Any] = {}
        self._tensor_handles: list[Any] = []
        self._pending: dict[str, _Pending] = {}
        self._seen: dict[int, tuple[Any, int, torch.Tensor, torch.Tensor, list[str] | None]] = {}
        """Outputs already reduced this step, by id: (weakref, version, head, part, grad names)."""

    # -- selection ---------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Paths of the modules watched while attached (root shown as ``(model)``); between
        detail steps they are selected but not hooked (see ``recording``)."""
        return [n or ROOT for n in self._selected] if self._attached else []

    @property
    def hook_count(self) -> int:
        """Handles held right now: module hooks plus gradient hooks on live outputs."""
        return len(self._module_handles) + len(self._tensor_handles)

    @property
    def recording(self) -> bool:
        """Whether the selected modules are hooked right now (see the class docstring)."""
        return self._recording

    @recording.setter
    def recording(self, value: bool) -> None:
        value = bool(value)
        if value == self._recording:
            return
        self._recording = value
        if not self._attached:
            return
        if value:
            for name, module in list(self._selected.items()):
                if name not in self._module_handles:
                    self._hook(name, module)
        else:
            for handle in self._module_handles.values():
                handle.remove()
            self._module_handles.clear()

    def attach(self) -> "HookSet":
        self._attached = True
        if self._recording:
            for name, module in list(self._selected.items()):
                self._hook(name, module)
        return self

    def set_modules(self, spec: Any) -> None:
        """Hook exactly the modules ``spec`` selects (see select_modules), unhooking others."""
        wanted = dict(select_modules(self.model, spec))
        self._selected = wanted
        for name in list(self._module_handles):
            if name not in wanted:
                self._module_handles.pop(name).remove()
        if self._attached and self._recording:
            for name, module in wanted.items():
                if name not in self._module_handles:
                    self._hook(name, module)

    def add(self, names: Iterable[str]) -> None:
        """Hook these module paths too (already hooked ones are left as they are)."""
        by_name = dict(self.model.named_modules())
        for name in names:
            key = "" if name == ROOT else name
            if key not in by_name:
                raise UserError(_no_match_message(self.model, name))
            self._selected[key] = by_name[key]
            if self._attached and self._recording and key not in self._module_handles:
                self._hook(key, by_name[key])

    def remove(self, names: Iterable[str]) -> None:
        """Unhook these module paths (unknown or unhooked ones are ignored)."""
        for name in names:
            key = "" if name == ROOT else name
            self._selected.pop(key, None)
            handle = self._module_handles.pop(key, None)
            if handle is not None:
                handle.remove()

    def _hook(self, name: str, module: nn.Module) -> None:
        def forward_hook(mod: nn.Module, args: Any, output: Any, _name: str = name) -> None:
            self._on_forward(_name, output)

        self._module_handles[name] = module.register_forward_hook(forward_hook)

    def detach(self) -> None:
        """Remove every handle this set holds; safe to call twice."""
        self._attached = False
        for handle in self._module_handles.values():
            handle.remove()
        self._module_handles.clear()
        self._drop_tensor_hooks()
        with self._lock:
            self._pending.clear()
            self._seen = {}

    def _drop_tensor_hooks(self) -> None:
        handles, self._tensor_handles = self._tensor_handles, []
        for handle in handles:
            handle.remove()

    # -- hooks -------------------------------------------------------------------------
    def _on_forward(self, name: str, output: Any) -> None:
        if not self._recording or not torch.is_grad_enabled():
            # Evaluation forwards (no_grad) are not part of a training step's statistics.
            return
        start = hook_clock()
        try:
            tensor = first_float_tensor(output)
            with self._lock:
                slot = self._pending.setdefault(name, _Pending())
                slot.calls += 1
                if tensor is None:
                    slot.note = describe_output(output)
                    return
                slot.shape = list(tensor.shape)
                slot.numel = tensor.numel()
                slot.dtype = str(tensor.dtype).replace("torch.", "")
                # A container often returns its last child's output unchanged (a
                # TransformerEncoderLayer returns norm2's tensor): same object, same version
                # means same values, so reuse the stats and share the gradient hook.
                seen = self._seen.get(id(tensor))
                if seen is not None and seen[0]() is tensor and seen[1] == tensor._version:
                    slot.head, slot.part = seen[2], seen[3]
                    if seen[4] is not None:
                        seen[4].append(name)
                    return
                slot.head, slot.part = activation_stats(tensor, self.sample)
                names = [name] if self.grads and tensor.requires_grad else None
                self._seen[id(tensor)] = (weakref.ref(tensor), tensor._version, slot.head, slot.part, names)
            if names is not None:
                handle = tensor.register_hook(lambda g, _names=names: self._on_grad(_names, g))
                self._tensor_handles.append(handle)
        except Exception as exc:  # tensorscope's own failure: count it, never raise it
            self._count_error(exc)
        finally:
            self.overhead_s += hook_clock() - start

    def _on_grad(self, names: list[str], grad: torch.Tensor | None) -> None:
        start = hook_clock()
        try:
            if grad is not None:
                norm = grad_stats(grad, self.wide_grads)
                with self._lock:
                    for name in names:
                        self._pending.setdefault(name, _Pending()).grads.append(norm)
        except Exception as exc:
            self._count_error(exc)
        finally:
            self.overhead_s += hook_clock() - start
        return None  # never change the gradient

    def _count_error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = one_line(exc)

    # -- per step ----------------------------------------------------------------------
    def take(self) -> "StepStats":
        """This step's pending stats (device tensors), clearing them and the output hooks."""
        if not self._pending and not self._tensor_handles:
            # Most steps under a budget record nothing: no lock to take. (Stats that land
            # between this check and the next step are taken by the next call.)
            return _NO_STATS
        with self._lock:
            pending, self._pending = self._pending, {}
            if pending:
                self._seen = {}
        if self._tensor_handles:
            self._drop_tensor_hooks()
        return StepStats(pending, self.bins, self.sample) if pending else _NO_STATS


class StepStats:
    """One step's module statistics, still on their devices, reduced in a few batched ops.

    :attr:`tensors` lists what to fetch (three tensors per device: heads, sample counts
    and histograms, gradient norms); :meth:`decode` turns the fetched values into dicts.
    """

    def __init__(self, pending: dict[str, _Pending], bins: int, sample: int) -> None:
        self.pending = pending
        self.bins = bins
        self.sample = sample
        self.tensors: list[torch.Tensor] = []
        self._layout: list[tuple[list[str], list[str]]] = []
        by_device: dict[torch.device, tuple[list[str], list[str]]] = {}
        for name, slot in pending.items():
            if slot.head is not None:
                by_device.setdefault(slot.head.device, ([], []))[0].append(name)
            for g in slot.grads:
                by_device.setdefault(g.device, ([], []))[1].append(name)
        with torch.no_grad():
            for device, (act_names, grad_names) in by_device.items():
                heads = [pending[n].head for n in act_names]
                parts = [pending[n].part for n in act_names]
                grads = [g for n in dict.fromkeys(grad_names) for g in pending[n].grads
                         if g.device == device]
                empty = torch.zeros(0, device=device)
                self.tensors.append(torch.stack(heads) if heads else empty)
                self.tensors.append(sample_stats(parts, bins) if parts else empty)
                self.tensors.append(torch.cat(grads) if grads else empty)
                self._layout.append((act_names, [n for n in dict.fromkeys(grad_names)
                                                 for g in pending[n].grads if g.device == device]))

    def decode(self, values: list[list[float]]) -> dict[str, dict[str, Any]]:
        """Per-module stats dicts from the fetched ``values`` of :attr:`tensors`."""
        width_head, width_sample = HEAD_LEN, SAMPLE_HEAD_LEN + self.bins
        acts: dict[str, list[float]] = {}
        squares: dict[str, list[float]] = {}
        for d, (act_names, grad_names) in enumerate(self._layout):
            heads, samples, grads = values[3 * d], values[3 * d + 1], values[3 * d + 2]
            for i, name in enumerate(act_names):
                acts[name] = (heads[i * width_head:(i + 1) * width_head]
                              + samples[i * width_sample:(i + 1) * width_sample])
            for name, v in zip(grad_names, grads):
                squares.setdefault(name, []).append(v)
        result: dict[str, dict[str, Any]] = {}
        for name, slot in self.pending.items():
            entry: dict[str, Any] = {"calls": slot.calls, "shape": slot.shape, "dtype": slot.dtype}
            if name in acts:
                entry.update(decode_activation(acts[name], slot.numel, self.sample))
            if slot.note:
                entry["note"] = slot.note
            sq = squares.get(name)
            # A module called twice gets two gradients; their squared norms add up.
            entry["grad_norm"] = (sum(sq) ** 0.5) if sq else None
            result[name or ROOT] = entry
        return result


_NO_STATS = StepStats({}, HIST_BINS, HIST_SAMPLE)
"""What take() returns for a step without module statistics (most steps under a budget)."""


def fetch(tensors: list[torch.Tensor]) -> list[list[float]]:
    """Every tensor's values as Python floats, with one device-to-host copy per device.

    This is the one host sync of a step: tensors are flattened, cast to float64 on their
    device, concatenated per device, copied once, and split again.
    """
    if not tensors:
        return []
    first = tensors[0]
    device, dtype = first.device, first.dtype
    uniform = dtype in (torch.float32, torch.float64)
    if uniform:
        for t in tensors:  # a loop, not all(<generator>): one Python call less, run cold each step
            if t.dim() != 0 or t.dtype != dtype or t.device != device:
                uniform = False
                break
    if uniform:
        # The common plain step: loss and per-parameter norms, all 0-dim on one device.
        if device.type == "cpu" and len(tensors) <= 16:
            # No copy to make: item() each. Measured inside a training step, right after the
            # optimizer's kernels: 7 values in ~10 µs this way, ~48 µs by stack + tolist.
            # (Per value it costs more: for many values, one stack wins.)
            return [[t.item()] for t in tensors]
        stacked = torch.stack(tensors)
        return [[v] for v in (stacked if device.type == "cpu" else stacked.cpu()).tolist()]
    groups: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.device, []).append(i)
    out: list[list[float]] = [[] for _ in tensors]
    for device, idxs in groups.items():
        parts = [tensors[i].detach().reshape(-1) for i in idxs]
        # torch.cat promotes mixed dtypes to the widest (float64 when any part is); counts
        # stay exact in float32 (histogram counts are at most HIST_SAMPLE), and tolist()
        # gives Python floats either way. Half-precision parts are widened first.
        flat = torch.cat(parts) if len(parts) > 1 else parts[0]
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.to(torch.float64)
        if flat.device.type != "cpu":
            flat = flat.cpu()
        flat = flat.tolist()
        pos = 0
        for i, part in zip(idxs, parts):
            n = part.numel()
            out[i] = flat[pos:pos + n]
            pos += n
    return out


class PendingFetch:
    """Scalars on their way to the host: :func:`fetch_later`'s answer. ``values()`` waits
    for them (on whichever thread asks; only that thread waits) and reads them once."""

    __slots__ = ("_host", "_event", "_values")

    def __init__(self, host: torch.Tensor, event: Any) -> None:
        self._host = host
        self._event = event
        self._values: list[float] | None = None

    def values(self) -> list[float]:
        if self._values is None:
            if self._event is not None:
                self._event.synchronize()  # this copy only, not the device's whole queue
            self._values = self._host.tolist()
            self._host = self._event = None  # the page-locked buffer goes back to its cache
        return self._values


def fetch_later(scalars: list[torch.Tensor]) -> PendingFetch:
    """One-element tensors on one CUDA device, read without a host sync.

    :func:`fetch` copies a step's numbers to the host and so waits for every kernel queued
    before them: on a GPU the training thread then stops running ahead of the device each
    step (what the doctor's item-sync-in-loop warns about). Here they are gathered into one
    vector on the device, copied into page-locked host memory behind the queued
    work (``non_blocking``), and a CUDA event marks when the copy is done. Whoever builds
    the record later calls ``values()``. CPU tensors are read at once (no queue to wait on).
    """
    parts = []
    for t in scalars:  # a loop: every call here is one more on the training thread
        parts.append(t.detach() if t.dim() == 0 else t.detach().reshape(()))
    # stack promotes mixed dtypes (float64 for a mean of several losses); float32 values
    # read back exactly with tolist(), so no cast: one kernel launch less each step.
    flat = torch.stack(parts)
    if not flat.is_cuda:
        return PendingFetch(flat, None)  # (stack made a copy: later in-place edits can't reach it)
    host = flat.to("cpu", non_blocking=True)  # page-locked: PyTorch pins a non_blocking D2H copy
    event = torch.cuda.Event()
    event.record()  # on the current stream, where the copy was queued
    return PendingFetch(host, event)


__all__ = ["HookSet", "select_modules", "module_names", "fetch", "fetch_later", "PendingFetch",
           "hook_clock", "ROOT"]
