"""Where a graph comes from: an expression, ``file.py:function``, or ``demo:NAME``.

Used by ``tensorscope graph TARGET`` and by the Graph screen's input line. The target runs
under a :class:`~tensorscope.autograd.ModuleRecorder`, so nodes created inside any
``nn.Module`` forward are attributed to it.

A target may give back:
- a tensor;
- a ``(tensor, model)`` pair (the model names parameters: ``fc1.weight``);
- a dict of named tensors (``{"loss": loss, "aux": aux}``), or a ``(dict, model)`` pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tensorscope.autograd import AutogradGraph, ModuleRecorder, ModuleTrace, extract
from tensorscope.errors import UserError


@dataclass
class GraphSource:
    """Roots by name, plus what helps to name and attribute their nodes."""

    roots: dict[str, Any]
    model: Any = None
    trace: ModuleTrace | None = None
    names: dict[str, Any] | None = None
    """Variables by name (leaves found among them are named after them)."""
    title: str = ""

    def graph(self, cancel: Any = None) -> AutogradGraph:
        return extract(self.roots, model=self.model, names=self.names, trace=self.trace,
                       cancel=cancel)


def _is_module(obj: Any) -> bool:
    import torch.nn as nn

    return isinstance(obj, nn.Module)


def interpret(value: Any, what: str, default_name: str = "output") -> tuple[dict[str, Any], Any]:
    """(roots, model) from what a target returned; UserError for anything else."""
    import torch

    model = None
    if isinstance(value, tuple) and len(value) == 2 and _is_module(value[1]):
        value, model = value
    if isinstance(value, torch.Tensor):
        return {default_name: value}, model
    if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
        return {str(k): v for k, v in value.items()}, model
    if isinstance(value, dict):
        bad = next((k for k, v in value.items() if not isinstance(v, torch.Tensor)), None)
        if bad is None:
            raise UserError(f"{what} gave an empty dict: nothing to draw")
        raise UserError(f"{what} gave a dict whose '{bad}' is not a tensor")
    kind = "None" if value is None else f"value of type {type(value).__name__}"
    raise UserError(f"{what} gave {kind}, not a tensor (return a tensor, a (tensor, model) "
                    "pair, or a dict of named tensors)")


def load_target(target: str, namespace: dict[str, Any] | None = None) -> GraphSource:
    """Run ``target`` under a module recorder and return what it produced."""
    from tensorscope.evaluate import base_namespace, evaluate, load_function, looks_like_file_target

    target = (target or "").strip()
    if not target:
        raise UserError("no target: give an expression, FILE.py:FUNCTION or demo:NAME")
    if target.startswith("demo:"):
        name = target[len("demo:"):]
        try:
            from tensorscope.demos import get
        except ImportError:
            raise UserError("demos are not available in this build") from None
        scenario = get(name)
        with ModuleRecorder() as rec:
            value = scenario.graph_roots()
        if value is None:
            raise UserError(f"demo '{name}' has no autograd graph to show")
        roots, model = interpret(value, f"demo '{name}'")
        return GraphSource(roots, model, rec.trace, dict(roots), title=target)
    if looks_like_file_target(target):
        func = load_function(target)
        with ModuleRecorder() as rec:
            try:
                value = func()
            except UserError:
                raise
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                from tensorscope.errors import one_line

                raise UserError(f"{target} failed: {one_line(exc)}") from None
        roots, model = interpret(value, target, default_name=target.rpartition(":")[2])
        return GraphSource(roots, model, rec.trace, dict(roots), title=target)
    ns = namespace if namespace is not None else base_namespace()
    with ModuleRecorder() as rec:
        if _is_expression(target):
            value = evaluate(target, ns)
        else:  # statements, like a console line: the trailing expression is the target
            from tensorscope.evaluate import execute

            value = execute(target, ns)
    name = target if target.isidentifier() else "output"
    roots, model = interpret(value, "the expression", default_name=name)
    if list(roots) == [name] and name == "output":
        # `...; (loss, net)`: call the root by the variable that holds it, if one does.
        holder = next((k for k, v in ns.items() if v is roots[name] and not k.startswith("_")), None)
        if holder:
            roots = {holder: roots[name]}
    names = {k: v for k, v in ns.items() if not k.startswith("_")}
    names.update(roots)
    return GraphSource(roots, model, rec.trace, names, title=target)


def _is_expression(text: str) -> bool:
    try:
        compile(text, "<target>", "eval")
    except SyntaxError:
        try:
            compile(text, "<target>", "exec")
        except SyntaxError:
            return True  # let evaluate() report the syntax error as an expression
        return False
    return True
