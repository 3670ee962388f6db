"""A small measuring harness the demos run their training loops under.

It produces :class:`tensorscope.telemetry.StepRecord` objects with the doctor's signals,
measured with PyTorch's own registration APIs only — optimizer step hooks, tensor hooks on
parameters, module forward hooks, and a ``TorchFunctionMode`` that counts host syncs — and
removes all of them on exit. Demos are small and run on CPU, so it favours plain, exact
measurement over speed (it reads a few values per step; the production path is
``tensorscope.watch``).

A step ends at the optimizer's step; with ``manual=True`` (AMP, where a skipped step never
calls the optimizer) the loop calls :meth:`Probe.step` itself.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from tensorscope.telemetry import StepRecord, amp_state

_SYNC_FUNCS = {"item", "__float__", "__int__", "__bool__", "cpu", "tolist", "numpy", "__format__"}
"""Tensor methods that copy a value to the host; on CUDA each one waits for the device."""


class _SyncCounter(TorchFunctionMode):
    """Counts host-copying tensor calls made while it is active (not torch's internals)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.paused = 0
        """Non-zero while the probe reads values itself (its reads are not the loop's)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not self.paused and getattr(func, "__name__", "") in _SYNC_FUNCS:
            self.count += 1
        return func(*args, **(kwargs or {}))


class Probe:
    """Watches one model/optimizer pair; ``records`` holds one StepRecord per step."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 scaler: Any = None, manual: bool = False, count_syncs: bool = False) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.manual = manual or optimizer is None or scaler is not None
        self.records: list[StepRecord] = []
        self._steps = 0
        """Training steps so far: records count them from 1, as ``tensorscope run`` does
        (an evaluation record carries the number of the last step before it)."""
        self._handles: list[Any] = []
        self._names = {id(p): n for n, p in model.named_parameters()}
        self._trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._syncs = _SyncCounter() if count_syncs else None
        self._reset_step_state()
        self._stepped = False
        self._eval_forwards = 0
        self._train_mode_no_grad = 0
        self._dead: dict[str, list[float]] = {}
        self._loss: float | None = None
        self._before: dict[str, torch.Tensor] = {}
        self._t0 = time.perf_counter()

    # -- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> "Probe":
        for name, p in self._trainable:
            self._handles.append(p.register_hook(self._param_hook(name, p)))
        self._handles.append(self.model.register_forward_hook(self._root_forward))
        for path, mod in self.model.named_modules():
            if isinstance(mod, (nn.Dropout, nn.modules.batchnorm._BatchNorm)):
                self._handles.append(mod.register_forward_hook(self._mode_forward))
            if isinstance(mod, nn.ReLU):
                self._handles.append(mod.register_forward_hook(self._relu_forward(path)))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._pre_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._post_step))
        self._snapshot()
        if self._syncs is not None:
            self._syncs.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._syncs is not None:
            self._syncs.__exit__(*exc)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- what the loop tells us -----------------------------------------------------
    def log_loss(self, loss: torch.Tensor) -> None:
        """The step's loss (read once, at the step's end — one fetch per step)."""
        self._loss_tensor = loss.detach()

    def step(self) -> StepRecord:
        """End a step explicitly (manual mode: AMP, or no optimizer)."""
        if self.optimizer is not None and not self._stepped and self.scaler is None:
            self._measure_grads()
        return self._finish(skipped=not self._stepped if self.scaler is not None else None)

    @contextmanager
    def _own(self):
        """The probe's own reads: not counted as the loop's host syncs."""
        if self._syncs is not None:
            self._syncs.paused += 1
        try:
            yield
        finally:
            if self._syncs is not None:
                self._syncs.paused -= 1

    # -- hooks ----------------------------------------------------------------------
    def _reset_step_state(self) -> None:
        self._backwards: dict[str, int] = {}
        self._carried: list[str] = []
        self._loss_tensor: torch.Tensor | None = None
        self._grad_norm: float | None = None
        self._param_grad: dict[str, float] = {}

    def _param_hook(self, name: str, p: torch.Tensor):
        def hook(grad: torch.Tensor) -> None:
            count = self._backwards.get(name, 0)
            # First backward into this param since the last step: whatever .grad holds
            # now was left over from before the step.
            with self._own():
                if count == 0 and self.records and p.grad is not None and bool(p.grad.ne(0).any()):
                    self._carried.append(name)
            self._backwards[name] = count + 1
        return hook

    def _root_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not module.training and isinstance(out, torch.Tensor) and out.requires_grad:
            self._eval_forwards += 1

    def _mode_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        if module.training and not torch.is_grad_enabled():
            self._train_mode_no_grad += 1

    def _relu_forward(self, path: str):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if module.training and torch.is_grad_enabled() and output.dim() >= 2:
                with self._own():
                    fired = output.detach().reshape(-1, output.shape[-1]).gt(0).any(dim=0)
                    self._dead[path] = [float(1.0 - fired.float().mean())]
        return hook

    def _measure_grads(self) -> None:
        with self._own():
            self._measure_grads_now()

    def _measure_grads_now(self) -> None:
        norms = {}
        for name, p in self._trainable:
            if p.grad is not None:
                norms[name] = float(p.grad.detach().float().norm())
        self._param_grad = norms
        self._grad_norm = (sum(v * v for v in norms.values()) ** 0.5) if norms else None

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._measure_grads()
        # The optimizer's own bookkeeping (Adam reads its step counter with .item()) is
        # torch's business, not a sync the user's loop makes: pause counting inside step().
        if self._syncs is not None:
            self._syncs.paused += 1

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._syncs is not None:
            self._syncs.paused -= 1
        self._stepped = True
        if not self.manual:
            self._finish(skipped=None)

    def _snapshot(self) -> None:
        self._before = {n: p.detach().clone() for n, p in self._trainable}

    def _finish(self, skipped: bool | None) -> StepRecord:
        syncs = self._syncs.count if self._syncs is not None else None
        with self._own():
            return self._finish_now(skipped, syncs)

    def _finish_now(self, skipped: bool | None, syncs: int | None) -> StepRecord:
        if self._grad_norm is None and skipped is not None:
            self._measure_grads()
        in_opt: set[int] = set()
        if self.optimizer is not None:
            in_opt = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        params: dict[str, dict[str, Any]] = {}
        unchanged: list[str] = []
        for name, p in self._trainable:
            before = self._before.get(name)
            delta = float((p.detach() - before).norm()) if before is not None else None
            weight = float(p.detach().float().norm())
            if delta == 0.0:
                unchanged.append(name)
            params[name] = {"grad_norm": self._param_grad.get(name), "weight_norm": weight,
                            "update_ratio": (delta / weight) if delta is not None and weight else None}
        loss = float(self._loss_tensor) if self._loss_tensor is not None else None
        amp = None
        if self.scaler is not None:
            amp = amp_state(self.scaler)
            if amp is not None:
                amp["skipped"] = bool(skipped)
        now = time.perf_counter()
        self._steps += 1
        record = StepRecord(
            step=self._steps, loss=loss, wall_time=time.time(),
            lr=[float(g["lr"]) for g in self.optimizer.param_groups] if self.optimizer else [],
            grad_norm=self._grad_norm, step_time_s=now - self._t0, amp=amp, params=params,
            modules={path: {"type": "ReLU", "dead_fraction": v[0]} for path, v in self._dead.items()},
            signals={
                "grad_carried_over": list(self._carried),
                "backward_passes": max(self._backwards.values(), default=0),
                "eval_forward_with_graph": self._eval_forwards,
                "train_mode_forward_no_grad": self._train_mode_no_grad,
                "host_syncs": syncs,
                "params_not_in_optimizer": [n for n, p in self._trainable if id(p) not in in_opt]
                if self.optimizer is not None else [],
                "params_unchanged": unchanged,
                "device_mismatch": [],
                "hook_errors": 0,
            },
        )
        self.records.append(record)
        self._t0 = now
        self._eval_forwards = 0
        self._train_mode_no_grad = 0
        self._stepped = False
        if self._syncs is not None:
            self._syncs.count = 0
        self._reset_step_state()
        self._snapshot()
        return record

    def eval_record(self, loss: float | None = None) -> StepRecord:
        """Close an evaluation pass as its own record (phase "eval")."""
        record = StepRecord(step=self._steps, loss=loss, phase="eval", signals={
            "eval_forward_with_graph": self._eval_forwards,
            "train_mode_forward_no_grad": self._train_mode_no_grad,
        })
        self.records.append(record)
        self._eval_forwards = 0
        self._train_mode_no_grad = 0
        return record
