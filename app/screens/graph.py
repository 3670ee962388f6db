"""The Graph screen: the autograd graph of the tensors the app was opened on.

Left, an outline of the graph (modules, then nodes) with search by name; middle, the graph
laid out by graphviz and drawn in the terminal; right, the selected node's details
(saved tensors, versions, hooks, a leaf's .grad). Backward runs live on the shown graph.

It opens on ``app.context.graph_roots`` (and ``.model`` to name parameters); with nothing
given it offers an input line (evaluated in the shared console namespace) and an example.
Extraction and layout run in workers; a newer layout cancels the stale one (and kills its
``dot``), so the screen stays responsive on graphs of thousands of nodes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static, Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from tensorscope.app.quantities import human_bytes, plural
from tensorscope.app.widgets.graph_canvas import KIND_COLOURS, GraphCanvas
from tensorscope.autograd import shape_text

EXAMPLE = ("net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)); "
           "x = torch.randn(8, 3); loss = net(x).pow(2).mean(); (loss, net)")
"""The one-click example: a small MLP, so leaves have names and nodes have modules."""

EMPTY_MESSAGE = (
    "No graph yet.\n\n"
    "This screen draws the autograd graph behind a tensor:\n"
    "every backward node, the leaves gradients flow into,\n"
    "and the tensors each node saved for backward.\n\n"
    "Type an expression above and press Enter\n"
    "(tensors from the Storage console are in scope),\n"
    "or FILE.py:FUNCTION, or demo:NAME, or press Example.\n\n"
    "From a shell: tensorscope graph TARGET -o graph.svg"
)

ZOOMS = ("detail", "compact", "overview")
BIG_GRAPH = 400
"""Nodes above which the screen says it is laying out in the background."""


class GraphScreen(Screen):
    """Explore an autograd graph: outline, drawing, details, live backward."""

    DEFAULT_CSS = """
    GraphScreen #graph-bar { height: 3; padding: 0 1; }
    GraphScreen #graph-expr { width: 1fr; }
    GraphScreen #graph-bar Button { min-width: 12; margin-left: 1; }
    GraphScreen #graph-main { height: 1fr; }
    /* Side panes give way on a narrow terminal (80 columns over SSH): fixed widths of
       40 + 50 left the drawing no column at all there. */
    GraphScreen #graph-left { width: 28%; max-width: 40; min-width: 18;
                              border-right: vkey $panel-lighten-2; }
    GraphScreen #graph-search { margin: 0 0 0 0; }
    GraphScreen #graph-tree { height: 1fr; }
    GraphScreen #graph-center { width: 1fr; }
    /* A long PyTorch error (the in-place one runs to 9 lines at 120 columns, and its
       advice comes last) gets up to half the height, and scrolls beyond it. */
    GraphScreen #graph-banner { height: auto; max-height: 50%; overflow-y: auto; padding: 0 1;
                                display: none; }
    GraphScreen #graph-banner.-error { display: block; background: $error 20%; color: $text; }
    GraphScreen #graph-banner.-info { display: block; background: $primary 20%; color: $text; }
    GraphScreen #graph-canvas { height: 1fr; }
    GraphScreen #graph-status { height: 1; padding: 0 1; color: $text-muted;
                                background: $panel; }
    GraphScreen #graph-right { width: 32%; max-width: 50; min-width: 22;
                               border-left: vkey $panel-lighten-2; padding: 0 1; }
    GraphScreen #graph-details { width: 100%; }
    """

    BINDINGS = [
        Binding("b", "backward(False)", "Backward"),
        Binding("r", "backward(True)", "Backward (retain)"),
        Binding("plus,equals_sign", "expand", "Expand module"),
        Binding("minus", "collapse", "Collapse module"),
        Binding("z", "zoom", "Zoom"),
        Binding("x", "export", "Export view"),
        Binding("slash", "search", "Search", show=False),
        Binding("ctrl+r", "reload", "Rerun forward"),
    ]

    class GraphLoaded(Message):
        """A worker extracted a graph."""

        def __init__(self, graph: Any, source: Any, problems: list) -> None:
            self.graph, self.source, self.problems = graph, source, problems
            super().__init__()

    class LayoutReady(Message):
        """A worker laid out the current view."""

        def __init__(self, generation: int, layout: Any) -> None:
            self.generation, self.layout = generation, layout
            super().__init__()

    class LoadFailed(Message):
        """The target could not be turned into a graph (a user error, shown in place)."""

        def __init__(self, text: str) -> None:
            self.text = text
            super().__init__()

    def __init__(self) -> None:
        super().__init__()
        self.graph: Any = None
        self.source: Any = None
        self.expanded: frozenset[str] = frozenset()
        self.view: Any = None
        self.zoom = "detail"
        self.backward_runs = 0
        self.selected_node: int | None = None
        self.selected_module: str | None = None
        self._generation = 0
        self._cancel: threading.Event | None = None
        self._matches: list[int] = []
        self._match_at = -1
        self._tree_nodes: dict[str, TreeNode] = {}
        self._revealing: TreeNode | None = None
        self._diagnosed_graph: Any = None
        self._layout_seconds = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="graph-bar"):
            yield Input(placeholder="expression, FILE.py:FUNCTION or demo:NAME, then Enter",
                        id="graph-expr")
            yield Button("Example", id="graph-example", variant="primary")
        with Horizontal(id="graph-main"):
            with Vertical(id="graph-left"):
                yield Input(placeholder="search by name (Enter: next)", id="graph-search")
                yield Tree("graph", id="graph-tree")
            with Vertical(id="graph-center"):
                yield Static("", id="graph-banner")
                yield GraphCanvas(id="graph-canvas")
                yield Static("", id="graph-status")
            with VerticalScroll(id="graph-right"):
                yield Static("Select a node in the outline or the drawing to see its details.",
                             id="graph-details")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "tensorscope · Graph"
        tree = self.query_one("#graph-tree", Tree)
        tree.show_root = False
        tree.guide_depth = 2
        ctx = self.app.context
        canvas = self.query_one(GraphCanvas)
        if ctx.graph_roots:
            from tensorscope.graph_source import GraphSource

            names = dict(ctx.namespace or {})
            names.update(ctx.graph_roots)
            source = GraphSource(dict(ctx.graph_roots), ctx.model, None, names,
                                 title=", ".join(ctx.graph_roots))
            canvas.message = "Reading the graph…"
            self.query_one("#graph-expr", Input).value = ""
            self._load(source=source)
        else:
            canvas.message = EMPTY_MESSAGE
            self.query_one("#graph-expr", Input).focus()
        self._set_status()

    # -- loading ------------------------------------------------------------------------

    @on(Input.Submitted, "#graph-expr")
    def _expr_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self._load(target=event.value)

    @on(Button.Pressed, "#graph-example")
    def _example(self) -> None:
        self.query_one("#graph-expr", Input).value = EXAMPLE
        self._load(target=EXAMPLE)

    def action_reload(self) -> None:
        value = self.query_one("#graph-expr", Input).value
        if value.strip():
            self._load(target=value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph-load",
          description="reading the autograd graph")
    def _load(self, target: str | None = None, source: Any = None) -> None:
        from tensorscope.errors import UserError
        from tensorscope.graph_source import load_target

        from tensorscope.autograd import Cancelled

        cancel = _WorkerCancel(get_current_worker())
        try:
            if source is None:
                source = load_target(target, self.app.context.ensure_namespace())
            graph = source.graph(cancel=cancel)
        except Cancelled:
            return  # a newer target replaced this one
        except UserError as exc:
            self.post_message(self.LoadFailed(str(exc)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(self.GraphLoaded(graph, source, []))

    def _diagnose_once(self) -> None:
        """Start the saved-tensor diagnosis of the current graph, once, after its first frame."""
        if self.graph is not None and self._diagnosed_graph is not self.graph:
            self._diagnosed_graph = self.graph
            self._diagnose(self.graph)

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph-diagnose",
          description="reading saved tensors and their versions")
    def _diagnose(self, graph: Any) -> None:
        """Saved-tensor metadata for every node, after the first frame: in-place problems."""
        from tensorscope.autograd import Cancelled

        try:
            graph.load_saved(cancel=_WorkerCancel(get_current_worker()))
        except Cancelled:
            return
        problems = graph.inplace_problems()
        if not get_current_worker().is_cancelled:
            self.post_message(self.Diagnosed(graph, problems))

    class Diagnosed(Message):
        """Saved tensors were read: ``problems`` are in-place changes backward will trip on."""

        def __init__(self, graph: Any, problems: list) -> None:
            self.graph, self.problems = graph, problems
            super().__init__()

    @on(Diagnosed)
    def _diagnosed(self, event: "GraphScreen.Diagnosed") -> None:
        if event.graph is not self.graph:
            return
        if event.problems:
            lines = "\n".join(p.describe() for p in event.problems[:3])
            self._banner(f"⚠ in-place change to a saved tensor: {lines}", error=True)
        self._show_details()

    @on(LoadFailed)
    def _load_failed(self, event: LoadFailed) -> None:
        self._banner(event.text, error=True)
        if self.graph is None:
            self.query_one(GraphCanvas).message = EMPTY_MESSAGE

    @on(GraphLoaded)
    def _graph_loaded(self, event: GraphLoaded) -> None:
        from tensorscope.autograd import auto_expanded

        self.graph, self.source = event.graph, event.source
        self.backward_runs = 0
        self.selected_node = None
        self.selected_module = None
        self.expanded = auto_expanded(self.graph)
        self._banner("")
        self._diagnosed_graph = None  # diagnosis runs once the first frame is drawn
        self._build_tree()
        self._relayout()
        self._show_details()
        self.query_one("#graph-tree", Tree).focus()  # keys now act on the graph

    # -- layout -------------------------------------------------------------------------

    def _relayout(self) -> None:
        from tensorscope.autograd import build_view
        from tensorscope.export import INSTALL_DOT, dot_available

        if self.graph is None:
            return
        self.view = build_view(self.graph, self.expanded)
        canvas = self.query_one(GraphCanvas)
        if not dot_available():
            self._diagnose_once()
            canvas.show(None)
            canvas.message = ("graphviz's 'dot' program is missing, so the graph cannot be drawn.\n"
                              f"{INSTALL_DOT}\n\nThe outline on the left works without it.")
            self._set_status()
            return
        self._generation += 1
        if self._cancel is not None:
            self._cancel.set()  # the stale layout's dot is killed
        self._cancel = threading.Event()
        if canvas.layout_shown is None or len(self.view.nodes) > BIG_GRAPH:
            canvas.message = f"Laying out {len(self.view.nodes)} boxes…"
        self._layout_worker(self._generation, self.view, self.zoom, self._cancel)
        self._set_status()

    @work(thread=True, exclusive=True, exit_on_error=False, group="graph-layout",
          description="laying out the graph with dot")
    def _layout_worker(self, generation: int, view: Any, zoom: str, cancel: threading.Event) -> None:
        from tensorscope.autograd import Cancelled
        from tensorscope.errors import UserError
        from tensorscope.graph_layout import layout

        try:
            result = layout(self.graph, view, zoom, cancel)
        except Cancelled:
            return
        except UserError as exc:
            self.post_message(self.LoadFailed(str(exc)))
            return
        self.post_message(self.LayoutReady(generation, result))

    @on(LayoutReady)
    def _layout_ready(self, event: LayoutReady) -> None:
        if event.generation != self._generation:
            return  # a newer layout is on its way
        canvas = self.query_one(GraphCanvas)
        freed = frozenset(n.id for n in self.graph.nodes if n.freed)
        canvas.show(event.layout, freed)
        self._layout_seconds = event.layout.seconds
        self._diagnose_once()
        key = self._selected_key()
        canvas.selected = key
        if key:
            canvas.center_on(key)
        self._set_status()

    # -- outline ------------------------------------------------------------------------

    def _build_tree(self) -> None:
        tree = self.query_one("#graph-tree", Tree)
        tree.clear()
        self._tree_nodes = {}
        g = self.graph
        tree.root.set_label(Text(self.source.title or "graph"))
        self._members: dict[str | None, list[int]] = {}
        for n in g.nodes:
            self._members.setdefault(n.module, []).append(n.id)
        self._children: dict[str, list[str]] = {}
        for path in g.module_types:
            if path:
                parent = path.rpartition(".")[0] if "." in path else ""
                if parent not in g.module_types:
                    parent = None
                self._children.setdefault(parent, []).append(path)
        # Nodes under each module, sub-modules included (deepest paths first).
        self._counts: dict[str, int] = {p: len(self._members.get(p, [])) for p in g.module_types}
        for path in sorted(g.module_types, key=lambda p: -p.count(".") - (1 if p else 0)):
            if path:
                parent = path.rpartition(".")[0] if "." in path else ""
                if parent in self._counts:
                    self._counts[parent] += self._counts[path]
        self._fill(tree.root, None)
        tree.root.expand()

    def _fill(self, parent: TreeNode, module: str | None) -> None:
        """Add a module's direct children (sub-modules, then its nodes) under ``parent``."""
        g = self.graph
        kids = list(self._children.get(module, []))
        if module is None and "" in g.module_types:
            kids = [""]
        for path in kids:
            count = self._counts.get(path, 0)
            title = path or "(model)"
            nodes = f"{count} {plural(count, 'node')}"
            label = Text.assemble((title, "bold " + KIND_COLOURS["module"]),
                                  (f" {g.module_types.get(path, '')} · {nodes}", "dim"))
            node = parent.add(label, data=("module", path))
            self._tree_nodes[f"m:{path}"] = node
        for nid in self._members.get(module, []):
            n = g.nodes[nid]
            label = Text.assemble((f"#{n.id} ", "dim"), (n.label, KIND_COLOURS.get(n.kind, "")))
            if n.kind == "leaf" and n.tensor is not None:
                label.append(f" {shape_text(n.tensor)}", "dim")
            node = parent.add_leaf(label, data=("node", nid))
            self._tree_nodes[f"n{nid}"] = node

    @on(Tree.NodeExpanded, "#graph-tree")
    def _tree_expanded(self, event: Tree.NodeExpanded) -> None:
        data = event.node.data
        if data and data[0] == "module" and not event.node.children:
            self._fill(event.node, data[1])

    @on(Tree.NodeHighlighted, "#graph-tree")
    def _tree_highlighted(self, event: Tree.NodeHighlighted) -> None:
        data = event.node.data
        if self._revealing is not None:
            if event.node is not self._revealing:
                return
            self._revealing = None
            return  # the selection was already made by whoever asked to reveal it
        if not data:
            return
        if data[0] == "node":
            self._select(node_id=data[1], from_tree=True)
        else:
            self._select(module=data[1], from_tree=True)

    def _reveal(self, key: str) -> None:
        """Open the outline down to ``key`` and put the cursor on it."""
        tree = self.query_one("#graph-tree", Tree)
        if key not in self._tree_nodes and key.startswith("n"):
            module = self.graph.nodes[int(key[1:])].module
            chain: list[str] = []
            path = module
            while path is not None:
                chain.append(path)
                path = (path.rpartition(".")[0] if "." in path else ("" if path else None))
                if path is not None and path not in self.graph.module_types:
                    path = None
            for p in reversed(chain):
                node = self._tree_nodes.get(f"m:{p}")
                if node is not None and not node.is_expanded:
                    node.expand()
                    if not node.children:
                        self._fill(node, p)
        node = self._tree_nodes.get(key)
        if node is not None:
            # Expanding shifts lines; the tree knows the new ones after a refresh. Until the
            # target is highlighted, highlights of rows passing under the cursor are ignored.
            self._revealing = node

            def move() -> None:
                if tree.cursor_node is node:
                    self._revealing = None  # no highlight event will come
                else:
                    tree.move_cursor(node)

            self.call_after_refresh(move)

    # -- selection ----------------------------------------------------------------------

    def _selected_key(self) -> str | None:
        if self.view is None:
            return None
        if self.selected_node is not None:
            return self.view.member.get(self.selected_node)
        if self.selected_module is not None:
            from tensorscope.autograd import group_of

            grp = group_of(self.selected_module, self.view.expanded)
            return f"m:{grp}" if grp is not None else None
        return None

    def _select(self, node_id: int | None = None, module: str | None = None,
                from_tree: bool = False) -> None:
        self.selected_node, self.selected_module = node_id, module
        canvas = self.query_one(GraphCanvas)
        key = self._selected_key()
        canvas.selected = key
        if key:
            canvas.center_on(key)
        if not from_tree:
            self._reveal(f"n{node_id}" if node_id is not None else f"m:{module}")
        self._show_details()

    @on(GraphCanvas.BoxClicked)
    def _box_clicked(self, event: GraphCanvas.BoxClicked) -> None:
        if event.key.startswith("m:"):
            self._select(module=event.key[2:])
        else:
            self._select(node_id=int(event.key[1:]))

    @on(Input.Submitted, "#graph-search")
    def _search(self, event: Input.Submitted) -> None:
        if self.graph is None or not event.value.strip():
            return
        found = [n.id for n in self.graph.find(event.value.strip())]
        if found != self._matches:
            self._matches, self._match_at = found, -1
        if not found:
            self.notify(f"no node matches '{event.value}'", severity="warning", markup=False)
            return
        self._match_at = (self._match_at + 1) % len(found)
        self._select(node_id=found[self._match_at])
        self._set_status(f"match {self._match_at + 1} of {len(found)}")

    def action_search(self) -> None:
        self.query_one("#graph-search", Input).focus()

    # -- collapse / expand / zoom -------------------------------------------------------

    def _current_module(self) -> str | None:
        if self.selected_module is not None:
            return self.selected_module
        if self.selected_node is not None and self.graph is not None:
            return self.graph.nodes[self.selected_node].module
        return None

    def action_expand(self) -> None:
        """Open the selected module box (and its parents) into its parts."""
        if self.graph is None:
            return
        key = self._selected_key()
        if key is None or not key.startswith("m:"):
            self.notify("select a module box to expand it", severity="warning")
            return
        path = key[2:]
        opened = {path}
        while path:
            path = path.rpartition(".")[0] if "." in path else ""
            opened.add(path)
        self.expanded = self.expanded | opened
        self._relayout()

    def action_collapse(self) -> None:
        """Fold the module of the selected node (or the selected module) into one box."""
        module = self._current_module()
        if self.graph is None or module is None:
            self.notify("select a node that belongs to a module to collapse it",
                        severity="warning")
            return
        key = self._selected_key()
        if key == f"m:{module}" and module:  # already folded: fold its parent
            module = module.rpartition(".")[0] if "." in module else ""
        self.expanded = frozenset(p for p in self.expanded
                                  if not (p == module or p.startswith(module + ".") or module == ""))
        self.selected_node, self.selected_module = None, module
        self._relayout()
        self._show_details()

    def action_zoom(self) -> None:
        self.zoom = ZOOMS[(ZOOMS.index(self.zoom) + 1) % len(ZOOMS)]
        self._relayout()

    # -- backward -----------------------------------------------------------------------

    def action_backward(self, retain: bool) -> None:
        """Run backward from the first root; show where gradients arrived, or why not."""
        import torch

        if self.graph is None:
            self.notify("no graph yet: type an expression or press Example", severity="warning")
            return
        roots = [n for n in self.graph.nodes if n.kind == "root"]
        if not roots:
            self._banner("This graph is a lone leaf: there is nothing to backpropagate through.",
                         error=True)
            return
        # The selected root, else the first one.
        root = next((n for n in roots if n.id == self.selected_node), roots[0])
        t = root.tensor
        leaves = self.graph.leaves()
        before = {n.id: (n.tensor.grad.detach().clone() if n.tensor.grad is not None else None)
                  for n in leaves[:64]}
        gradient = None if t.dim() == 0 else torch.ones_like(t)
        try:
            t.backward(gradient=gradient, retain_graph=retain)
        except RuntimeError as exc:
            self._banner(self._explain(exc), error=True)
            self.graph.refresh()
            self._show_details()
            return
        self.backward_runs += 1
        self.graph.refresh()
        self.graph.load_saved()
        how = "with retain_graph=True" if retain else "without retain_graph"
        seed = f"{root.label}.backward()" if gradient is None else \
            f"{root.label}.backward(torch.ones_like({root.label}))"
        parts = [f"backward #{self.backward_runs} ({seed} {how}): "
                 f"gradients reached {sum(1 for n in leaves if n.tensor.grad is not None)} leaves."]
        changed = [(n, before.get(n.id)) for n in leaves[:64] if n.tensor.grad is not None]
        if self.backward_runs > 1 and changed:
            n, old = changed[0]
            if old is not None:
                parts.append(f"{n.label}.grad accumulated: norm {old.norm():.4g} → "
                             f"{n.tensor.grad.norm():.4g} (backward adds into .grad; "
                             "call zero_grad() between steps).")
        if not retain:
            parts.append("The graph's saved tensors are now freed: another backward will fail "
                         "(press b to see PyTorch's error).")
        else:
            parts.append("The graph was kept (retain_graph=True): press r or b again to "
                         "see the gradients accumulate.")
        self._banner(" ".join(parts), error=False)
        self._relayout()
        self._show_details()

    @staticmethod
    def _explain(exc: RuntimeError) -> str:
        from tensorscope.errors import one_line

        text = one_line(exc).split(" Hint:")[0]
        if "second time" in text:
            why = ("Why: the previous backward ran without retain_graph=True, so autograd freed "
                   "the tensors each node saved. Rerun the forward (ctrl+r) to build a new "
                   "graph, or use retain_graph=True (r) on every backward but the last.")
        elif "inplace operation" in text:
            why = ("Why: an in-place op changed a tensor after a node saved it for backward; "
                   "the node's formula would use the wrong values. Use the out-of-place op "
                   "(x = x + 1, not x += 1) or clone() before modifying.")
        else:
            why = "PyTorch refused to run backward on this graph."
        return f"PyTorch raised {text}\n{why}"

    # -- export -------------------------------------------------------------------------

    def action_export(self) -> None:
        """Write the current view to a file in the working directory (SVG, or DOT without dot)."""
        from tensorscope.errors import UserError
        from tensorscope.export import dot_available, export

        if self.graph is None:
            self.notify("nothing to export yet", severity="warning")
            return
        fmt = "svg" if dot_available() else "dot"
        try:
            data = export(self.graph, fmt, collapse="modules" if self.graph.module_types else "none",
                          expanded=self.expanded)
            path = _new_file(Path.cwd(), "tensorscope-graph", fmt)
            with path.open("xb") as handle:  # never over an earlier export (or anything else)
                handle.write(data)
        except (UserError, OSError) as exc:
            self.notify(f"export failed: {exc}", severity="error", markup=False)
            return
        self.notify(f"exported the current view to {path}", title="Export", markup=False)

    # -- text ---------------------------------------------------------------------------

    def _banner(self, text: str, error: bool = False) -> None:
        banner = self.query_one("#graph-banner", Static)
        banner.set_classes("-error" if (text and error) else "-info" if text else "")
        banner.update(Text(text))

    def _set_status(self, extra: str = "") -> None:
        g = self.graph
        if g is None:
            text = "no graph"
        else:
            shown = len(self.view.nodes) if self.view is not None else 0
            leaves = sum(1 for n in g.nodes if n.kind == "leaf")
            how = {"recorded": "modules recorded", "parameters": "modules by parameters"}
            parts = [f"{len(g.nodes)} {plural(len(g.nodes), 'node')}",
                     f"{leaves} {plural(leaves, 'leaf', 'leaves')}",
                     f"{shown} {plural(shown, 'box', 'boxes')}", self.zoom]
            if g.attribution in how:
                parts.append(how[g.attribution])
            if any(n.freed for n in g.nodes):
                parts.append("graph freed")
            if self.backward_runs:
                parts.append(f"backward ×{self.backward_runs}")
            text = " · ".join(parts)
        if extra:
            text = f"{text} · {extra}"
        self.query_one("#graph-status", Static).update(text)

    def _show_details(self) -> None:
        details = self.query_one("#graph-details", Static)
        g = self.graph
        if g is None:
            details.update("Select a node in the outline or the drawing to see its details.")
            return
        if self.selected_node is None:
            if self.selected_module is not None:
                details.update(self._module_details(self.selected_module))
            else:
                details.update(Text(f"{len(g.nodes)} nodes. Select one in the outline or click a "
                                    "box.\n\nKeys: b backward · r backward(retain_graph=True) · "
                                    "+/- expand/collapse a module · z zoom · x export · / search"))
            return
        details.update(node_details(g, g.nodes[self.selected_node]))

    def _module_details(self, path: str) -> Text:
        g = self.graph
        cls = g.module_types.get(path, "Module")
        inside = [n for n in g.nodes if n.module is not None and
                  (n.module == path or n.module.startswith(path + ".") or path == "")]
        text = Text()
        text.append(path or "(model)", "bold " + KIND_COLOURS["module"])
        text.append(f"  {cls}\n\n")
        text.append(f"{len(inside)} {plural(len(inside), 'node')} made by this module's forward\n")
        text.append(f"{sum(1 for n in inside if n.kind == 'leaf')} parameters\n\n")
        folded = self._selected_key() == f"m:{path}"
        text.append("Press + to expand it." if folded else "Press - to fold it into one box.",
                    "italic")
        return text

    def on_screen_resume(self) -> None:
        self._set_status()


class _WorkerCancel:
    """A cancel event for core's long walks that is set once the worker is cancelled
    (an exclusive worker is cancelled when a newer one of its group starts)."""

    def __init__(self, worker: Any) -> None:
        self._worker = worker

    def is_set(self) -> bool:
        return self._worker.is_cancelled


def node_details(graph: Any, node: Any) -> Table:
    """A node's facts, saved tensors, hooks and gradient, for the details panel."""
    from tensorscope.autograd import node_hooks, node_saved, shape_text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    title = Text(node.label, style="bold " + KIND_COLOURS.get(node.kind, ""))
    grid.add_row("node", Text.assemble(title, (f"  #{node.id} · {node.kind}", "dim")))
    if node.label != node.name:
        grid.add_row("op", node.name)
    if node.module is not None:
        grid.add_row("module", f"{node.module or '(model)'} ({graph.module_types.get(node.module, '')})")
    if node.seq is not None:
        # The raw sequence number depends on everything the thread ran before; its rank
        # among this graph's ops is the stable fact (the order the forward created them).
        order = getattr(graph, "_creation_order", None)
        if order is None:
            seqs = sorted(n.seq for n in graph.nodes if n.seq is not None)
            order = {seq: i + 1 for i, seq in enumerate(seqs)}
            graph._creation_order = order
        grid.add_row("created", f"op {order[node.seq]} of {len(order)} in forward order")
    ins = graph.inputs_of(node.id)
    if ins:
        grid.add_row("inputs", Text("\n".join(
            f"{e.slot}: #{e.src} {graph.nodes[e.src].label}" for e in sorted(ins, key=lambda e: e.slot))))
    t = node.tensor
    if t is not None:
        grid.add_row("tensor", f"{shape_text(t)} {str(t.dtype).removeprefix('torch.')} "
                               f"requires_grad={t.requires_grad}")
        grid.add_row("layout", _layout_text(t))
        grid.add_row("version", str(t._version))
        if node.kind == "leaf":
            grid.add_row(".grad", _grad_text(t))
    hooks = node_hooks(node)
    if node.tensor is not None or hooks:
        grid.add_row("hooks", "\n".join(hooks) if hooks else "none")
    saved = node_saved(node)
    if node.freed:
        grid.add_row("graph", Text("freed by backward(): the saved tensors are gone", "bold red"))
    if saved:
        grid.add_row("", "")
        grid.add_row(Text("saved", style="bold"), Text("tensors kept for the gradient formula", "dim"))
        for s in saved:
            if s.state == "freed":
                grid.add_row(s.name, Text("freed", "red"))
                continue
            if s.state == "undefined":
                grid.add_row(s.name, Text("None", "dim"))
                continue
            size = human_bytes(s.nbytes) if s.nbytes is not None else "?"
            body = Text(f"{'×'.join(map(str, s.shape)) or 'scalar'} {s.dtype} · {size}\n")
            ver = f"version {s.version_saved} at save, {s.version_now} now"
            body.append(ver, "red bold" if s.state == "modified" else "green")
            if s.state == "modified":
                body.append(f"\nbackward will raise: {s.error}", "red")
            if s.tensor is not None:
                body.append("\n" + _layout_text(s.tensor), "dim")
            grid.add_row(s.name, body)
    if node.attrs:
        grid.add_row("", "")
        grid.add_row(Text("values", style="bold"), Text("non-tensor values it saved", "dim"))
        for k, v in node.attrs.items():
            grid.add_row(k, escape(v))
    return grid


def _layout_text(t: Any) -> str:
    """stride, storage offset and contiguity (core/storage.py's layout_of when available)."""
    try:
        from tensorscope.storage import layout_of  # core/storage.py's TensorLayout

        lay = layout_of(t)
        parts = [f"stride {tuple(lay.strides)}", f"offset {lay.storage_offset}",
                 "contiguous" if lay.is_contiguous else "not contiguous"]
        if lay.is_view:
            parts.append("a view")
        if lay.expanded_dims:
            parts.append(f"expanded dims {tuple(lay.expanded_dims)}")
        parts.append(f"storage of {lay.storage_size}")
        return " · ".join(parts)
    except Exception:  # storage.py absent, or a tensor it does not describe: our own line
        pass
    contiguous = "contiguous" if t.is_contiguous() else "not contiguous"
    return f"stride {tuple(t.stride())} · offset {t.storage_offset()} · {contiguous}"


def _grad_text(t: Any) -> Text:
    g = t.grad
    if g is None:
        return Text("None (no backward has reached it yet)", "dim")
    flat = g.detach().reshape(-1)
    shown = ", ".join(f"{v:.4g}" for v in flat[:6].tolist())
    more = "…" if flat.numel() > 6 else ""
    return Text(f"[{shown}{more}]\nnorm {g.norm():.4g}", "green")


def _new_file(folder: Path, stem: str, suffix: str) -> Path:
    """``stem.suffix`` in ``folder``, or ``stem-2.suffix``, ``stem-3.suffix``... : the first
    name not taken yet, so each export keeps the ones before it."""
    path = folder / f"{stem}.{suffix}"
    number = 2
    while path.exists():
        path = folder / f"{stem}-{number}.{suffix}"
        number += 1
    return path
