"""The autograd graph as plain data: an iterative walk of ``grad_fn.next_functions``.

:func:`extract` turns one or more root tensors into an :class:`AutogradGraph` of
:class:`GraphNode` objects with sequential ids, assigned breadth-first from the roots in
the order given, so the same program always yields the same ids (never ``id()``). Edges
point the way data flowed in the forward pass: from an input node to the node that
consumed it, with the input ``slot`` it feeds.

Per node the graph knows its saved tensors (read lazily: ``node_saved(node)``), the version
each was saved at against its version now, whether backward has freed them, tensor hooks
on leaves and roots, leaf names (parameters by model path, the caller's variables by name)
and the module that produced it. Module attribution comes from a :class:`ModuleRecorder`
active while the forward ran (PyTorch's global module hooks, removed on exit); with only a
model at hand, nodes that consume a module's parameters are attributed to it.

    >>> with ModuleRecorder() as rec:                      # doctest: +SKIP
    ...     loss = model(x).sum()
    >>> g = extract({"loss": loss}, model=model, trace=rec.trace)
    >>> g.inplace_problems()                               # before calling backward

No walk here recurses, so 100,000 nodes never meet Python's recursion limit; long walks
accept a ``threading.Event`` and stop with :class:`Cancelled` when it is set.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import re
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from tensorscope.errors import UserError, one_line

ROOT, BACKWARD, LEAF, LEAF_NO_GRAD = "root", "backward", "leaf", "leaf-no-grad"
"""Node kinds: the tensor a walk started from, a backward op, an AccumulateGrad with its
leaf tensor, and a root tensor that requires no grad (so it has no graph)."""

_CANCEL_EVERY = 1024
_VERSION_RE = re.compile(r"is at version (\d+); expected version (\d+)")
_FREED_MARK = "backward through the graph a second time"


class Cancelled(Exception):
    """A long walk stopped because its cancel event was set."""


@dataclass(slots=True)
class SavedTensor:
    """One tensor a backward node saved for its gradient formula."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str | None
    nbytes: int | None
    version_saved: int | None
    version_now: int | None
    state: str
    """"ok", "modified" (an in-place op moved its version), "freed" or "undefined"."""
    error: str | None = None
    """PyTorch's own message when unpacking fails (modified or freed)."""
    tensor: Any = field(default=None, repr=False)
    """The tensor as it is now (for layouts); None when freed or undefined."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape) if self.shape is not None else None,
                "dtype": self.dtype, "bytes": self.nbytes, "version_saved": self.version_saved,
                "version_now": self.version_now, "state": self.state}


@dataclass(slots=True, eq=False)
class GraphNode:
    """One node of the graph. ``fn`` is the grad_fn (None for roots and plain tensors)."""

    id: int
    name: str
    kind: str
    label: str
    """What a picture shows: the op name, a leaf's name, a root's name."""
    fn: Any = field(default=None, repr=False)
    tensor: Any = field(default=None, repr=False)
    """The leaf's variable, or the root tensor; None for backward ops."""
    seq: int | None = None
    module: str | None = None
    """Dotted module path that produced the node; "" is the model's own forward."""
    hooks: list[str] | None = field(default=None, repr=False)
    """Tensor hooks on a leaf or root (read lazily: ``node_hooks(node)``)."""
    saved: list[SavedTensor] | None = field(default=None, repr=False)
    attrs: dict[str, str] | None = field(default=None, repr=False)
    """Non-tensor values the node saved (dims, scalars, sizes), shown as text."""
    freed: bool = False


@dataclass(slots=True, frozen=True)
class GraphEdge:
    """Data flowed from ``src`` into input ``slot`` of ``dst`` (``src`` output ``output_nr``)."""

    src: int
    dst: int
    slot: int
    output_nr: int


@dataclass(slots=True, frozen=True)
class InplaceProblem:
    """A saved tensor modified in place after it was saved: backward will fail."""

    node_id: int
    node_name: str
    saved_name: str
    shape: tuple[int, ...] | None
    version_saved: int | None
    version_now: int | None
    error: str
    variable: str | None = None
    """The caller's name for the modified tensor, when it has one."""

    def describe(self) -> str:
        shape = "×".join(map(str, self.shape)) if self.shape else "scalar"
        what = f" (your '{self.variable}')" if self.variable else ""
        return (f"{self.node_name} (node {self.node_id}) saved '{self.saved_name}'{what} [{shape}] at "
                f"version {self.version_saved}; it is now at version {self.version_now}, so "
                f"backward will raise: RuntimeError: {self.error}")


# ---------------------------------------------------------------------------------------
# Module attribution by sequence numbers


@dataclass(slots=True)
class ModuleCall:
    """One forward call of a module: nodes created during it have start <= seq < end."""

    module: Any = field(repr=False)
    start: int
    end: int
    parent: int | None
    path: str = ""


@dataclass(slots=True)
class ModuleTrace:
    """Module calls recorded during a forward, in call order (laminar intervals)."""

    calls: list[ModuleCall] = field(default_factory=list)
    errors: int = 0
    """tensorscope's own hook errors, caught and counted (never raised into the forward)."""

    def name_calls(self, model: Any = None, module_list: list | None = None) -> None:
        """Give each call a dotted path: from ``model`` when given, else from nesting."""
        paths: dict[int, str] = {}
        if model is not None:
            for path, mod in module_list or model.named_modules(remove_duplicate=False):
                paths.setdefault(id(mod), path)
        taken: dict[str, int] = {}
        for call in self.calls:
            path = paths.get(id(call.module))
            if path is None:
                parent = self.calls[call.parent] if call.parent is not None else None
                local = None
                if parent is not None:
                    for child_name, child in parent.module.named_children():
                        if child is call.module:
                            local = child_name
                            break
                    base = parent.path
                    local = local or type(call.module).__name__
                    path = f"{base}.{local}" if base else local
                else:
                    path = type(call.module).__name__
                    count = taken.get(path, 0)
                    taken[path] = count + 1
                    if count:
                        path = f"{path}#{count + 1}"
                    paths[id(call.module)] = path
            call.path = path

    def module_of_seq(self, seq: int) -> ModuleCall | None:
        """The innermost call whose interval holds ``seq`` (O(depth))."""
        starts = self._starts()
        i = bisect.bisect_right(starts, seq) - 1
        call = self.calls[i] if i >= 0 else None
        while call is not None and not (call.start <= seq < call.end):
            call = self.calls[call.parent] if call.parent is not None else None
        return call

    def _starts(self) -> list[int]:
        return [c.start for c in self.calls]


class ModuleRecorder:
    """Records which module call each autograd node was created in, while active.

    Uses ``torch.nn.modules.module.register_module_forward_pre_hook``/``..._forward_hook``
    (PyTorch's global module hooks) and the thread's autograd sequence counter; both hooks
    are removed on exit, error or not. Calls on other threads are ignored.
    """

    def __init__(self) -> None:
        self.trace = ModuleTrace()
        self._stack: list[int] = []
        self._handles: list[Any] = []
        self._thread = threading.get_ident()

    def __enter__(self) -> "ModuleRecorder":
        import torch.nn.modules.module as mm

        self._peek = _sequence_peek()
        self._thread = threading.get_ident()
        try:
            self._handles.append(mm.register_module_forward_pre_hook(self._pre))
            self._handles.append(mm.register_module_forward_hook(self._post, always_call=True))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre(self, module: Any, args: Any) -> None:
        try:
            if threading.get_ident() != self._thread or self._peek is None:
                return
            parent = self._stack[-1] if self._stack else None
            self.trace.calls.append(ModuleCall(module, self._peek(), -1, parent))
            self._stack.append(len(self.trace.calls) - 1)
        except Exception:  # never raise into the user's forward
            self.trace.errors += 1

    def _post(self, module: Any, args: Any, output: Any) -> None:
        try:
            if threading.get_ident() != self._thread or not self._stack:
                return
            index = self._stack.pop()
            self.trace.calls[index].end = self._peek()
        except Exception:
            self.trace.errors += 1


def _sequence_peek():
    """The thread's next autograd sequence number, or None where torch lacks the reader."""
    import torch

    reader = getattr(getattr(torch._C, "_autograd", None), "_get_sequence_nr", None)
    return reader


# ---------------------------------------------------------------------------------------
# The graph


@dataclass(eq=False)
class AutogradGraph:
    """Nodes (index == id) and edges of one or more roots' autograd graphs."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    module_types: dict[str, str] = field(default_factory=dict)
    """Module path -> class name, for every module a node is attributed to (and parents)."""
    attribution: str = "none"
    """"recorded" (a ModuleRecorder saw the forward), "parameters" (model only) or "none"."""
    tensor_names: dict[int, tuple[str, Any]] = field(default_factory=dict, repr=False)
    """id(tensor) -> (the caller's name for it, a weak reference to it)."""

    def __del__(self) -> None:
        # Free what we hold root-first: the root tensors, then each node's grad_fn wrapper
        # and saved tensors in id order, so that each release destroys at most one node.
        # Released the other way (a list frees its items last-to-first), the last release
        # makes PyTorch destroy a whole deep chain in one C++ cascade, and once Python
        # wrappers were made for its nodes that cascade overflows the C stack on chains of
        # ~60k nodes (seen with torch 2.13; a plain loop over next_functions does it too).
        for node in self.nodes:
            if node.kind == ROOT:
                node.tensor = None
        for node in self.nodes:
            node.fn = None
            node.saved = None

    # -- queries -------------------------------------------------------------------------

    def inputs_of(self, node_id: int) -> list[GraphEdge]:
        return self._in_index().get(node_id, [])

    def _in_index(self) -> dict[int, list[GraphEdge]]:
        index = getattr(self, "_in", None)
        if index is None:
            index = {}
            for e in self.edges:
                index.setdefault(e.dst, []).append(e)
            self._in = index
        return index

    def leaves(self) -> list[GraphNode]:
        return [n for n in self.nodes if n.kind == LEAF]

    def roots(self) -> list[GraphNode]:
        return [n for n in self.nodes if n.kind == ROOT]

    def find(self, text: str) -> list[GraphNode]:
        """Nodes whose name, label or module contains ``text`` (case-insensitive)."""
        t = text.lower()
        return [n for n in self.nodes
                if t in n.name.lower() or t in n.label.lower() or (n.module and t in n.module.lower())]

    def load_saved(self, cancel: threading.Event | None = None) -> None:
        """Read saved-tensor metadata for every node (export and diagnosis need it all)."""
        with _gc_paused():
            for i, node in enumerate(self.nodes):
                if cancel is not None and i % _CANCEL_EVERY == 0 and cancel.is_set():
                    raise Cancelled()
                if node.saved is None:
                    node_saved(node)

    def refresh(self) -> None:
        """Forget saved-tensor readings (after backward or an in-place op) and hooks."""
        for node in self.nodes:
            node.saved = None
            node.attrs = None
            node.freed = False
            node.hooks = None

    @property
    def freed(self) -> bool:
        """True once backward without retain_graph freed the saved tensors."""
        self.load_saved()
        return any(n.freed for n in self.nodes)

    def inplace_problems(self) -> list[InplaceProblem]:
        """Saved tensors whose version moved since they were saved (backward will fail)."""
        self.load_saved()
        out = []
        for node in self.nodes:
            for s in node.saved or ():
                if s.state == "modified":
                    entry = self.tensor_names.get(id(s.tensor)) if s.tensor is not None else None
                    # a weak reference confirms the id still belongs to the named tensor
                    var = entry[0] if entry is not None and entry[1]() is s.tensor else None
                    out.append(InplaceProblem(node.id, node.name, s.name, s.shape, s.version_saved,
                                              s.version_now, s.error or "", var))
        return out

    def module_paths(self) -> list[str]:
        """Every module path that holds at least one node, parents included, sorted."""
        return sorted(self.module_types)


def _short_name(fn: Any) -> str:
    name = fn.name()
    return name.rpartition("::")[2] if "::" in name else name


def shape_text(t: Any) -> str:
    """``2×3``, or ``scalar`` for a 0-d tensor."""
    return "×".join(str(s) for s in t.shape) if t.dim() else "scalar"


def node_hooks(node: GraphNode) -> list[str]:
    """Hooks registered on the node's tensor (leaf or root), read once and cached.

    Hooks registered on a grad_fn itself (``grad_fn.register_hook``) are not listed:
    PyTorch offers no way to enumerate them."""
    if node.hooks is None:
        node.hooks = _hooks_of(node.tensor) if node.tensor is not None else []
    return node.hooks


def _hooks_of(t: Any) -> list[str]:
    found = []
    for attr, what in (("_backward_hooks", "tensor hook"),
                       ("_post_accumulate_grad_hooks", "post-accumulate-grad hook")):
        hooks = getattr(t, attr, None)
        for fn in (hooks or {}).values():
            found.append(f"{what}: {getattr(fn, '__qualname__', type(fn).__name__)}")
    if getattr(t, "retains_grad", False) and not t.is_leaf:
        found.append("retain_grad()")
    return found


def _as_roots(roots: Any) -> list[tuple[str, Any]]:
    import torch

    if isinstance(roots, torch.Tensor):
        return [("output", roots)]
    if isinstance(roots, Mapping):
        items = list(roots.items())
    elif isinstance(roots, (list, tuple)):
        items = [(f"output{i}", t) for i, t in enumerate(roots)]
    else:
        raise UserError(f"expected a tensor (or a dict of named tensors), got {type(roots).__name__}")
    out = []
    for name, t in items:
        if not isinstance(t, torch.Tensor):
            raise UserError(f"'{name}' is a {type(t).__name__}, not a tensor")
        out.append((str(name), t))
    if not out:
        raise UserError("no tensors given: nothing to draw")
    return out


def extract(roots: Any, *, model: Any = None, names: Mapping[str, Any] | None = None,
            trace: ModuleTrace | None = None, cancel: threading.Event | None = None,
            max_nodes: int | None = None) -> AutogradGraph:
    """Walk the graph behind ``roots`` (a tensor, a list, or a name -> tensor dict).

    ``model`` names parameters by path and attributes nodes to modules; ``names`` maps the
    caller's variable names to tensors (leaves found among them are named); ``trace`` is a
    :class:`ModuleRecorder`'s trace of the forward. Raises UserError when no root has a
    graph (``requires_grad=False``), Cancelled when ``cancel`` is set mid-walk.
    """
    import torch

    root_items = _as_roots(roots)
    if not any(t.requires_grad for _, t in root_items):
        what = root_items[0][0] if len(root_items) == 1 else "none of the tensors"
        raise UserError(f"{what} has no autograd graph: requires_grad=False (make an input with "
                        "requires_grad=True, or compute it outside torch.no_grad())")

    leaf_names: dict[int, str] = {}
    if names:
        for n, t in names.items():
            if isinstance(t, torch.Tensor) and t.is_leaf:
                leaf_names.setdefault(id(t), n)
    param_module: dict[int, str] = {}
    module_list: list[tuple[str, Any]] = []
    if model is not None:
        # One walk of the module tree serves parameter names, attribution and class names.
        module_list = list(model.named_modules(remove_duplicate=False))
        for path, mod in module_list:
            for pname, p in mod._parameters.items():
                if p is not None:
                    leaf_names.setdefault(id(p), f"{path}.{pname}" if path else pname)
                    param_module.setdefault(id(p), path)

    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []
    index: dict[Any, int] = {}
    queue: deque[Any] = deque()

    def add_fn(fn: Any) -> int:
        nid = len(nodes)
        index[fn] = nid
        variable = getattr(fn, "variable", None) if type(fn).__name__ == "AccumulateGrad" else None
        if variable is not None:
            name = "AccumulateGrad"
            label = leaf_names.get(id(variable)) or "leaf"
            node = GraphNode(nid, name, LEAF, label, fn, variable, None,
                             param_module.get(id(variable)))
        else:
            name = _short_name(fn)
            node = GraphNode(nid, name, BACKWARD, name, fn, None, fn._sequence_nr())
        nodes.append(node)
        queue.append(fn)
        return nid

    for rname, t in root_items:
        rid = len(nodes)
        if t.grad_fn is not None:
            nodes.append(GraphNode(rid, rname, ROOT, rname, None, t))
            fn = t.grad_fn
            dst = index.get(fn)
            if dst is None:
                dst = add_fn(fn)
            edges.append(GraphEdge(dst, rid, 0, t.output_nr))
        elif t.requires_grad:  # a lone leaf: a valid one-node graph
            label = leaf_names.get(id(t)) or rname
            leaf_names.setdefault(id(t), label)
            nodes.append(GraphNode(rid, "AccumulateGrad", LEAF, label, None, t, None,
                                   param_module.get(id(t))))
        else:
            nodes.append(GraphNode(rid, rname, LEAF_NO_GRAD, rname, None, t))

    # Thousands of small objects would trigger the cyclic GC repeatedly mid-walk (it
    # scans every live tensor); pause it for the walk and restore it after.
    with _gc_paused():
        _walk(queue, index, nodes, edges, add_fn, cancel, max_nodes)

    graph = AutogradGraph(nodes, edges)
    if names:
        graph.tensor_names = {id(t): (n, weakref.ref(t)) for n, t in names.items()
                              if isinstance(t, torch.Tensor)}
    if trace is not None and trace.calls:
        _attribute_recorded(graph, trace, model, module_list)
    elif model is not None:
        _attribute_by_parameters(graph, param_module)
    _fill_module_types(graph, trace, module_list)
    return graph


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic GC (if it was on) for a burst of allocations; always restored."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _walk(queue, index, nodes, edges, add_fn, cancel, max_nodes) -> None:
    walked = 0
    while queue:
        fn = queue.popleft()
        walked += 1
        if cancel is not None and walked % _CANCEL_EVERY == 0 and cancel.is_set():
            raise Cancelled()
        if max_nodes is not None and len(nodes) > max_nodes:
            raise UserError(f"the graph has more than {max_nodes} nodes")
        dst = index[fn]
        for slot, (nxt, output_nr) in enumerate(fn.next_functions):
            if nxt is None:
                continue
            src = index.get(nxt)
            if src is None:
                src = add_fn(nxt)
            edges.append(GraphEdge(src, dst, slot, output_nr))


def _attribute_recorded(graph: AutogradGraph, trace: ModuleTrace, model: Any,
                        module_list: list[tuple[str, Any]]) -> None:
    trace.name_calls(model, module_list)
    starts = [c.start for c in trace.calls]
    calls = trace.calls
    for node in graph.nodes:
        if node.seq is None:
            continue
        i = bisect.bisect_right(starts, node.seq) - 1
        call = calls[i] if i >= 0 else None
        while call is not None and not (call.start <= node.seq < call.end or call.end < 0):
            call = calls[call.parent] if call.parent is not None else None
        if call is not None:
            node.module = call.path
    if model is None:
        # Leaves: a parameter belongs to the module that holds it, when that module ran.
        owners: dict[int, str] = {}
        for call in calls:
            for pname, p in call.module.named_parameters(recurse=False):
                owners.setdefault(id(p), call.path)
        for node in graph.nodes:
            if node.kind == LEAF and node.tensor is not None and id(node.tensor) in owners:
                node.module = owners[id(node.tensor)]
                if node.label == "leaf":
                    leaf = next(n for n, p in _own_params(calls, node.module) if p is node.tensor)
                    node.label = f"{node.module}.{leaf}"
    graph.attribution = "recorded"


def _own_params(calls: list[ModuleCall], path: str):
    for call in calls:
        if call.path == path:
            return list(call.module.named_parameters(recurse=False))
    return []


def _attribute_by_parameters(graph: AutogradGraph, param_module: dict[int, str]) -> None:
    """Without a recording: nodes consuming a module's parameters (directly, or through a
    node fed only by that module's parameters, like the transpose inside Linear)."""
    in_index = graph._in_index()
    nodes = graph.nodes
    for node in nodes:
        if node.kind != BACKWARD:
            continue
        mods = {nodes[e.src].module for e in in_index.get(node.id, [])
                if nodes[e.src].kind == LEAF and nodes[e.src].module is not None}
        if len(mods) == 1:
            node.module = mods.pop()
    for node in nodes:
        if node.kind != BACKWARD or node.module is not None:
            continue
        for e in in_index.get(node.id, []):
            src = nodes[e.src]
            feeders = in_index.get(src.id, [])
            if src.kind == BACKWARD and src.module is not None and feeders and all(
                    nodes[f.src].kind == LEAF for f in feeders):
                node.module = src.module
                break
    # Parameter-free ops (activations, residual adds) ran between two attributed ops:
    # by sequence number, they belong to the deepest module holding both neighbours.
    timeline = sorted((n.seq, n.module) for n in nodes
                      if n.kind == BACKWARD and n.seq is not None and n.module is not None)
    if timeline:
        seqs = [t[0] for t in timeline]
        for node in nodes:
            if node.kind != BACKWARD or node.module is not None or node.seq is None:
                continue
            i = bisect.bisect_left(seqs, node.seq)
            if 0 < i < len(timeline):
                node.module = _common_module(timeline[i - 1][1], timeline[i][1])
    graph.attribution = "parameters" if param_module else "none"


def _common_module(a: str, b: str) -> str:
    """The deepest module path holding both ``a`` and ``b`` ("" is the model)."""
    pa, pb = a.split(".") if a else [], b.split(".") if b else []
    common = []
    for x, y in zip(pa, pb):
        if x != y:
            break
        common.append(x)
    return ".".join(common)


def _fill_module_types(graph: AutogradGraph, trace: ModuleTrace | None,
                       module_list: list[tuple[str, Any]]) -> None:
    types: dict[str, str] = {}
    for path, mod in module_list:
        types.setdefault(path, type(mod).__name__)
    if trace is not None:
        for call in trace.calls:
            types.setdefault(call.path, type(call.module).__name__)
    used: dict[str, str] = {}
    for node in graph.nodes:
        path = node.module
        while path is not None and path not in used:
            used[path] = types.get(path, "Module")
            if not path:
                break
            path = path.rpartition(".")[0] if "." in path else ("" if "" in types else None)
    graph.module_types = dict(sorted(used.items()))


# ---------------------------------------------------------------------------------------
# Saved tensors


_saved_names_cache: dict[type, tuple[str, ...]] = {}


def _saved_names(fn: Any) -> tuple[str, ...]:
    """Names after ``_saved_`` that this node type saves (cached per grad_fn class)."""
    tp = type(fn)
    names = _saved_names_cache.get(tp)
    if names is None:
        names = tuple(a[len("_saved_"):] for a in dir(fn) if a.startswith("_saved_"))
        if hasattr(fn, "_raw_saved_tensors") and "tensors" not in names:
            names = names + ("tensors",)  # a custom autograd.Function's save_for_backward
        _saved_names_cache[tp] = names
    return names


def node_saved(node: GraphNode) -> list[SavedTensor]:
    """The node's saved tensors (read once, cached on the node); sets ``node.freed``."""
    if node.saved is not None:
        return node.saved
    saved: list[SavedTensor] = []
    attrs: dict[str, str] = {}
    fn = node.fn
    if fn is not None and node.kind == BACKWARD:
        for base in _saved_names(fn):
            raw = getattr(fn, "_raw_saved_" + base, None)
            if raw is None:
                if base == "tensors":
                    continue
                try:
                    value = getattr(fn, "_saved_" + base)
                except Exception as exc:  # noqa: BLE001 - a reading, never fatal
                    value = one_line(exc)
                attrs[base] = _attr_text(value)
                continue
            if isinstance(raw, (list, tuple)):
                for i, item in enumerate(raw):
                    saved.append(_read_saved(fn, f"{base}[{i}]", base, i, item))
            else:
                saved.append(_read_saved(fn, base, base, None, raw))
    node.saved = saved
    node.attrs = attrs
    node.freed = any(s.state == "freed" for s in saved)
    return saved


def _attr_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unpack(fn: Any, base: str, index: int | None) -> Any:
    if base == "tensors" and not hasattr(fn, "_saved_tensors"):
        value = fn.saved_tensors
    else:
        value = getattr(fn, "_saved_" + base)
    return value[index] if index is not None else value


def _read_saved(fn: Any, name: str, base: str, index: int | None, raw: Any) -> SavedTensor:
    try:
        t = _unpack(fn, base, index)
    except RuntimeError as exc:
        text = str(exc)
        first = text.split(" Hint:")[0].strip()
        if _FREED_MARK in text:
            return SavedTensor(name, None, None, None, None, None, "freed", first.splitlines()[0])
        m = _VERSION_RE.search(text)
        current = getattr(raw, "data", None)
        return SavedTensor(
            name,
            tuple(current.shape) if current is not None else None,
            str(current.dtype).removeprefix("torch.") if current is not None else None,
            current.nbytes if current is not None else None,
            int(m.group(2)) if m else None,
            int(m.group(1)) if m else None,
            "modified", first, current)
    if t is None:
        return SavedTensor(name, None, None, None, None, None, "undefined")
    version = t._version
    return SavedTensor(name, tuple(t.shape), str(t.dtype).removeprefix("torch."), t.nbytes,
                       version, version, "ok", None, t)


# ---------------------------------------------------------------------------------------
# Collapse by module


@dataclass(slots=True, frozen=True)
class ViewNode:
    """A box in a (possibly collapsed) view: a real node, or a module holding many."""

    key: str
    """"n<id>" for a node, "m:<path>" for a collapsed module."""
    label: str
    kind: str
    """A node kind, or "module"."""
    node_id: int | None = None
    module: str | None = None
    count: int = 1


@dataclass(slots=True)
class GraphView:
    """What one picture shows: boxes and the (deduplicated) edges between them."""

    nodes: list[ViewNode]
    edges: list[tuple[str, str]]
    expanded: frozenset[str]
    member: dict[int, str] = field(default_factory=dict, repr=False)
    """Node id -> the key of the box that shows it."""


def group_of(module: str | None, expanded: frozenset[str] | set[str]) -> str | None:
    """The shallowest collapsed module holding ``module`` (None: the node shows as itself).

    "" is the model's own forward, the parent of every top-level path."""
    if module is None:
        return None
    if "" not in expanded:
        return ""
    if module == "":
        return None
    prefix = ""
    for part in module.split("."):
        prefix = f"{prefix}.{part}" if prefix else part
        if prefix not in expanded:
            return prefix
    return None


def build_view(graph: AutogradGraph, expanded: Iterable[str] | None = None,
               collapse: str = "modules") -> GraphView:
    """Boxes and edges with every module not in ``expanded`` folded into one box.

    ``collapse="none"`` (or a graph without module attribution) shows every node.
    Module paths have a root "" (the model's own forward) when a model was given; a graph
    recorded without a model has several top-level paths, implicitly under "".
    """
    exp = frozenset(expanded or ())
    if collapse == "none" or not graph.module_types:
        nodes = [ViewNode(f"n{n.id}", n.label, n.kind, n.id, n.module) for n in graph.nodes]
        edges = sorted({(f"n{e.src}", f"n{e.dst}") for e in graph.edges}, key=_edge_key)
        return GraphView(nodes, edges, exp, {n.id: f"n{n.id}" for n in graph.nodes})
    has_root = "" in graph.module_types
    if not has_root:
        exp = exp | {""}
    member: dict[int, str] = {}
    counts: dict[str, int] = {}
    order: list[str] = []
    for n in graph.nodes:
        grp = group_of(n.module, exp)
        if grp is None:
            key = f"n{n.id}"
        else:
            key = f"m:{grp}"
            if key not in counts:
                order.append(key)
                counts[key] = 0
            counts[key] += 1
        member[n.id] = key
    boxes: list[ViewNode] = []
    emitted: set[str] = set()
    for n in graph.nodes:
        key = member[n.id]
        if key in emitted:
            continue
        emitted.add(key)
        if key.startswith("m:"):
            path = key[2:]
            cls = graph.module_types.get(path, "Module")
            label = f"{path} ({cls})" if path and path != cls else (path or cls)
            boxes.append(ViewNode(key, label, "module", None, path, counts[key]))
        else:
            boxes.append(ViewNode(key, n.label, n.kind, n.id, n.module))
    edges = sorted({(member[e.src], member[e.dst]) for e in graph.edges
                    if member[e.src] != member[e.dst]}, key=_edge_key)
    return GraphView(boxes, edges, exp, member)


def _edge_key(edge: tuple[str, str]) -> tuple:
    return tuple((0, int(k[1:])) if k.startswith("n") else (1, k) for k in edge)


def auto_expanded(graph: AutogradGraph, budget: int = 120) -> frozenset[str]:
    """The widest breadth-first module expansion whose view stays within ``budget`` boxes:
    big graphs open collapsed, small ones open in full. O(nodes + modules)."""
    if not graph.module_types:
        return frozenset()
    direct: dict[str, int] = {}
    loose = 0
    for n in graph.nodes:
        if n.module is None:
            loose += 1
        else:
            direct[n.module] = direct.get(n.module, 0) + 1
    children: dict[str, list[str]] = {}
    for path in graph.module_types:
        if path:
            parent = path.rpartition(".")[0] if "." in path else ""
            children.setdefault(parent, []).append(path)
    has_root = "" in graph.module_types
    expanded: set[str] = set() if has_root else {""}
    size = loose + (1 if has_root else len(children.get("", [])) + direct.get("", 0))
    frontier = [""] if has_root else list(children.get("", []))
    while frontier:
        nxt = []
        for path in sorted(frontier):
            grow = len(children.get(path, [])) + direct.get(path, 0) - 1
            if size + grow <= budget:
                expanded.add(path)
                size += grow
                nxt.extend(children.get(path, []))
        frontier = nxt
    return frozenset(expanded)
