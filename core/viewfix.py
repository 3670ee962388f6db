"""Explain a failed ``.view()`` in a console statement: torch's error, and the two fixes.

When a statement such as ``t.view(12)`` fails, :func:`explain_view` finds the ``view``
call, re-evaluates its receiver (only when that expression is made of names, indexing and
view-making methods, so no user code with side effects runs twice), asks torch why the
view fails, then applies ``reshape()`` and ``.contiguous()`` and reports whether each fix
copied (a new data pointer) or not.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import torch

from tensorscope.storage import check_supported, reshape_copies, view_failure
from tensorscope.view_rule import resolve_shape, view_blocker

# Methods that make views (or at worst a copy) and change nothing: safe to evaluate again.
_SAFE_METHODS = {
    "t", "transpose", "permute", "narrow", "select", "expand", "expand_as", "unsqueeze",
    "squeeze", "diagonal", "unfold", "view", "view_as", "as_strided", "movedim", "swapaxes",
    "swapdims", "flatten", "contiguous", "reshape", "chunk", "split", "unbind", "real", "imag",
    "detach", "float", "double", "half", "int", "long", "to",
}
COPY_LIMIT = 10_000_000
"""Fixes are applied for real (to measure the data pointer) up to this many elements."""


@dataclass(frozen=True)
class ViewFix:
    """A failed ``receiver.view(shape)`` and what each fix does."""

    receiver: str
    shape: tuple[int, ...]
    error: str
    reshape_copied: bool
    contiguous_copied: bool
    measured: bool
    """True when the fixes were applied and their data pointers compared; False when
    decided from the layout alone (tensors over COPY_LIMIT elements)."""
    why: str | None = None
    """torch's error in the tensor's own sizes and strides (core/view_rule.py)."""

    @property
    def call(self) -> str:
        """The refused call as written: ``t.view(12)``."""
        return f"{self.receiver}.view({', '.join(str(s) for s in self.shape)})"

    def lines(self) -> list[str]:
        return [f"{self.call} fails: {self.error}",
                *([f"why: {self.why}"] if self.why else []), *self.fix_lines()]

    def fix_lines(self) -> list[str]:
        """The two fixes, each saying whether it copied."""
        shape = ", ".join(str(s) for s in self.shape)
        how = "new data pointer" if self.measured else "decided from the strides"
        return [
            f"fix 1: {self.receiver}.reshape({shape}) "
            + (f"copies ({how})" if self.reshape_copied else "returns a view (same data pointer)"),
            f"fix 2: {self.receiver}.contiguous().view({shape}) "
            + (f"copies first ({how})" if self.contiguous_copied
               else "needs no copy (same data pointer)"),
        ]


def _is_safe(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, (ast.NamedExpr, ast.Lambda, ast.Await, ast.Yield, ast.YieldFrom)):
            return False
        if isinstance(sub, ast.Call):
            if not (isinstance(sub.func, ast.Attribute) and sub.func.attr in _SAFE_METHODS):
                return False
    return True


def _eval(node: ast.expr, namespace: dict[str, Any]) -> Any:
    return eval(compile(ast.Expression(node), "<view>", "eval"), namespace)  # noqa: S307


def explain_view(source: str, namespace: dict[str, Any]) -> ViewFix | None:
    """The first ``.view(shape)`` in ``source`` that torch refuses, explained; else None."""
    try:
        tree = ast.parse(source, "<console>", "exec")
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "view" and node.args and not node.keywords):
            continue
        receiver, args = node.func.value, node.args
        if not (_is_safe(receiver) and all(_is_safe(a) for a in args)):
            continue
        try:
            tensor = _eval(receiver, namespace)
            values = [_eval(a, namespace) for a in args]
        except Exception:  # the receiver itself fails: the statement's own error says why
            continue
        if not isinstance(tensor, torch.Tensor):
            continue
        if len(values) == 1 and isinstance(values[0], (tuple, list, torch.Size)):
            values = list(values[0])
        if not all(isinstance(v, int) for v in values):
            continue  # view(dtype) and friends: not a shape
        shape = tuple(values)
        try:
            check_supported(tensor)
            error = view_failure(tensor, shape)
        except Exception:
            continue
        if error is None:
            continue
        try:
            would_copy = reshape_copies(tensor, shape)
        except Exception:
            continue  # the shape itself is impossible: no layout fix helps, torch's error says so
        return _fixes(ast.unparse(receiver), tensor, shape, error, would_copy)
    return None


def _fixes(receiver: str, tensor: torch.Tensor, shape: tuple[int, ...], error: str,
           would_copy: bool) -> ViewFix:
    why = view_blocker(tuple(tensor.shape), tensor.stride(), resolve_shape(shape, tensor.numel()))
    if tensor.numel() > COPY_LIMIT or tensor.device.type == "meta":
        return ViewFix(receiver, shape, error, would_copy, not tensor.is_contiguous(),
                       measured=False, why=why)
    before = tensor.untyped_storage().data_ptr()
    try:
        reshaped = tensor.reshape(shape)
        reshape_copied = reshaped.untyped_storage().data_ptr() != before
    except RuntimeError:
        return ViewFix(receiver, shape, error, would_copy, not tensor.is_contiguous(),
                       measured=False, why=why)
    contiguous_copied = tensor.contiguous().untyped_storage().data_ptr() != before
    return ViewFix(receiver, shape, error, reshape_copied, contiguous_copied, measured=True,
                   why=why)
