"""The Inspect screen: what a checkpoint file holds, key by key, and how two files differ.

Left, the tree of keys (a state_dict's dotted keys grouped by module). Right, tabs: the
selected key (shape, dtype, saved-from device, storage, layout, the other keys sharing its
storage), a map of that storage cell by cell (the Storage screen's strip), the optimizer's
state per parameter, metadata and totals, TorchScript code, and a
diff when two files are open. Files come from ``app.context.checkpoints`` or from the path
input at the top; loading runs in a worker and errors show under the input.
"""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane, Tree

from tensorscope.app import inspect_report as report
from tensorscope.app.quantities import plural
from tensorscope.app.widgets.storage_strip import StorageStrip, StripSource, StripView

#: Legend colours of the keys drawn against one storage (the Storage screen's palette).
COLOURS = ("#5fafff", "#ffaf5f", "#5fd787", "#ff5f87", "#af87ff", "#ffd75f", "#5fd7d7", "#d787d7")

INTRO = """\
[b]Inspect[/b] shows what a checkpoint file holds: every key of a [b]torch.save[/b] file \
(state_dict, model + optimizer + metadata, nested containers) or a [b]TorchScript[/b] archive, \
each tensor's shape, dtype, the device it was saved from, its bytes and its storage — keys that \
share one storage (tied weights) are marked — the optimizer's state per parameter, metadata \
such as epoch and loss, totals by dtype and module, and TorchScript code.

Loading is safe: [b]weights_only=True[/b], [b]map_location=cpu[/b] (a CUDA checkpoint opens \
here), memory-mapped where the format allows. A file whose pickle could run code is refused.

Type a path above and press Enter (two paths compare them), or start from the shell:
  [b]tensorscope inspect FILE --tui[/b]          this screen, on FILE
  [b]tensorscope inspect A.pt B.pt --tui[/b]     what changed from A to B
  [b]tensorscope inspect FILE[/b] [--json]       the same report in the terminal
"""


@dataclass
class _Opened:
    ckpts: list[Any]
    diff: Any | None


class InspectScreen(Screen):
    """A checkpoint explorer: tree of keys on the left, what the selection means on the right."""

    BINDINGS = [
        Binding("ctrl+o", "focus_path", "Open file"),
        Binding("ctrl+t", "focus_tree", "Keys"),
    ]

    DEFAULT_CSS = """
    InspectScreen #inspect-top { height: auto; padding: 0 1; }
    InspectScreen #inspect-path { width: 1fr; }
    InspectScreen #inspect-status { height: auto; padding: 0 1; color: $text-muted; }
    InspectScreen #inspect-error { height: auto; padding: 0 1; }
    InspectScreen #inspect-body { height: 1fr; }
    /* 56 columns on a wide terminal; on an 80-column one the Selected pane beside it
       needs 40 to show its values at all. */
    InspectScreen #inspect-tree { width: 45%; max-width: 56; min-width: 30; border: round $primary-darken-2;
                                  border-title-color: $accent; }
    InspectScreen #inspect-tree:focus { border: round $accent; }
    InspectScreen TabbedContent { width: 1fr; }
    InspectScreen .pane-scroll { height: 1fr; padding: 0 1; }
    InspectScreen .pane-scroll > Static { width: 100%; }
    InspectScreen #inspect-intro { padding: 1 2; }
    InspectScreen #inspect-strip-legend { height: auto; padding: 0 1 1 1; }
    InspectScreen #inspect-strip { height: 1fr; }
    """

    class Opened(Message):
        """One or two files finished loading (a diff is ready when there are two)."""

        def __init__(self, result: _Opened, paths: list[str]) -> None:
            super().__init__()
            self.result = result
            self.paths = paths

    class Failed(Message):
        """Loading failed; ``text`` is the one-line reason."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self) -> None:
        super().__init__()
        self.ckpts: list[Any] = []
        self.diff: Any | None = None
        self._diff_rows: dict[str, Any] = {}
        self._shared: set[str] = set()
        self._optimizer_keys: list[str] = []
        self._expand_all = False
        self._populated: set[int] = set()
        self._selected: Any | None = None
        # Set to drop a diff still being computed (a new file was asked for, or we left).
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="inspect-top"):
            yield Input(placeholder="path to a checkpoint (two paths: compare them) — Enter opens",
                        id="inspect-path")
        yield Static("", id="inspect-error", classes="error-line")
        yield Static("", id="inspect-status")
        with Horizontal(id="inspect-body"):
            tree: Tree[Any] = Tree("no file open yet", id="inspect-tree")
            tree.border_title = "keys"
            tree.show_root = True
            yield tree
            with TabbedContent(id="inspect-tabs"):
                with TabPane("Selected", id="tab-selected"):
                    with VerticalScroll(classes="pane-scroll"):
                        yield Static(INTRO, id="inspect-intro")
                        yield Static("", id="inspect-detail")
                with TabPane("Storage map", id="tab-strip"):
                    with Vertical():
                        yield Static("", id="inspect-strip-legend")
                        yield StorageStrip(id="inspect-strip")
                with TabPane("Optimizer", id="tab-optimizer"):
                    with VerticalScroll(classes="pane-scroll"):
                        yield Static("", id="inspect-optimizer")
                with TabPane("Metadata & totals", id="tab-totals"):
                    with VerticalScroll(classes="pane-scroll"):
                        yield Static("", id="inspect-totals")
                with TabPane("Diff", id="tab-diff"):
                    with VerticalScroll(classes="pane-scroll"):
                        yield Static("", id="inspect-diff")
                with TabPane("Code", id="tab-code"):
                    with VerticalScroll(classes="pane-scroll"):
                        yield Static("", id="inspect-code")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "tensorscope · Inspect"
        self._show_error("")
        self._show_status("")
        tabs = self.query_one(TabbedContent)
        for pane in ("tab-strip", "tab-optimizer", "tab-totals", "tab-diff", "tab-code"):
            tabs.hide_tab(pane)
        paths = list(getattr(self.app.context, "checkpoints", []) or [])
        if paths:
            self.query_one("#inspect-path", Input).value = " ".join(shlex.quote(p) for p in paths)
            self._open(paths[:2])
        else:
            self.query_one("#inspect-path", Input).focus()

    # -- loading ---------------------------------------------------------------------------

    @on(Input.Submitted, "#inspect-path")
    def _submitted(self, event: Input.Submitted) -> None:
        try:
            paths = shlex.split(event.value)
        except ValueError as exc:
            self._show_error(f"cannot read that path: {exc}")
            return
        if not paths:
            self._show_error("type the path of a checkpoint file")
            return
        if len(paths) > 2:
            self._show_error("one path to inspect, or two to compare — not more")
            return
        self._open(paths)

    def _open(self, paths: list[str]) -> None:
        self._show_error("")
        self._show_status(Text(f"loading {' and '.join(paths)} …", style="italic"))
        self._cancel.set()
        self._cancel = threading.Event()
        self._load(paths, bool(getattr(self.app.context, "trust_checkpoints", False)), self._cancel)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect-load",
          description="loading checkpoint")
    def _load(self, paths: list[str], trust: bool, cancel: threading.Event) -> None:
        from tensorscope.checkpoint import open_checkpoint
        from tensorscope.ckpt_diff import diff_checkpoints
        from tensorscope.errors import UserError

        try:
            ckpts = [open_checkpoint(p, trust=trust) for p in paths]
            diff = diff_checkpoints(ckpts[0], ckpts[1], cancel) if len(ckpts) == 2 else None
        except UserError as exc:
            self.post_message(self.Failed(str(exc)))
            return
        except InterruptedError:  # superseded by a newer request: nothing to show
            return
        self.post_message(self.Opened(_Opened(ckpts, diff), paths))

    @on(Failed)
    def _failed(self, event: Failed) -> None:
        self._show_status("" if not self.ckpts else self._status_text())
        text = event.text
        if "--trust" in text:
            text += " — from the shell: tensorscope inspect FILE --trust --tui"
        self._show_error(text)

    def _show_status(self, content: Any) -> None:
        status = self.query_one("#inspect-status", Static)
        status.update(content)
        status.display = bool(content)

    def _status_text(self) -> Any:
        if self.diff is not None:
            return report.diff_summary(self.diff)
        return report.header(self.ckpts[0])

    def _show_error(self, text: str) -> None:
        error = self.query_one("#inspect-error", Static)
        error.update(text)
        error.display = bool(text)

    @on(Opened)
    def _opened(self, event: Opened) -> None:
        self.ckpts, self.diff = event.result.ckpts, event.result.diff
        self._diff_rows = {r.key: r for r in self.diff.rows} if self.diff else {}
        ckpt = self.ckpts[0]
        with self.app.batch_update():
            self.query_one("#inspect-intro", Static).display = False
            self._show_status(self._status_text())
            self._fill_tree(ckpt)
            self._fill_tabs(ckpt)
            self._show_node(self.query_one("#inspect-tree", Tree).root.data)
        self.query_one("#inspect-tree", Tree).focus()

    # -- drawing ---------------------------------------------------------------------------

    def _fill_tree(self, ckpt: Any) -> None:
        tree: Tree[Any] = self.query_one("#inspect-tree", Tree)
        tree.clear()
        tree.border_title = "keys of A (tree marks the diff)" if self.diff else "keys"
        tree.root.set_label(Text(ckpt.root.name, style="bold"))
        tree.root.data = ckpt.root
        self._shared = {s.id for s in ckpt.storages if len(s.keys) > 1}
        self._optimizer_keys = [o.key for o in ckpt.optimizers]
        # Small files open fully; big ones only their top level. Branches get their children
        # when first opened, so a 20k-key file costs what is on screen, not the whole tree.
        self._expand_all = sum(1 for _ in ckpt.root.walk()) <= 300
        self._populated: set[int] = set()
        self._populate(tree.root)
        tree.root.expand()
        tree.move_cursor(tree.root)

    def _opens_at_start(self, node: Any) -> bool:
        # An optimizer's insides (numbered state, hyperparameters) start folded: the
        # Optimizer tab shows them better.
        if any(o == "" or node.key.startswith(o + ".") for o in self._optimizer_keys):
            return False
        return self._expand_all or node.key.count(".") < 1

    def _populate(self, start: Any) -> None:
        """Add the children of ``start`` (and of those that open at start), iteratively."""
        ckpt = self.ckpts[0]
        stack = [start]
        while stack:
            branch = stack.pop()
            if id(branch) in self._populated:
                continue
            self._populated.add(id(branch))
            for node in branch.data.children:
                label = self._label(ckpt, node, self._shared)
                if node.children:
                    child = branch.add(label, data=node, allow_expand=True)
                    if self._opens_at_start(node):
                        stack.append(child)
                        child.expand()
                else:
                    branch.add_leaf(label, data=node)

    @on(Tree.NodeExpanded, "#inspect-tree")
    def _expanded(self, event: Tree.NodeExpanded) -> None:
        if event.node.data is not None and self.ckpts and id(event.node) not in self._populated:
            self._populate_one(event.node)

    def _populate_one(self, branch: Any) -> None:
        ckpt = self.ckpts[0]
        self._populated.add(id(branch))
        for node in branch.data.children:
            label = self._label(ckpt, node, self._shared)
            if node.children:
                branch.add(label, data=node, allow_expand=True)
            else:
                branch.add_leaf(label, data=node)

    def _label(self, ckpt: Any, node: Any, shared: set[str]) -> Text:
        text = Text(node.name, style="bold" if node.kind == "tensor" else "")
        if node.kind == "tensor":
            entry = ckpt.tensors[node.tensor]
            # Shape before dtype: the tree is cut at its right edge on a narrow terminal,
            # and a cut shape ("[32, 1" for [32, 16]) reads as a wrong one.
            text.append(f"  {report.shape_text(entry.shape)} {entry.dtype}", style="cyan")
            if entry.storage in shared:
                text.append(f"  ⇄{entry.storage}", style="yellow")
            row = self._diff_rows.get(node.key)
            if row is not None and row.status != "same":
                label, style = report.STATUS_STYLE[row.status]
                if row.status == "changed":
                    label = f"Δ {report.percent(row.rel_change)}"
                text.append(f"  {label}", style=style)
        elif node.kind == "value":
            text.append(f" = {node.summary}", style="green")
        else:
            text.append(f"  {node.summary}", style="dim")
        return text

    def _fill_tabs(self, ckpt: Any) -> None:
        tabs = self.query_one(TabbedContent)
        optimizer = report.optimizer_tables(ckpt, limit=300)
        self.query_one("#inspect-optimizer", Static).update(Group(*optimizer) if optimizer else "")
        (tabs.show_tab if optimizer else tabs.hide_tab)("tab-optimizer")
        parts = [p for p in (report.metadata_table(ckpt), report.shared_table(ckpt)) if p is not None]
        parts += report.totals_tables(ckpt)
        self.query_one("#inspect-totals", Static).update(Group(*parts))
        tabs.show_tab("tab-totals")
        (tabs.show_tab if ckpt.storages else tabs.hide_tab)("tab-strip")
        if self.diff is not None:
            diff_parts: list[Any] = [report.diff_table(self.diff, limit=500)]
            meta = report.diff_metadata_table(self.diff)
            if meta is not None:
                diff_parts.append(meta)
            self.query_one("#inspect-diff", Static).update(Group(*diff_parts))
            tabs.show_tab("tab-diff")
            tabs.active = "tab-diff"
        else:
            tabs.hide_tab("tab-diff")
            tabs.active = "tab-selected"
        if ckpt.code:
            self.query_one("#inspect-code", Static).update(Group(*report.code_renderables(ckpt)))
            tabs.show_tab("tab-code")
        else:
            tabs.hide_tab("tab-code")

    @on(Tree.NodeHighlighted, "#inspect-tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None and self.ckpts:
            self._show_node(event.node.data)

    @on(Tree.NodeSelected, "#inspect-tree")
    def _selected(self, event: Tree.NodeSelected) -> None:
        if self.diff is not None and event.node.data is not None:
            self.query_one(TabbedContent).active = "tab-selected"

    def _show_node(self, node: Any) -> None:
        from tensorscope.app.inspect_detail import node_detail

        self._selected = node
        self.query_one("#inspect-detail", Static).update(
            node_detail(self.ckpts[0], node, self._diff_rows.get(node.key)))
        if self.query_one(TabbedContent).active == "tab-strip":
            self._draw_strip()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-strip":
            self._draw_strip()

    def _draw_strip(self) -> None:
        """The selected tensor's storage, cell by cell, with every key that views it marked."""
        legend = self.query_one("#inspect-strip-legend", Static)
        strip = self.query_one("#inspect-strip", StorageStrip)
        node = self._selected
        ckpt = self.ckpts[0] if self.ckpts else None
        entry = ckpt.tensors[node.tensor] if ckpt and node is not None and node.tensor is not None else None
        storage = ckpt.storage(entry.storage) if entry is not None else None
        value = ckpt.values.get(entry.key) if entry is not None else None
        if entry is None or storage is None or value is None or value.element_size() == 0:
            legend.update(Text("Select a tensor in the tree: its storage is drawn here, cell by cell, "
                               "with every key that views it marked.", style="dim"))
            strip.show(None)
            return
        keys = [k for k in storage.keys if ckpt.values[k].element_size() == value.element_size()]
        colours = {k: COLOURS[i % len(COLOURS)] for i, k in enumerate(keys)}
        text = Text()
        text.append(f"storage {storage.id}", style="bold")
        cells = storage.bytes // value.element_size()
        text.append(f" · {cells:,} {plural(cells, 'cell')} of {entry.dtype} · "
                    f"saved on {storage.device} · rows: cell number, value, one mark per key\n")
        for k in keys:
            text.append("▀ ", style=colours[k])
            text.append(k + "  ", style="bold" if k == entry.key else "")
        legend.update(text)
        views = [StripView(k, colours[k], ckpt.values[k]) for k in keys]
        strip.show(StripSource(storage.bytes // value.element_size(), value, views, selected=entry.key))
        strip.set_highlight(entry.offset)

    def on_unmount(self) -> None:
        self._cancel.set()

    def action_focus_path(self) -> None:
        self.query_one("#inspect-path", Input).focus()

    def action_focus_tree(self) -> None:
        self.query_one("#inspect-tree", Tree).focus()
