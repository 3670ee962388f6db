"""The Model screen: a model's anatomy, and live hook statistics while it trains.

Left: the module tree (type, parameter counts, ● for hooked modules). Right: the run status
with the number of active hooks, the selected module's latest statistics, activation
histogram and sparklines over time, and tabs with the parameters, the buffers and the
gradient norm by depth (vanishing/exploding flags).

It opens on ``app.context.model``; ``app.context.model_step`` (a callable running one
training step) makes it live: ``r`` runs steps in a thread worker until paused, ``n`` runs one.
With no model it offers the example models of :mod:`tensorscope.zoo`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (DataTable, Footer, Header, OptionList, Sparkline, Static, TabbedContent,
                             TabPane, Tree)
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from tensorscope.app.quantities import human_bytes, plural
from tensorscope.app.widgets.histogram import Histogram
from tensorscope.app.widgets.module_tree import ModuleTree, compact

_SPARK_KEYS = ("mean", "std", "zero_frac", "grad_norm")
_SPARK_LABELS = {"mean": "mean", "std": "std", "zero_frac": "zeros", "grad_norm": "grad norm out"}

HISTORY = 120
"""Points kept per module for the sparklines."""

MIN_STEP_S = 0.05
"""Live runs are paced to at most 20 steps a second: enough to watch, light on the CPU."""

POST_EVERY_S = 0.1
"""The worker posts batches of finished steps at most this often (10 Hz)."""


class ModelScreen(Screen):
    """Module tree, parameters and buffers; live per-module stats from a HookSet."""

    DEFAULT_CSS = """
    ModelScreen #model-empty { padding: 1 2; height: 1fr; }
    ModelScreen #model-empty-text { margin-bottom: 1; }
    ModelScreen #model-examples { height: auto; max-height: 12; width: 100; border: round $primary; }
    ModelScreen #model-main { height: 1fr; }
    /* Fixed sizes on a wide terminal; shares on an 80x24 one, where the fixed ones pushed
       the module's panels off the right edge. */
    ModelScreen #model-left { width: 45%; max-width: 56; min-width: 30; }
    ModelScreen #model-summary { height: auto; padding: 0 1; color: $text-muted; }
    ModelScreen #model-right { width: 1fr; padding: 0 0 0 1; }
    ModelScreen #model-status { height: 4; border: round $primary-darken-2; padding: 0 1; }
    ModelScreen #model-detail { height: 40%; max-height: 15; min-height: 8; }
    ModelScreen #module-stats { width: 50%; max-width: 38; min-width: 24; height: 100%;
                                border: round $primary-darken-2; padding: 0 1; }
    ModelScreen #module-hist { height: 100%; border: round $primary-darken-2; padding: 0 1; }
    ModelScreen #module-sparks { height: 5; border: round $primary-darken-2; padding: 0 1; }
    ModelScreen .spark-box { width: 1fr; padding: 0 1 0 0; }
    ModelScreen .spark-label { height: 1; color: $text-muted; }
    ModelScreen Sparkline { height: 2; }
    ModelScreen #model-tabs { height: 1fr; }
    ModelScreen .hidden { display: none; }
    """

    BINDINGS = [
        Binding("r", "toggle_run", "Run/pause"),
        Binding("n", "step_once", "One step"),
        Binding("h", "toggle_hooks", "Hooks on/off here"),
        Binding("a", "hook_all", "Hook all"),
        Binding("x", "detach", "Detach all"),
        Binding("o", "examples", "Examples"),
    ]

    class Stepped(Message):
        """Steps finished in the worker (records, oldest first) and the hook count after them."""

        def __init__(self, records: list[Any], hook_count: int, overhead: dict[str, float]) -> None:
            super().__init__()
            self.records = records
            self.hook_count = hook_count
            self.overhead = overhead

    class RunStopped(Message):
        """The worker stopped; ``error`` is the user's step failing, in one line."""

        def __init__(self, error: str | None) -> None:
            super().__init__()
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.model: Any = None
        self.step_fn: Callable[[], Any] | None = None
        self.session: Any = None
        self.hooked: set[str] = set()
        self.selected = ""
        self.steps = 0
        self.running = threading.Event()
        self._lock = threading.Lock()
        self._deferred: list[Callable[[], None]] = []
        self._history: dict[str, dict[str, deque]] = {}
        self._losses: deque = deque(maxlen=HISTORY)
        self._latest: Any = None
        self._error: str | None = None
        self._hookable: list[str] = []

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="model-empty"):
            yield Static(
                "[b]Model[/b] shows a model's modules, parameters and buffers, and — while it "
                "trains — what every module computes: activation statistics and histograms, "
                "the gradient flowing out, and gradient norms by depth.\n\n"
                "No model was given. Open one from Python with\n"
                "  [b]make_app(AppContext(model=model, model_step=one_training_step), screen='model').run()[/b]\n"
                "(tensorscope.app.app / tensorscope.app.context), or pick an example model below "
                "(Enter opens it; each comes with a synthetic training step):",
                id="model-empty-text",
            )
            yield OptionList(id="model-examples")
        with Horizontal(id="model-main", classes="hidden"):
            with Vertical(id="model-left"):
                yield Static(id="model-summary")
                yield ModuleTree(id="model-tree")
            with Vertical(id="model-right"):
                yield Static(id="model-status")
                with Horizontal(id="model-detail"):
                    yield Static(id="module-stats")
                    yield Histogram(id="module-hist")
                with Horizontal(id="module-sparks"):
                    for key in _SPARK_KEYS:
                        with Vertical(classes="spark-box"):
                            yield Static(_SPARK_LABELS[key], id=f"spark-label-{key}", classes="spark-label")
                            yield Sparkline([], id=f"spark-{key}")
                with TabbedContent(id="model-tabs"):
                    with TabPane("Parameters", id="tab-params"):
                        yield DataTable(id="params-table", cursor_type="row", zebra_stripes=True)
                    with TabPane("Buffers", id="tab-buffers"):
                        yield DataTable(id="buffers-table", cursor_type="row", zebra_stripes=True)
                    with TabPane("Gradients by depth", id="tab-depth"):
                        yield Static(id="depth-view")
        yield Footer()

    def on_mount(self) -> None:
        from tensorscope import zoo

        examples = self.query_one("#model-examples", OptionList)
        for name, ex_title, exercises in zoo.catalogue():
            examples.add_option(Option(Text.assemble((f"{ex_title:<28}", "bold"), (exercises, "dim")), id=name))
        examples.highlighted = 0  # Enter opens the first at once; Down moves to the second
        self.query_one("#module-stats", Static).border_title = "module"
        self.query_one("#module-hist", Histogram).border_title = "activation histogram"
        self.query_one("#module-sparks", Horizontal).border_title = f"over time (last {HISTORY} steps)"
        self.query_one("#model-status", Static).border_title = "live"
        for table_id, cols in (("#params-table", ("parameter", "shape", "dtype", "device", "requires_grad",
                                                 "has grad", "elements", "grad norm", "update/weight")),
                               ("#buffers-table", ("buffer", "shape", "dtype", "device", "persistent",
                                                  "elements"))):
            self.query_one(table_id, DataTable).add_columns(*cols)
        ctx = self.app.context
        if ctx.model is not None:
            self.load(ctx.model, ctx.model_step)
        else:
            label = _run_model_name(ctx)
            if label:
                # Walk-through: under tensorscope run this said "No model was given" while the
                # Training screen named the script's model. That model lives in the script's
                # own process; what this screen shows of a model, the run streams there.
                self.query_one("#model-empty-text", Static).update(Text.assemble(
                    ("The script's model (", "bold"), (str(label), "bold cyan"),
                    (") runs in the script's own process: ", "bold"),
                    "its per-module statistics (activations, gradient norms, histograms) are on "
                    "the Training screen (t), from the run's detail steps. This screen opens a "
                    "model in this process; pick an example model below (Enter opens it; each "
                    "comes with a synthetic training step):"))
            examples.focus()

    # -- loading -----------------------------------------------------------------------
    @on(OptionList.OptionSelected, "#model-examples")
    def _open_example(self, event: OptionList.OptionSelected) -> None:
        from tensorscope import zoo

        ex = zoo.get(event.option.id or "")
        self.app.context.model = ex.model
        self.app.context.model_step = ex.step
        self.load(ex.model, ex.step)

    def load(self, model: Any, step_fn: Callable[[], Any] | None) -> None:
        """Show ``model``; hooks go on every module once it runs (``r``/``n``)."""
        from torch import nn

        from tensorscope.anatomy import module_rows

        self._stop_and_detach()
        if not isinstance(model, nn.Module):
            self._error = f"context.model is a {type(model).__name__}, not an nn.Module"
            self.query_one("#model-empty-text", Static).update(f"[b red]{self._error}[/]")
            return
        self.model, self.step_fn = model, step_fn
        self.steps = 0
        self._history.clear()
        self._losses.clear()
        self._latest = None
        self._error = None
        rows = module_rows(model)
        self._hookable = [r.path for r in rows if r.path] or [""]
        self.hooked = set(self._hookable)
        self.selected = ""
        self.query_one("#model-empty").add_class("hidden")
        self.query_one("#model-main").remove_class("hidden")
        tree = self.query_one(ModuleTree)
        tree.load(rows, self.hooked, live=False)
        tree.focus()
        self._show_summary()
        self._fill_tables()
        self._refresh_live()

    def _show_summary(self) -> None:
        from tensorscope.anatomy import totals

        t = totals(self.model)
        frozen = t["params"] - t["trainable"]
        self.query_one("#model-summary", Static).update(Text.assemble(
            (type(self.model).__name__, "bold"), f" · {t['modules']} {plural(t['modules'], 'module')} · {human_bytes(t['bytes'])}\n",
            (f"{t['params']:,}", "bold"), f" parameters ({t['param_tensors']} {plural(t['param_tensors'], 'tensor')}), ",
            (f"{t['trainable']:,}", "bold"), " trainable", (f", {frozen:,} frozen" if frozen else "", "yellow"),
            f"\n{t['buffers']:,} buffer elements ({t['buffer_tensors']} {plural(t['buffer_tensors'], 'buffer')})",
        ))

    def _fill_tables(self) -> None:
        from tensorscope.anatomy import buffer_rows, param_rows

        params = self.query_one("#params-table", DataTable)
        params.clear()
        latest = self._latest.params if self._latest is not None else {}
        prefix = self.selected
        for row in param_rows(self.model, prefix):
            live = latest.get(row["name"], {})
            params.add_row(row["name"], _shape(row["shape"]), row["dtype"], row["device"],
                           _yes(row["requires_grad"]), _yes(row["has_grad"]), f"{row['numel']:,}",
                           _num(live.get("grad_norm")), _num(live.get("update_ratio")))
        scope = f" under {prefix}" if prefix else ""
        params.border_title = f"parameters{scope}"
        buffers = self.query_one("#buffers-table", DataTable)
        buffers.clear()
        rows = buffer_rows(self.model, prefix)
        for row in rows:
            buffers.add_row(row["name"], _shape(row["shape"]), row["dtype"], row["device"],
                            _yes(row["persistent"]), f"{row['numel']:,}")
        if not rows:
            buffers.add_row(Text(f"no buffers{scope}", style="dim"), "", "", "", "", "")
        if params.row_count == 0:
            params.add_row(Text(f"no parameters{scope}", style="dim"), "", "", "", "", "", "", "", "")

    # -- selection ---------------------------------------------------------------------
    @on(Tree.NodeHighlighted, "#model-tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        if self.model is None:
            return
        self.selected = event.node.data or ""
        self._fill_tables()
        self._show_module()

    def _subtree(self, path: str) -> list[str]:
        if not path:
            return list(self._hookable)
        return [p for p in self._hookable if p == path or p.startswith(path + ".")]

    # -- actions -----------------------------------------------------------------------
    def action_toggle_hooks(self) -> None:
        if self.model is None:
            return
        paths = self._subtree(self.selected)
        if paths and all(p in self.hooked for p in paths):
            self.hooked.difference_update(paths)
        else:
            self.hooked.update(paths)
        self._apply_hooks()

    def action_hook_all(self) -> None:
        if self.model is None:
            return
        self.hooked = set(self._hookable)
        self._apply_hooks()

    def action_detach(self) -> None:
        """Remove every hook now (the run pauses); records seen so far stay on screen."""
        self.running.clear()
        self._when_idle(self._detach_session)
        self.query_one(ModuleTree).mark(self.hooked, live=False)
        self._refresh_live()

    def _apply_hooks(self) -> None:
        selection = sorted(self.hooked)

        def apply() -> None:
            if self.session is not None:
                self.session.hooks.set_modules([p or "(model)" for p in selection])

        self._when_idle(apply)
        self.query_one(ModuleTree).mark(self.hooked, live=self.session is not None)
        self._refresh_live()
        self._show_module()

    def action_toggle_run(self) -> None:
        if not self._can_step():
            return
        if self.running.is_set():
            self.running.clear()
        else:
            self._error = None
            self.running.set()
            self._run(None)
        self._refresh_live()

    def action_step_once(self) -> None:
        if not self._can_step():
            return
        if self.running.is_set():
            return
        self._error = None
        self._run(1)

    def _can_step(self) -> bool:
        if self.model is None:
            self.notify("No model open: pick an example model (Enter) first.", severity="warning")
            return False
        if self.step_fn is None:
            self.notify("No training step to run: the context has a model but no model_step.",
                        severity="warning")
            return False
        return True

    def action_examples(self) -> None:
        self._stop_and_detach()
        self.model = None
        self.query_one("#model-main").add_class("hidden")
        self.query_one("#model-empty").remove_class("hidden")
        self.query_one("#model-examples", OptionList).focus()

    # -- the live run ------------------------------------------------------------------
    def _when_idle(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` now if no step is running, else right after the current step."""
        if self._lock.acquire(blocking=False):
            try:
                fn()
            finally:
                self._lock.release()
        else:
            self._deferred.append(fn)

    def _ensure_session(self) -> None:
        from tensorscope.watch import WatchSession

        if self.session is None:
            spec = [p or "(model)" for p in sorted(self.hooked)]
            # Every step in full: this screen exists to show each step, cost does not matter.
            self.session = WatchSession(self.model, modules=spec, max_overhead=None).attach()

    def _detach_session(self) -> None:
        if self.session is not None:
            self.session.detach()
            self.session = None

    def _stop_and_detach(self) -> None:
        self.running.clear()
        self.workers.cancel_group(self, "model-run")
        with self._lock:
            self._detach_session()
            self._deferred.clear()

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-run",
          description="running the model's training step")
    def _run(self, count: int | None) -> None:
        worker = get_current_worker()
        batch: list[Any] = []
        last_post = time.monotonic()
        done = 0
        error: str | None = None
        hooks, overhead = 0, {}
        while not worker.is_cancelled:
            if count is None and not self.running.is_set():
                break
            if count is not None and done >= count:
                break
            started = time.monotonic()
            with self._lock:
                try:
                    self._ensure_session()
                    before = len(self.session.records)
                    self.step_fn()
                    if len(self.session.records) == before:
                        self.session.step()  # a step without an optimizer ends here
                    batch.append(self.session.records[-1])
                except Exception as exc:  # the user's step failed: show it, stop the run
                    from tensorscope.errors import one_line

                    error = one_line(exc)
                finally:
                    deferred, self._deferred = self._deferred, []
                    for fn in deferred:
                        fn()
                hooks = self.session.hook_count if self.session is not None else 0
                overhead = self.session.overhead if self.session is not None else {}
            done += 1
            if error is not None:
                break
            now = time.monotonic()
            if batch and now - last_post >= POST_EVERY_S:
                self.post_message(self.Stepped(batch, hooks, overhead))
                batch, last_post = [], now
            if count is None:
                time.sleep(max(0.0, MIN_STEP_S - (time.monotonic() - started)))
        if batch:
            self.post_message(self.Stepped(batch, hooks, overhead))
        self.running.clear()
        self.post_message(self.RunStopped(error))

    @on(Stepped)
    def _stepped(self, message: Stepped) -> None:
        for rec in message.records:
            self.steps = rec.step
            if rec.loss is not None:
                self._losses.append(rec.loss)
            for path, stats in rec.modules.items():
                hist = self._history.setdefault(path, {k: deque(maxlen=HISTORY) for k in _SPARK_KEYS})
                for key in _SPARK_KEYS:
                    value = stats.get(key)
                    if value is not None and value == value:
                        hist[key].append(float(value))
            self._latest = rec
        self.query_one(ModuleTree).mark(self.hooked, live=self.session is not None)
        self._refresh_live()
        self._show_module()
        self._show_depth()
        self._fill_tables()

    @on(RunStopped)
    def _stopped(self, message: RunStopped) -> None:
        # A toggle queued just as the last step ended would otherwise wait for the next run.
        with self._lock:
            deferred, self._deferred = self._deferred, []
            for fn in deferred:
                fn()
        self._error = message.error
        self.query_one(ModuleTree).mark(self.hooked, live=self.session is not None)
        self._refresh_live()

    def on_unmount(self) -> None:
        self._stop_and_detach()

    # -- drawing -----------------------------------------------------------------------
    @property
    def hook_count(self) -> int:
        """Hooks tensorscope holds on the model right now (0 when detached)."""
        return self.session.hook_count if self.session is not None else 0

    def _refresh_live(self) -> None:
        if self.model is None:
            return
        text = Text()
        if self.step_fn is None:
            text.append("no training step given (context.model_step): structure only", style="yellow")
        elif self.running.is_set():
            text.append("● running", style="bold green")
        else:
            text.append("○ paused", style="bold")
        text.append(f"  step {self.steps}")
        if self._losses:
            text.append(f"  loss {self._losses[-1]:.4g}")
        count = self.hook_count
        module_hooks = len(self.session.hooks.names) if self.session is not None else 0
        text.append("   hooks active: ")
        text.append(str(count), style="bold green" if count else "bold")
        text.append("\n")
        if self.session is not None:
            text.append(f"{module_hooks} on modules, the rest on the model, its outputs, loss, optimizer",
                        style="dim")
            last = self._latest.signals.get("overhead_s") if self._latest is not None else None
            if last is not None:
                text.append(f" · last step {last * 1e3:.1f} ms in hooks", style="dim")
        else:
            text.append(f"detached: nothing hooked; {len(self.hooked)} {plural(len(self.hooked), 'module')} get hooks when it runs "
                        "(r or n)", style="dim")
        if self._error:
            text.append(f"\nstep failed: {self._error}", style="bold red")
        self.query_one("#model-status", Static).update(text)

    def _show_module(self) -> None:
        if self.model is None:
            return
        path = self.selected
        key = path or "(model)"
        stats_box = self.query_one("#module-stats", Static)
        stats_box.border_title = f"module: {key}"
        mod = self.model.get_submodule(path) if path else self.model
        text = Text.assemble((type(mod).__name__, "bold cyan"), "\n")
        n_own = sum(p.numel() for p in mod.parameters(recurse=False))
        n_all = sum(p.numel() for p in mod.parameters())
        text.append(f"parameters: {n_all:,} ({n_own:,} its own)\n")
        text.append("hooked: ")
        hooked_here = (path in self.hooked) if path or self._hookable == [""] else None
        if hooked_here is None:
            text.append("— (the model's modules are)", style="dim")
        elif hooked_here and self.session is None:
            text.append("once it runs (detached now)", style="dim")
        else:
            text.append("yes" if hooked_here else "no", style="green" if hooked_here else "dim")
        text.append("\n\n")
        stats = self._latest.modules.get(key) if self._latest is not None else None
        hist_widget = self.query_one("#module-hist", Histogram)
        if stats is None:
            why = ("not hooked" if hooked_here is False else
                   "no steps yet: press r (run) or n (one step)" if self._latest is None else
                   "the model as a whole is not hooked, its modules are: select one"
                   if hooked_here is None else
                   "no output this step (containers like ModuleList, or a module the forward never calls)")
            text.append(why, style="dim")
            hist_widget.counts = ()
            hist_widget.value_range = None
            hist_widget.caption = ""
        elif "mean" not in stats:
            text.append(stats.get("note", "no floating-point output"), style="yellow")
            hist_widget.counts = ()
        else:
            rows = [("output", f"{_shape(stats['shape'])} {stats['dtype']}"),
                    ("calls/step", str(stats["calls"])),
                    ("mean", _num(stats["mean"])), ("std", _num(stats["std"])),
                    ("abs max", _num(stats["abs_max"])),
                    ("zeros", f"{stats['zero_frac'] * 100:.1f}%" if stats["zero_frac"] is not None else "—"),
                    ("non-finite", str(stats["nonfinite"])),
                    ("grad norm out", _num(stats.get("grad_norm")))]
            for label, value in rows:
                style = "bold red" if label == "non-finite" and stats["nonfinite"] else ""
                text.append(f"{label:<14}", style="dim")
                text.append(f"{value}\n", style=style)
            hist_widget.counts = tuple(stats["hist"])
            hist_widget.value_range = tuple(stats["hist_range"]) if stats.get("hist_range") else None
            hist_widget.caption = (f"{stats['sampled']:,} of {stats['numel']:,} values" if stats["sampled"] < stats["numel"]
                                   else f"all {stats['numel']:,} values")
        stats_box.update(text)
        hist = self._history.get(key, {})
        for k in _SPARK_KEYS:
            data = list(hist.get(k, ()))
            self.query_one(f"#spark-{k}", Sparkline).data = data
            label = _SPARK_LABELS[k]
            last = f"  {_num(data[-1])}" if data else "  —"
            self.query_one(f"#spark-label-{k}", Static).update(Text.assemble(label, (last, "bold")))

    def _show_depth(self) -> None:
        from tensorscope.anatomy import VANISH_DECADES, depth_profile

        view = self.query_one("#depth-view", Static)
        if self._latest is None:
            view.update(Text("Run a step to see how the gradient norm changes from the output back to the input.",
                             style="dim"))
            return
        prof = depth_profile(self.model, self._latest.modules)
        if not prof.rows:
            view.update(Text("No hooked module with parameters received a gradient this step.", style="dim"))
            return
        text = Text()
        if prof.flag:
            text.append(f"⚠ {prof.flag} gradients: ", style="bold red")
            text.append(f"the first layer's gradient norm is 10^{prof.decades:+.1f} times the last layer's "
                        f"(flag beyond ±{VANISH_DECADES:g} decades)\n\n")
        elif prof.decades is not None:
            text.append("gradient norms stay within ", style="green")
            text.append(f"10^{prof.decades:+.1f} from the last layer to the first "
                        f"(flagged beyond ±{VANISH_DECADES:g} decades)\n\n")
        peak = max(g for _, g in prof.rows) or 1.0
        import math

        for path, g in prof.rows:
            frac = (math.log10(g) - math.log10(peak) + 8) / 8 if g > 0 else 0
            bar = "█" * max(0, int(frac * 40))
            text.append(f"{path:<36.36} ", style="bold")
            text.append(f"{g:10.3e} ")
            text.append(bar + "\n", style="cyan")
        text.append("input side first; bars on a log scale over 8 decades", style="dim")
        view.update(text)


def _run_model_name(ctx: Any) -> str | None:
    """The class name of the model the attached run trains, when it reported one."""
    run = ctx.run or ctx.own_run
    try:
        name = (run.snapshot().model or {}).get("model") if run is not None else None
    except Exception:  # a source that cannot say: the screen's usual text
        return None
    return str(name) if name else None


def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and v != v:
        return "nan"
    return f"{v:.4g}"


def _yes(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="dim")


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")" if shape is not None else "—"
