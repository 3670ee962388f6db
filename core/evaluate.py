"""Evaluate the user's Python expressions and statements with torch in scope.

Used by ``tensorscope layout EXPR``, ``tensorscope graph TARGET`` and the Storage
console. Every failure becomes a one-line :class:`~tensorscope.errors.UserError`:
syntax errors, unknown names, runtime errors, and allocations the machine cannot hold.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from tensorscope.errors import UserError, one_line, syntax_error


def base_namespace() -> dict[str, Any]:
    """A fresh namespace with ``torch``, ``nn`` and ``F`` (and ``math``) in scope."""
    import math

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    return {"torch": torch, "nn": nn, "F": F, "math": math, "__name__": "__tensorscope__"}


def _describe_failure(exc: BaseException, what: str) -> str:
    if isinstance(exc, SyntaxError):
        where = f" (column {exc.offset})" if exc.offset else ""
        return f"syntax error in {what}: {exc.msg}{where}"
    if isinstance(exc, NameError):
        return f"unknown name in {what}: {exc}"
    if isinstance(exc, MemoryError) or _is_allocation_failure(exc):
        return f"{what} asks for more memory than this machine can give: {one_line(exc)}"
    return f"{what} failed: {one_line(exc)}"


def _is_allocation_failure(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text
        or "not enough memory" in text
        or "out of memory" in text.lower()
        or "Trying to create tensor with negative dimension" in text
    )


def evaluate(expr: str, namespace: dict[str, Any] | None = None) -> Any:
    """Evaluate one expression. Raises UserError with one line on any failure."""
    if not expr or not expr.strip():
        raise UserError("empty expression: give a Python expression such as 'torch.arange(12.).reshape(3, 4)'")
    ns = base_namespace() if namespace is None else namespace
    try:
        code = compile(expr.strip(), "<expression>", "eval")
    except SyntaxError as exc:
        raise UserError(_describe_failure(exc, "the expression")) from None
    try:
        return eval(code, ns)  # noqa: S307 - evaluating the user's own expression is the feature
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the user's code may raise anything, SystemExit included
        raise UserError(_describe_failure(exc, "the expression")) from None


def execute(source: str, namespace: dict[str, Any]) -> Any:
    """Run statements in ``namespace``; return the value of a trailing expression, if any.

    Like a REPL line: ``x = torch.ones(3)`` returns None, ``x.T`` returns the tensor.
    """
    try:
        tree = ast.parse(source, "<console>", "exec")
    except SyntaxError as exc:
        raise UserError(_describe_failure(exc, "the statement")) from None
    last_expr = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last_expr = ast.Expression(tree.body.pop().value)
    try:
        if tree.body:
            exec(compile(tree, "<console>", "exec"), namespace)  # noqa: S102
        if last_expr is not None:
            return eval(compile(last_expr, "<console>", "eval"), namespace)  # noqa: S307
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise UserError(_describe_failure(exc, "the statement")) from None
    return None


def load_function(spec: str) -> Callable[..., Any]:
    """Load ``path/to/file.py:function`` and return the function (not called)."""
    path_text, _, func_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise UserError(f"no such file: {path_text}")
    if not func_name.isidentifier():
        raise UserError(f"'{func_name}' is not a function name (expected FILE.py:FUNCTION)")
    module_name = f"_tensorscope_target_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UserError(f"cannot import {path_text}: not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise syntax_error(path_text, exc) from None
    except BaseException as exc:
        raise UserError(f"importing {path_text} failed: {one_line(exc)}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UserError(f"{path_text} has no function named '{func_name}'")
    return func


def looks_like_file_target(target: str) -> bool:
    """True for ``something.py:name`` targets (as opposed to Python expressions)."""
    head, sep, tail = target.rpartition(":")
    return bool(sep) and head.endswith(".py") and tail.isidentifier()
