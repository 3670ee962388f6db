"""A model's anatomy as plain rows: modules, parameters, buffers, and gradient depth profile.

What the Model screen shows, computed without any UI so tests and scripts can use it::

    >>> rows = module_rows(model); totals(model)["params"]        # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

VANISH_DECADES = 3.0
"""Gradient norms shrinking by more than this many powers of ten from the last layer to the
first are flagged as vanishing (growing by as much: exploding)."""


@dataclass(frozen=True)
class ModuleRow:
    path: str
    """named_modules path; "" for the root."""
    type: str
    depth: int
    params: int
    """Elements of all parameters in this module and below."""
    trainable: int
    own_params: int
    """Elements of the parameters registered on this module itself."""
    children: int


def _dotted_depth(path: str) -> int:
    return 0 if not path else path.count(".") + 1


def module_rows(model: nn.Module) -> list[ModuleRow]:
    """One row per module in named_modules order (parents before children)."""
    rows = []
    for path, mod in model.named_modules():
        params = list(mod.parameters())
        rows.append(ModuleRow(
            path=path,
            type=type(mod).__name__,
            depth=_dotted_depth(path),
            params=sum(p.numel() for p in params),
            trainable=sum(p.numel() for p in params if p.requires_grad),
            own_params=sum(p.numel() for p in mod.parameters(recurse=False)),
            children=len(list(mod.children())),
        ))
    return rows


def param_rows(model: nn.Module, prefix: str = "") -> list[dict[str, Any]]:
    """Parameters under module ``prefix`` ("" for all): shape, dtype, device, grad state."""
    mod = model.get_submodule(prefix) if prefix else model
    rows = []
    for name, p in mod.named_parameters():
        rows.append({
            "name": f"{prefix}.{name}" if prefix else name,
            "shape": tuple(p.shape),
            "numel": p.numel(),
            "dtype": str(p.dtype).replace("torch.", ""),
            "device": str(p.device),
            "requires_grad": p.requires_grad,
            "has_grad": p.grad is not None,
        })
    return rows


def buffer_rows(model: nn.Module, prefix: str = "") -> list[dict[str, Any]]:
    """Buffers under module ``prefix``: shape, dtype, device, and whether state_dict saves them."""
    mod = model.get_submodule(prefix) if prefix else model
    rows = []
    for name, b in mod.named_buffers():
        owner_path, _, leaf = name.rpartition(".")
        owner = mod.get_submodule(owner_path) if owner_path else mod
        rows.append({
            "name": f"{prefix}.{name}" if prefix else name,
            "shape": tuple(b.shape),
            "numel": b.numel(),
            "dtype": str(b.dtype).replace("torch.", ""),
            "device": str(b.device),
            "persistent": leaf not in owner._non_persistent_buffers_set,
        })
    return rows


def totals(model: nn.Module) -> dict[str, int]:
    """Counts for the whole model: modules, parameters (elements), trainable, buffers, bytes."""
    params = list(model.parameters())
    buffers = list(model.buffers())
    return {
        "modules": sum(1 for _ in model.modules()),
        "params": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "param_tensors": len(params),
        "buffers": sum(b.numel() for b in buffers),
        "buffer_tensors": len(buffers),
        "bytes": sum(p.numel() * p.element_size() for p in params)
        + sum(b.numel() * b.element_size() for b in buffers),
    }


@dataclass(frozen=True)
class DepthProfile:
    """Gradient norm flowing out of each parameterised leaf module, input side first."""

    rows: list[tuple[str, float]]
    decades: float | None
    """log10(first / last): negative when gradients shrink toward the input."""
    flag: str | None
    """"vanishing", "exploding" or None."""


def depth_profile(model: nn.Module, modules: dict[str, dict[str, Any]]) -> DepthProfile:
    """Flags vanishing/exploding gradients from per-module stats of one step.

    Uses leaf modules that own parameters, in model order (a stand-in for depth), and the
    ``grad_norm`` each one's output received. The ratio between the first and the last such
    module, in powers of ten, decides the flag (see :data:`VANISH_DECADES`).
    """
    rows: list[tuple[str, float]] = []
    for path, mod in model.named_modules():
        if not path or any(True for _ in mod.children()):
            continue
        if not any(True for _ in mod.parameters(recurse=False)):
            continue
        stats = modules.get(path)
        g = stats.get("grad_norm") if stats else None
        if g is not None and math.isfinite(g):
            rows.append((path, g))
    if len(rows) < 2 or rows[-1][1] <= 0 or rows[0][1] <= 0:
        return DepthProfile(rows, None, None)
    decades = math.log10(rows[0][1] / rows[-1][1])
    flag = "vanishing" if decades < -VANISH_DECADES else "exploding" if decades > VANISH_DECADES else None
    return DepthProfile(rows, decades, flag)
