"""The Storage screen: tensors as views over flat storage, explored from a small console.

Statements typed in the console run in the app's shared namespace. Every tensor in it is
listed, grouped by the storage it reads; the selected one is drawn as its logical grid next
to its storage strip, where every view of the same storage marks the cells it reads in its
legend colour. Selecting an element lights its storage cell and spells out
``offset + Σ iₖ·strideₖ``. After each statement everything is redrawn, so a write through
one view shows up in every view that shares the cells. A ``view()`` torch refuses is
explained next to its fixes.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, OptionList, RichLog, Static
from textual.widgets.option_list import Option

from tensorscope.app.quantities import human_bytes, plural
from tensorscope.app.widgets.console_input import ConsoleInput
from tensorscope.app.widgets.steady_footer import SteadyFooter
from tensorscope.app.widgets.storage_strip import StorageStrip, StripSource, StripView
from tensorscope.app.widgets.tensor_grid import GridSource, TensorGrid

# Legend colours, one per view of a storage (in the order the views are listed).
COLOURS = ("#5fafff", "#ffaf5f", "#5fd787", "#ff5f87", "#af87ff", "#ffd75f", "#5fd7d7", "#d787d7")

OVERLAP_LIMIT = 250_000
"""The legend counts shared cells between views up to this many elements each."""

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("x = torch.arange(12.).reshape(3, 4)", "twelve numbers in one storage, seen as 3 rows of 4"),
    ("t = x.T", "the transpose: same storage, strides swapped, no copy"),
    ("col = x[:, 1]", "one column: starts at cell 1 and steps 4 cells at a time"),
    ("col[0] = 99", "write through the column: x and t see it too"),
    ("flat = t.view(12)", "torch refuses: t's rows are not adjacent in storage"),
    ("flat = t.reshape(12)", "the fix: reshape copies into a new storage"),
    ("big = torch.zeros(10_000, 10_000)", "1e8 elements: only the cells on screen are read"),
)

WELCOME = (
    "Every tensor is a window onto a flat block of memory, its storage: element (i, j, …) "
    "reads cell offset + i·stride₀ + j·stride₁ + ….  Views such as a transpose, a slice "
    "or expand() share the storage and only change shape, strides and offset.\n\n"
    "Type a statement in the console below (torch, nn and F are in scope), or press Tab to reach "
    "the examples and Enter to run one. Each tensor you make is drawn as its logical grid beside its "
    "storage strip; arrow keys or a click pick an element and light the cell it reads."
)


CONSOLE_PLACEHOLDER = ("a statement, e.g.  x = torch.arange(12.).reshape(3, 4)   "
                       "(Enter runs it · ↑↓ history · → completes an example)")

FOREGROUND_S = 0.5
"""A console statement over within this long shows its outcome at once; a longer one goes
on in the background with the UI responsive (and ctrl+c to interrupt it)."""


class _Statement(threading.Thread):
    """One console statement, run on a daemon thread (a statement that never ends must
    not keep the app from quitting)."""

    def __init__(self, source: str, context: Any) -> None:
        super().__init__(name="tensorscope-console", daemon=True)
        self.source = source
        self.context = context
        """The app's context: its namespace, and the console's grad mode (handed on)."""
        self.namespace = context.ensure_namespace()
        self.before = {name: id(value) for name, value in self.namespace.items()}
        self.result: Any = None
        self.error: Exception | None = None
        self.interrupted = False
        self._in_statement = False
        """True only while the user's code runs: an interrupt outside it would land in
        this thread's own bookkeeping."""

    def run(self) -> None:
        import torch

        from tensorscope.errors import UserError
        from tensorscope.evaluate import execute

        # Grad mode is per thread: the statement gets the console's and hands on the mode
        # it leaves (however it ends), and the thread that runs it (the UI thread, for the
        # command line's statements) keeps its own.
        own = torch.is_grad_enabled()
        torch.set_grad_enabled(self.context.console_grad_enabled)
        try:
            try:
                self._in_statement = True
                self.result = execute(self.source, self.namespace)
            finally:
                self._in_statement = False
                self.context.console_grad_enabled = torch.is_grad_enabled()
                torch.set_grad_enabled(own)
        except UserError as exc:
            self.error = exc
        except KeyboardInterrupt:
            self.interrupted = True
        except BaseException as exc:  # execute() turns the user's errors into UserError
            self.error = exc

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in the statement at its next Python instruction."""
        if self.ident is not None and self._in_statement:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident),
                                                       ctypes.py_object(KeyboardInterrupt))


class StorageScreen(Screen):
    """Tensors, their storage, and the arithmetic in between."""

    DEFAULT_CSS = """
    StorageScreen #storage-main { height: 1fr; }
    StorageScreen #sidebar { width: 30%; max-width: 34; min-width: 24; border: round $primary-darken-2;
                             border-title-color: $accent; }
    StorageScreen #tensor-list { border: none; height: 1fr; background: $surface;
                                 text-wrap: nowrap; text-overflow: ellipsis; }
    StorageScreen #grid-pane { width: 1fr; border: round $primary-darken-2; border-title-color: $accent; }
    StorageScreen #strip-pane { width: 1fr; border: round $primary-darken-2; border-title-color: $accent; }
    StorageScreen #grid-facts, StorageScreen #strip-legend { height: auto; padding: 0 1; }
    StorageScreen #grid, StorageScreen #strip { height: 1fr; }
    StorageScreen #welcome { height: 1fr; border: round $primary-darken-2; padding: 0 2;
                             border-title-color: $accent; }
    StorageScreen #welcome-text { margin: 1 0; }
    StorageScreen #examples { height: auto; max-height: 12; border: none; background: $surface; }
    /* 8 and 7 rows on a tall terminal; a fifth of the height each on a short one (80x24
       over SSH left the grid and the strip 4 rows between them). */
    StorageScreen #detail { height: 20%; max-height: 8; min-height: 4; padding: 0 1;
                            border: round $primary-darken-2; border-title-color: $accent; }
    StorageScreen #history { height: 20%; max-height: 7; min-height: 4;
                             border: round $primary-darken-2; border-title-color: $accent;
                             background: $surface; scrollbar-size-vertical: 1; }
    """

    AUTO_FOCUS = "#console"

    BINDINGS = [
        Binding("ctrl+c", "interrupt", "Interrupt", priority=True),
        Binding("ctrl+l", "focus_console", "Console"),
        Binding("ctrl+g", "focus_grid", "Grid"),
        Binding("ctrl+t", "focus_list", "Tensors"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self._tensors: dict[str, Any] = {}
        self._groups: list[list[str]] = []
        self._colour: dict[str, str] = {}
        self._view_help: Any = None
        """The last failed view() explained (tensorscope.viewfix.ViewFix), or None."""
        self._console_job: _Statement | None = None
        """A console statement still running in the background (see _run_in_background)."""
        self._poll: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="welcome"):
            yield Static(WELCOME, id="welcome-text")
            yield OptionList(*[self._example(code, why) for code, why in EXAMPLES], id="examples")
        with Horizontal(id="storage-main"):
            with Vertical(id="sidebar"):
                yield OptionList(id="tensor-list")
            with Vertical(id="grid-pane"):
                yield Static(id="grid-facts")
                yield TensorGrid(id="grid")
            with Vertical(id="strip-pane"):
                yield Static(id="strip-legend")
                yield StorageStrip(id="strip")
        yield Static(id="detail")
        yield RichLog(id="history", wrap=True, markup=False, highlight=False, auto_scroll=True)
        yield ConsoleInput((code for code, _ in EXAMPLES), id="console",
                           placeholder=CONSOLE_PLACEHOLDER)
        yield SteadyFooter()

    @staticmethod
    def _example(code: str, why: str) -> Option:
        return Option(Text.assemble((f"{code:<36}", "bold"), "  ", (why, "dim")), id=code)

    def on_mount(self) -> None:
        self.query_one("#welcome").border_title = "Storage — how tensors sit in memory"
        self.query_one("#examples").border_title = "Examples"
        self.query_one("#sidebar").border_title = "Tensors, by storage"
        self.query_one("#grid-pane").border_title = "Logical grid"
        self.query_one("#strip-pane").border_title = "Storage"
        self.query_one("#detail").border_title = "Element"
        self.query_one("#history").border_title = "Console history"
        self.app.context.ensure_namespace()
        for statement in self.app.context.statements:
            self.run_statement(statement)
        self.refresh_tensors()
        self.query_one("#console", Input).focus()

    # ---- the console --------------------------------------------------------------
    @on(Input.Submitted, "#console")
    def _submitted(self, event: Input.Submitted) -> None:
        source = event.value.strip()
        if not source:
            return
        if self._console_job is not None:
            self.notify("The last statement is still running: ctrl+c interrupts it.",
                        severity="warning")
            return  # (kept in the input, to run once the last one is over)
        event.input.value = ""
        self.query_one("#console", ConsoleInput).remember(source)
        self._run_in_background(source)

    @on(OptionList.OptionSelected, "#examples")
    def _example_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id and self._console_job is None:
            self._run_in_background(event.option.id)
            self.query_one("#console", Input).focus()

    def _run_in_background(self, source: str) -> None:
        """Run a statement the user typed on a thread of its own.

        The console runs anything: ``while True: pass`` or a ten-second op on the UI
        thread would freeze the whole app with no way out. A statement that is over within
        FOREGROUND_S is shown at once, as before; a longer one leaves the UI responsive,
        says so, and ctrl+c raises KeyboardInterrupt in it (a pure-Python loop stops at
        once; a long torch op or sleep when it returns)."""
        self._log(Text.assemble(("› ", "bold cyan"), source))
        job = _Statement(source, self.app.context)
        job.start()
        job.join(FOREGROUND_S)
        if not job.is_alive():
            self._show_outcome(job)
            return
        self._console_job = job
        self._log(Text("  … still running: ctrl+c interrupts it", style="yellow"))
        self.query_one("#console", Input).placeholder = (
            "(running the last statement: ctrl+c interrupts it)")
        self._poll = self.set_interval(0.1, self._check_running)
        self.refresh_bindings()  # ctrl+c now means something: the footer shows it

    def _check_running(self) -> None:
        job = self._console_job
        if job is None or job.is_alive():
            return
        self._console_job = None
        if self._poll is not None:
            self._poll.stop()
            self._poll = None
        self.query_one("#console", Input).placeholder = CONSOLE_PLACEHOLDER
        self.refresh_bindings()
        self._show_outcome(job)

    def on_unmount(self) -> None:
        # The screen is being rebuilt (a demo loaded into a new Storage screen) or the app
        # is closing: a statement left running would spin with nobody to stop it.
        if self._console_job is not None:
            self._console_job.interrupt()

    def action_interrupt(self) -> None:
        job = self._console_job
        if job is not None and job.is_alive():
            job.interrupt()
            self._log(Text("  interrupting… (a torch op or a sleep in progress finishes first)",
                           style="yellow"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "interrupt":
            return self._console_job is not None  # ctrl+c means nothing here otherwise
        return True

    def _show_outcome(self, job: "_Statement") -> None:
        if job.interrupted:
            self._log(Text("  ✘ interrupted (KeyboardInterrupt): names it assigned before "
                           "that are kept", style="bold red"))
        else:
            self._present(job)
        self.refresh_tensors()

    def run_statement(self, source: str) -> None:
        """Run one statement in the shared namespace, on this thread (the statements given
        on the command line, in order, before the screen shows); show its outcome."""
        self._log(Text.assemble(("› ", "bold cyan"), source))
        job = _Statement(source, self.app.context)
        job.run()  # (not start(): here, in order)
        self._present(job)

    def _present(self, job: "_Statement") -> None:
        """A statement's outcome in the history, and the tensor it made selected."""
        source, namespace, result = job.source, job.namespace, job.result
        if job.error is not None:
            self._log(Text("  ✘ " + str(job.error), style="bold red"))
            self._explain_view(source, namespace)
            return
        self._view_help = None
        if result is not None:
            import torch

            if isinstance(result, torch.Tensor):
                namespace["_"] = result
                self._log(Text(f"  → a tensor of shape {list(result.shape)}, kept as _", style="dim"))
                self.selected = "_"
            else:
                self._log(Text("  → " + _short_repr(result), style="dim"))
        changed = [n for n, v in namespace.items() if job.before.get(n) != id(v) and _is_tensor(v)]
        if changed:
            self.selected = changed[-1]

    def _log(self, text: Text) -> None:
        """Add a line to the history, wrapped at the log's full width."""
        history = self.query_one("#history", RichLog)
        width = history.scrollable_content_region.width
        history.write(text, width=width if width > 20 else None)

    def _explain_view(self, source: str, namespace: dict[str, Any]) -> None:
        from tensorscope.viewfix import explain_view

        fix = explain_view(source, namespace)
        self._view_help = fix
        if fix is not None:
            # Show the tensor that refused, so its strides are on screen next to the error.
            receiver = fix.receiver
            if receiver.isidentifier() and _is_tensor(namespace.get(receiver)):
                self.selected = receiver
            for line in fix.lines()[1:]:
                self._log(Text("  " + line, style="yellow"))

    # ---- the tensors --------------------------------------------------------------
    def refresh_tensors(self) -> None:
        """Re-read the namespace: regroup tensors by storage and redraw everything."""
        from tensorscope.storage import check_supported, storage_key
        from tensorscope.errors import UserError

        namespace = self.app.context.ensure_namespace()
        tensors: dict[str, Any] = {}
        unsupported: dict[str, str] = {}
        for name, value in namespace.items():
            if not _is_tensor(value) or (name.startswith("_") and name != "_"):
                continue
            try:
                check_supported(value)
            except UserError as exc:
                unsupported[name] = str(exc)
                continue
            tensors[name] = value
        groups: dict[tuple, list[str]] = {}
        for name, value in tensors.items():
            groups.setdefault(storage_key(value), []).append(name)
        self._tensors = tensors
        self._groups = list(groups.values())
        self._colour = {}
        for names in self._groups:
            for i, name in enumerate(names):
                self._colour[name] = COLOURS[i % len(COLOURS)]
        has_any = bool(tensors or unsupported)
        self.query_one("#welcome").display = not has_any
        self.query_one("#storage-main").display = has_any
        self.query_one("#detail").display = has_any
        if self.selected not in tensors:
            self.selected = next(iter(tensors), None)
        self._fill_list(unsupported)
        self._show_selected(keep_cursor=True)

    def _fill_list(self, unsupported: dict[str, str]) -> None:
        options = self.query_one("#tensor-list", OptionList)
        options.clear_options()
        highlight = None
        count = 0
        # Names padded to the longest (at most 10), not a fixed width: on an 80-column
        # terminal the sidebar is 24 wide, and a fixed 6 cut the strides off.
        pad = min(max((len(n) for names in self._groups for n in names), default=1), 10)
        for g, names in enumerate(self._groups):
            first = self._tensors[names[0]]
            size = first.untyped_storage().nbytes()
            options.add_option(Option(Text(f"storage {g + 1} · {human_bytes(size)}", style="bold dim"),
                                      disabled=True))
            count += 1
            for name in names:
                t = self._tensors[name]
                label = Text.assemble(("■ ", self._colour[name]), (f"{name:<{pad}}", "bold"),
                                      (f" {_shape(t)}", ""), (f" {_strides(t)}", "dim"))
                options.add_option(Option(label, id=name))
                if name == self.selected:
                    highlight = count
                count += 1
        for name, why in unsupported.items():
            options.add_option(Option(Text(f"  {name}: {why}", style="dim italic"), disabled=True))
        if highlight is not None:
            options.highlighted = highlight

    @on(OptionList.OptionSelected, "#tensor-list")
    @on(OptionList.OptionHighlighted, "#tensor-list")
    def _tensor_chosen(self, event: OptionList.OptionSelected | OptionList.OptionHighlighted) -> None:
        # Highlights also arrive when the list is refilled; only the user's own moves count.
        if isinstance(event, OptionList.OptionHighlighted) and not event.option_list.has_focus:
            return
        if event.option.id:
            self.select_tensor(event.option.id)

    def select_tensor(self, name: str) -> None:
        """Show tensor ``name`` (a name in the namespace) in the grid and the strip."""
        if name not in self._tensors or name == self.selected:
            return
        self.selected = name
        options = self.query_one("#tensor-list", OptionList)
        for i, option in enumerate(options.options):
            if option.id == name and options.highlighted != i:
                options.highlighted = i
        self._show_selected(keep_cursor=False)

    def _show_selected(self, keep_cursor: bool) -> None:
        from tensorscope.storage import layout_of, storage_key

        grid = self.query_one("#grid", TensorGrid)
        strip = self.query_one("#strip", StorageStrip)
        name = self.selected
        if name is None:
            grid.show(None)
            strip.show(None)
            self.query_one("#grid-facts", Static).update("")
            self.query_one("#strip-legend", Static).update("")
            self._update_detail(None)
            return
        tensor = self._tensors[name]
        layout = layout_of(tensor, name)
        same_grid = grid.source is not None and grid.source.name == name
        grid.show(GridSource(name, tensor, layout, self._colour[name]), keep_cursor=keep_cursor and same_grid)
        group = next(names for names in self._groups if name in names)
        views = [StripView(n, self._colour[n], self._tensors[n]) for n in group]
        strip.show(StripSource(layout.storage_size, tensor, views, selected=name))
        self.query_one("#grid-pane").border_title = f"Logical grid of {name}"
        self.query_one("#grid-facts", Static).update(self._facts(layout))
        self.query_one("#strip-legend", Static).update(self._legend(layout, group))
        if layout.numel == 0:
            self._update_detail(None)
        grid.invalidate()
        strip.invalidate()

    def _facts(self, layout: Any) -> Text:
        text = Text()
        text.append(f"shape {list(layout.shape)}", style="bold")
        text.append(f"  strides {list(layout.strides)}  offset {layout.storage_offset}\n")
        text.append(f"{layout.dtype} ({layout.itemsize} B) on {layout.device}  ", style="dim")
        for name, ok in layout.formats:
            text.append(("✔ " if ok else "✘ not ") + name + "  ", style="green" if ok else "red")
        if layout.is_view:
            text.append("a view of its base" if layout.shares_storage_with_base
                        else "a view (on another storage)", style="cyan")
        else:
            text.append("owns its storage", style="cyan")
        if layout.expanded_dims:
            text.append(f"  expanded dims {list(layout.expanded_dims)} (stride 0)", style="yellow")
        if not layout.has_data:
            text.append("  meta: layout only, no values", style="yellow")
        if layout.numel == 0:
            text.append("\n(no elements to draw)", style="dim")
        return text

    def _legend(self, layout: Any, group: list[str]) -> Text:
        text = Text()
        text.append(f"{layout.storage_size:,} {plural(layout.storage_size, 'cell')} of "
                    f"{layout.dtype}", style="bold")
        text.append(f" · {human_bytes(layout.storage_nbytes)} · marks: ", style="dim")
        for name in group:
            text.append("▀ " + name + "  ", style=self._colour[name] + (" bold" if name == self.selected else ""))
        overlaps = self._overlaps(group)
        if overlaps:
            text.append("\n")
            text.append_text(overlaps)
        return text

    def _overlaps(self, group: list[str]) -> Text:
        """How the selected tensor's cells overlap each other view of the storage."""
        from tensorscope.storage import aliasing

        text = Text()
        me = self._tensors[self.selected]
        for other in group:
            if other == self.selected:
                continue
            t = self._tensors[other]
            if max(me.numel(), t.numel()) > OVERLAP_LIMIT:
                continue  # counted exactly only while that stays well under a frame
            result = aliasing(me, t)
            if text:
                text.append(" · ", style="dim")
            text.append(other, style=self._colour[other])
            if result.overlap:
                text.append(f": {result.shared_bytes // me.element_size()} shared cells", style="dim")
            else:
                text.append(": no shared cells", style="dim")
        return text

    # ---- selection ----------------------------------------------------------------
    @on(TensorGrid.CellSelected)
    def _cell_selected(self, event: TensorGrid.CellSelected) -> None:
        # The grid leaves its own repaint to this handler, so grid, strip and Element panel
        # change in the same frame.
        event.grid.paint_cursor()
        self.query_one("#strip", StorageStrip).set_highlight(event.storage_index)
        self._update_detail(event)

    @on(StorageStrip.CellClicked)
    def _storage_cell_clicked(self, event: StorageStrip.CellClicked) -> None:
        """A click on the strip selects the element of the shown tensor that reads the cell."""
        from tensorscope.storage import element_reading

        if self.selected is None:
            return
        position = element_reading(self._tensors[self.selected], event.cell)
        if position is not None:
            self.query_one("#grid", TensorGrid).select_position(position)
            return
        event.strip.set_highlight(event.cell)
        text = Text.assemble((f"cell {event.cell}", "bold"), f" is not read by {self.selected}")
        others = [o for o in self._also_read_by(self.selected, event.cell) if not o.startswith(self.selected + "[")]
        text.append(("; it is read by " + ", ".join(others)) if others else "; no listed view reads it",
                    style="dim")
        self.query_one("#detail", Static).update(text, layout=False)

    def _update_detail(self, event: TensorGrid.CellSelected | None) -> None:
        detail = self.query_one("#detail", Static)
        text = Text()
        fix = self._view_help
        if fix is not None:
            # First, and in the tensor's own terms: on a short terminal this panel has two
            # rows, and torch's long message (in the history) pushed the reason out of it.
            text.append(f"✘ {fix.call} fails: ", style="red")
            text.append(fix.why or fix.error, style="red")
            for line in fix.fix_lines():
                text.append("\n  " + line, style="yellow")
        if event is not None and event.grid.source is not None:
            if text:
                text.append("\n")
            source = event.grid.source
            layout = source.layout
            where = ", ".join(str(i) for i in event.position)
            text.append(f"{source.name}[{where}]", style=f"bold {source.colour}")
            text.append(" reads storage cell  ")
            text.append(layout.arithmetic(event.position), style="bold")
            text.append(f"   (offset + Σ iₖ·strideₖ, strides {list(layout.strides)})", style="dim")
            others = self._also_read_by(source.name, event.storage_index)
            if others:
                text.append("\nthe same cell is also ", style="dim")
                text.append(", ".join(others))
        # A fixed height, so a new selection repaints the panel without a layout pass.
        detail.update(text if text else Text("Pick an element (arrows or a click) to see which cell it reads.",
                                             style="dim"), layout=False)

    def _also_read_by(self, name: str, cell: int) -> list[str]:
        """Other elements (of this or other views) that read ``cell`` — small tensors only."""
        from tensorscope.storage import storage_indices

        group = next((names for names in self._groups if name in names), [])
        found = []
        for other in group:
            t = self._tensors[other]
            if t.numel() > 1_000_000 or t.element_size() != self._tensors[name].element_size():
                continue
            hits = (storage_indices(t) == cell).nonzero().flatten().tolist()
            for pos in hits[:3]:
                idx = _unravel(pos, tuple(t.shape))
                label = f"{other}[{', '.join(map(str, idx))}]"
                if other == name and pos == _flat(self.query_one("#grid", TensorGrid)):
                    continue
                found.append(label)
        return found[:6]

    # ---- focus --------------------------------------------------------------------
    def action_focus_console(self) -> None:
        self.query_one("#console", Input).focus()

    def action_focus_grid(self) -> None:
        self.query_one("#grid", TensorGrid).focus()

    def action_focus_list(self) -> None:
        self.query_one("#tensor-list", OptionList).focus()


def _flat(grid: TensorGrid) -> int:
    row, col = grid.cursor
    return row * max(grid._cols, 1) + col


def _unravel(position: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for size in reversed(shape):
        out.append(position % size)
        position //= size
    return tuple(reversed(out))


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _shape(t: Any) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _strides(t: Any) -> str:
    try:
        return "(" + ", ".join(str(s) for s in t.stride()) + ")"
    except RuntimeError:
        return ""


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "…"
