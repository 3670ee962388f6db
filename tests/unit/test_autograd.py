"""core/autograd.py against torch's own graph: structure, saved tensors, versions,
freed graphs, hooks, module attribution, collapse, long chains and cancellation."""

from __future__ import annotations

import sys
import threading
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
import torch.nn as nn

from tensorscope.autograd import (BACKWARD, LEAF, LEAF_NO_GRAD, ROOT, Cancelled, ModuleRecorder,
                                  auto_expanded, build_view, extract, node_hooks, node_saved)
from tensorscope.errors import UserError
from tests.graph_programs import Net, arithmetic, nested_model, two_roots


def torch_walk(roots):
    """Reference: every grad_fn reachable through next_functions, and every edge."""
    seen, stack, edges = set(), [r.grad_fn for r in roots], 0
    seen.update(stack)
    while stack:
        fn = stack.pop()
        for nxt, _ in fn.next_functions:
            if nxt is None:
                continue
            edges += 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen, edges


def test_structure_matches_next_functions() -> None:
    roots, net, trace = nested_model()
    g = extract(roots, model=net, trace=trace)
    fns, n_edges = torch_walk(roots.values())
    assert len(g.nodes) == len(fns) + 1  # + the root tensor
    assert len(g.edges) == n_edges + 1
    expected = Counter(fn.name().rpartition("::")[2] for fn in fns)
    got = Counter(n.name for n in g.nodes if n.kind in (BACKWARD, LEAF))
    assert got == expected
    assert [n.id for n in g.nodes] == list(range(len(g.nodes)))
    # edges carry the input slot: the slot-th entry of dst's next_functions is src's fn
    for e in g.edges:
        dst = g.nodes[e.dst]
        if dst.fn is not None:
            assert dst.fn.next_functions[e.slot][0] is g.nodes[e.src].fn


def test_ids_and_names_are_stable_across_runs() -> None:
    a = extract(*[nested_model()[0]], model=None)
    b = extract(*[nested_model()[0]], model=None)
    assert [(n.id, n.name, n.kind) for n in a.nodes] == [(n.id, n.name, n.kind) for n in b.nodes]
    assert a.edges == b.edges


def test_kinds_and_leaf_names() -> None:
    prog = arithmetic()
    g = extract({"y": prog["y"]}, names=prog)
    assert g.nodes[0].kind == ROOT and g.nodes[0].label == "y"
    leaves = {n.label: n for n in g.leaves()}
    assert set(leaves) == {"a", "b"}
    assert leaves["a"].tensor is prog["a"]
    roots, net, trace = nested_model()
    g = extract(roots, model=net, trace=trace)
    assert {n.label for n in g.leaves()} == {p for p, _ in net.named_parameters()}


def test_saved_tensor_metadata() -> None:
    prog = arithmetic()
    g = extract({"y": prog["y"]}, names=prog)
    mul = next(n for n in g.nodes if n.name == "MulBackward0")
    saved = {s.name: s for s in node_saved(mul)}
    assert set(saved) == {"self", "other"}
    for s, t in ((saved["self"], prog["a"]), (saved["other"], prog["b"])):
        assert s.shape == tuple(t.shape) and s.dtype == "float32"
        assert s.nbytes == t.numel() * 4
        assert s.version_saved == s.version_now == t._version
        assert s.tensor is t and s.state == "ok"
    sin = next(n for n in g.nodes if n.name == "SinBackward0")
    assert [s.name for s in node_saved(sin)] == ["self"]
    sum_node = next(n for n in g.nodes if n.name == "SumBackward0")
    assert node_saved(sum_node) == [] and "self_sym_sizes" in sum_node.attrs


def test_inplace_after_save_is_diagnosed_before_backward() -> None:
    x = torch.randn(3, requires_grad=True)
    h = x * 2
    y = h.sin()          # SinBackward0 saves h at version 0
    h.add_(1)            # now version 1
    g = extract({"y": y.sum()}, names={"x": x, "h": h})
    problems = g.inplace_problems()
    assert len(problems) == 1
    p = problems[0]
    assert p.node_name == "SinBackward0" and p.saved_name == "self"
    assert (p.version_saved, p.version_now) == (0, 1) == (0, h._version)
    with pytest.raises(RuntimeError) as err:
        y.sum().backward()
    assert p.error.split(" Hint")[0] in str(err.value)
    assert "version 0" in p.describe() and "RuntimeError" in p.describe()
    assert p.variable == "h" and "your 'h'" in p.describe()


def test_backward_frees_the_graph_and_retain_keeps_it() -> None:
    prog = arithmetic()
    g = extract({"y": prog["y"]}, names=prog)
    prog["y"].backward(retain_graph=True)
    g.refresh()
    assert not g.freed
    prog["y"].backward()
    g.refresh()
    assert g.freed
    mul = next(n for n in g.nodes if n.name == "MulBackward0")
    assert all(s.state == "freed" for s in node_saved(mul)) and mul.freed
    with pytest.raises(RuntimeError, match="second time"):
        prog["y"].backward()


def test_hooks_on_leaves_and_roots() -> None:
    x = torch.ones(2, requires_grad=True)
    x.register_hook(lambda g: g * 2)
    x.register_post_accumulate_grad_hook(lambda t: None)
    y = (x * 3).sum()
    y.retain_grad()
    g = extract({"y": y}, names={"x": x})
    leaf = g.leaves()[0]
    hooks = node_hooks(leaf)
    assert any(h.startswith("tensor hook") for h in hooks)
    assert any(h.startswith("post-accumulate-grad hook") for h in hooks)
    assert "retain_grad()" in node_hooks(g.nodes[0])


def test_module_attribution_recorded_on_nested_model() -> None:
    roots, net, trace = nested_model()
    g = extract(roots, model=net, trace=trace)
    assert g.attribution == "recorded"
    by_module = Counter(n.module for n in g.nodes if n.kind == BACKWARD)
    assert by_module["enc.0.act"] == 1 and by_module["enc.1.act"] == 1
    assert by_module["enc.0"] == 1  # the residual add happens in Block.forward itself
    assert by_module[""] == 1       # tanh in Net.forward
    assert by_module[None] == 2     # pow and mean ran outside the model
    # every node produced inside a module has a seq nr inside that module's call
    for n in g.nodes:
        if n.kind == LEAF:
            assert n.module == n.label.rpartition(".")[0]
    assert g.module_types["enc.1.fc2"] == "Linear" and g.module_types["enc"] == "Sequential"


def test_recorder_names_modules_without_a_model_and_removes_its_hooks() -> None:
    import torch.nn.modules.module as mm

    before = (len(mm._global_forward_pre_hooks), len(mm._global_forward_hooks))
    net = Net()
    with ModuleRecorder() as rec:
        out = net(torch.randn(2, 4)).sum()
    assert (len(mm._global_forward_pre_hooks), len(mm._global_forward_hooks)) == before
    g = extract(out, trace=rec.trace)
    assert {n.module for n in g.nodes if n.name == "ReluBackward0"} == {"Net.enc.0.act", "Net.enc.1.act"}
    with pytest.raises(ValueError):
        with ModuleRecorder():
            raise ValueError("user error inside")
    assert (len(mm._global_forward_pre_hooks), len(mm._global_forward_hooks)) == before


def test_attribution_by_parameters_without_recording() -> None:
    net = Net()
    out = net(torch.randn(2, 4)).sum()
    g = extract(out, model=net)
    assert g.attribution == "parameters"
    addmm = [n for n in g.nodes if n.name == "AddmmBackward0"]
    assert {n.module for n in addmm} == {"enc.0.fc1", "enc.0.fc2", "enc.1.fc1", "enc.1.fc2", "head"}


def test_collapse_and_expand_by_module() -> None:
    roots, net, trace = nested_model()
    g = extract(roots, model=net, trace=trace)
    folded = build_view(g, set())
    assert [b.kind for b in folded.nodes].count("module") == 1
    assert sum(b.count for b in folded.nodes if b.kind == "module") == sum(
        1 for n in g.nodes if n.module is not None)
    top = build_view(g, {""})
    assert {b.module for b in top.nodes if b.kind == "module"} == {"enc", "head"}
    opened = build_view(g, {"", "enc"})
    assert {b.module for b in opened.nodes if b.kind == "module"} == {"enc.0", "enc.1", "head"}
    assert ("m:enc.0", "m:enc.1") in opened.edges
    full = build_view(g, collapse="none")
    assert len(full.nodes) == len(g.nodes)
    assert auto_expanded(g, budget=1000) == frozenset(g.module_types)
    small = build_view(g, auto_expanded(g, budget=8))
    assert len(small.nodes) <= 8


def test_long_chain_is_walked_without_recursion() -> None:
    limit = sys.getrecursionlimit()
    x = torch.zeros(1, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1
    g = extract(y)
    assert len(g.nodes) == 100_002 and sys.getrecursionlimit() == limit
    assert g.nodes[-1].kind == LEAF
    v = build_view(g)
    assert len(v.edges) == 100_001
    # The graph is the last holder: it frees the chain one node at a time (see __del__).
    del y, v
    del g


def test_cancel_stops_a_walk() -> None:
    y = torch.zeros(1, requires_grad=True)
    for _ in range(5000):
        y = y * 1
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        extract(y, cancel=cancel)


def test_lone_leaf_and_no_grad_roots() -> None:
    leaf = torch.ones(2, requires_grad=True)
    g = extract({"w": leaf})
    assert [(n.kind, n.label) for n in g.nodes] == [(LEAF, "w")] and g.edges == []
    with pytest.raises(UserError, match="requires_grad=False"):
        extract({"c": torch.ones(2)})
    g = extract({"c": torch.ones(2), "y": (leaf * 2).sum()})
    assert g.nodes[0].kind == LEAF_NO_GRAD
    with pytest.raises(UserError):
        extract(3)


def test_shared_subgraph_is_one_node() -> None:
    g = extract(two_roots())
    assert [n.kind for n in g.roots()] == [ROOT, ROOT]
    assert sum(1 for n in g.nodes if n.name == "ExpBackward0") == 1
    assert len(g.leaves()) == 1


def test_custom_function_saved_tensors() -> None:
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return 2 * a * grad

    x = torch.ones(3, requires_grad=True)
    g = extract(Square.apply(x).sum())
    node = next(n for n in g.nodes if n.name == "SquareBackward")
    saved = node_saved(node)
    assert [s.name for s in saved] == ["tensors[0]"] and saved[0].shape == (3,)


OPS = ["add", "mul", "sin", "exp", "sum_keep", "t_view", "reuse"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10)), min_size=1, max_size=25))
def test_random_programs_match_torch(program) -> None:
    """Random programs over three leaves: node and edge counts, names and slots match
    torch's own next_functions, and ids are the same on a second extraction."""
    leaves = [torch.randn(2, 2, requires_grad=True) for _ in range(3)]
    values = list(leaves)
    for op, pick in program:
        a, b = values[pick % len(values)], values[(pick * 7 + 1) % len(values)]
        if op == "add":
            v = a + b
        elif op == "mul":
            v = a * b
        elif op == "sin":
            v = a.sin()
        elif op == "exp":
            v = a.exp()
        elif op == "sum_keep":
            v = a.sum(dim=0, keepdim=True).expand(2, 2)
        elif op == "t_view":
            v = a.t()
        else:
            v = a * a
        values.append(v)
    root = values[-1] if values[-1].grad_fn is not None else values[-1] * 1
    g = extract(root)
    fns, n_edges = torch_walk([root])
    assert len(g.nodes) == len(fns) + 1 and len(g.edges) == n_edges + 1
    for e in g.edges:
        dst = g.nodes[e.dst]
        if dst.fn is not None:
            assert dst.fn.next_functions[e.slot][0] is g.nodes[e.src].fn
    again = extract(root)
    assert [(n.name, n.kind) for n in again.nodes] == [(n.name, n.kind) for n in g.nodes]
    assert again.edges == g.edges
