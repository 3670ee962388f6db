"""The Demos screen: the syllabus's lessons and bugs, each with its code, its fix, the screens
that show it, and a "run it" that measures the facts the lesson rests on."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Markdown, OptionList, Static
from textual.widgets.option_list import Option

from tensorscope.app.widgets.findings_view import findings_renderable
from tensorscope.app.widgets.text_plot import text_plot

SCREEN_TITLES = {"storage": "Storage", "graph": "Graph", "model": "Model", "training": "Training",
                 "doctor": "Doctor", "inspect": "Inspect", "demos": "Demos"}


SCREEN_FIELDS = {"training": ("run",), "doctor": ("run", "demo"), "model": ("model", "model_step"),
                 "graph": ("graph_roots", "model", "namespace"),
                 "storage": ("statements", "namespace"),
                 "inspect": ("checkpoints", "trust_checkpoints")}
"""The AppContext fields each screen reads when it is built (a change rebuilds it)."""


def open_scenario_screen(app: Any, scenario: Any, screen: str) -> None:
    """Load the scenario into the app's context (load_scenario) and switch to ``screen``."""
    from tensorscope.app.screens import entry

    if screen != "demos":
        try:
            entry(screen)
        except KeyError:
            app.notify(f"the {screen} screen is not part of this build", severity="warning")
            return
    load_scenario(app, scenario)
    if screen != app.current_mode:
        app.open_screen(screen)


def load_scenario(app: Any, scenario: Any) -> None:
    """Make the scenario what the app's screens show.

    The scenario becomes the subject of the screens it has a view on. What the demo loaded
    before it set and this one does not is cleared (the Doctor showed that demo's findings
    as this one's); what the user opened the app on (checkpoints, a model, the script
    under ``tensorscope run``) stays unless this demo sets its own (quitting still asks
    about that script: ``own_run``). Every screen built on a field that changed is rebuilt
    when next opened (screens read the context when they are built)."""
    from tensorscope.app.context import AppContext
    from tensorscope.app.screens import REGISTRY

    context = app.context
    fields = scenario.context_fields()  # once: a demo's run measures the demo
    blank = AppContext()
    updates = {key: getattr(blank, key) for key in context.scenario_fields
               if key not in fields and key != "demo"}
    updates.update(fields)
    changed = {key for key, value in updates.items() if not _same(getattr(context, key, None), value)}
    for key, value in updates.items():
        setattr(context, key, value)
    context.scenario_fields = tuple(fields)
    for built in REGISTRY:
        if built.name in ("demos", app.current_mode):
            continue
        if not changed.intersection(SCREEN_FIELDS.get(built.name, changed)):
            continue  # nothing it reads changed: kept as the user left it
        try:
            app.remove_mode(built.name)
        except Exception:  # not registered in this app: nothing to rebuild
            continue
        app.add_mode(built.name, lambda e=built: e.load()())


def _same(old: Any, new: Any) -> bool:
    """One subject: the same object, or two equal lists of paths or statements (a fresh
    empty list is no change). Never ``==`` on anything else: tensors compare elementwise."""
    if old is new:
        return True
    return isinstance(old, list) and isinstance(new, list) and old == new


class DemosScreen(Screen):
    """Catalogue on the left; the selected scenario's lesson, code and results on the right."""

    # Enter on the list runs the selected demo (as r does); its screens open from the
    # buttons. d is the Doctor for this demo, not for whatever ran before it: the results
    # panel has just shown what the doctor found here.
    BINDINGS = [Binding("r", "run_demo", "Run it"), Binding("d", "doctor", "Doctor", show=False)]

    DEFAULT_CSS = """
    DemosScreen #demos-list { width: 36; height: 1fr; border: round $primary; }
    DemosScreen #demos-body { width: 1fr; height: 1fr; padding: 0 1; }
    DemosScreen #demos-title { text-style: bold; color: $accent; margin-bottom: 1; }
    DemosScreen #demos-lesson { margin: 0 0 1 0; height: auto; }
    DemosScreen #demos-code { height: auto; }
    DemosScreen #demos-code.stacked { layout: vertical; }
    DemosScreen .code-panel { width: 1fr; height: auto; border: round $error 60%; padding: 0 1; }
    DemosScreen .code-panel.fixed { border: round $success 60%; }
    DemosScreen #demos-actions { height: auto; margin: 1 0 0 0; }
    DemosScreen #demos-actions Button { margin-right: 1; min-width: 12; }
    DemosScreen #demos-results { height: auto; margin-top: 1; border: round $secondary; padding: 0 1; }
    """

    class DemoRan(Message):
        """A scenario finished its headless run (posted from the worker)."""

        def __init__(self, name: str, summary: dict[str, Any] | None, error: str | None) -> None:
            super().__init__()
            self.name = name
            self.summary = summary
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self._scenarios: list[Any] = []
        self._current: Any = None
        self._results: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        from tensorscope.demos import catalogue

        self._scenarios = catalogue()
        yield Header()
        with Horizontal():
            yield OptionList(*[Option(Text.assemble((s.name, "bold"), "\n", (s.title, "dim")), id=s.name)
                               for s in self._scenarios], id="demos-list")
            with VerticalScroll(id="demos-body"):
                yield Static(id="demos-title")
                yield Markdown(id="demos-lesson")
                yield Horizontal(id="demos-code")
                with Horizontal(id="demos-actions"):
                    yield Button("▶ Run it (r)", id="run-demo", variant="primary")
                yield Static(id="demos-results")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#demos-list", OptionList).border_title = "Scenarios"
        demo = getattr(self.app.context, "demo", None)
        names = [s.name for s in self._scenarios]
        index = names.index(demo.name) if demo is not None and demo.name in names else 0
        option_list = self.query_one("#demos-list", OptionList)
        option_list.highlighted = index
        option_list.focus()
        self._show(self._scenarios[index])

    @on(OptionList.OptionHighlighted, "#demos-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        scenario = next(s for s in self._scenarios if s.name == event.option.id)
        if scenario is not self._current:
            self._show(scenario)

    @on(OptionList.OptionSelected, "#demos-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_run_demo()

    def _show(self, scenario: Any) -> None:
        self._current = scenario
        self.query_one("#demos-title", Static).update(
            Text.assemble((scenario.title, "bold"), "   ", (f"tensorscope demo {scenario.name}", "dim")))
        self.query_one("#demos-lesson", Markdown).update(scenario.lesson)
        code = self.query_one("#demos-code", Horizontal)
        code.remove_children()
        # Side by side when both fit half the width; stacked (bug above fix) when a line
        # would be cropped — cropped code teaches nothing.
        longest = max(len(line) for src in (scenario.code, scenario.fixed_code or "")
                      for line in src.splitlines() or [""])
        code.set_class(longest > (self.size.width - 44) // 2 - 4, "stacked")
        panels = [("the bug" if scenario.is_bug else "the code", scenario.code, "")]
        if scenario.is_bug:
            panels.append(("the fix", scenario.fixed_code, "fixed"))
        for label, source, cls in panels:
            panel = Static(Syntax(source.rstrip(), "python", theme="monokai", word_wrap=False,
                                  background_color="default"), classes=f"code-panel {cls}".strip())
            panel.border_title = label
            code.mount(panel)
        actions = self.query_one("#demos-actions", Horizontal)
        actions.query(".open-screen").remove()
        for screen in scenario.screens:
            if screen == "demos":
                continue
            actions.mount(Button(f"Open {SCREEN_TITLES.get(screen, screen)}", name=screen,
                                 classes="open-screen"))
        self._render_results()

    def _render_results(self) -> None:
        results = self.query_one("#demos-results", Static)
        results.border_title = "measured"
        scenario = self._current
        summary = self._results.get(scenario.name)
        if summary is None:
            results.update(Text("Press r (or ▶ Run it) to run this scenario here and see what it "
                                "measures and what the doctor finds.", style="dim"))
            return
        if "error" in summary:
            results.update(Text(f"the run failed: {summary['error']}", style="red"))
            return
        parts: list[Any] = []
        for label, part in (("the code" if not scenario.is_bug else "the bug", summary),
                            ("the fix", summary.get("fixed"))):
            if part is None:
                continue
            parts.append(Text(label, style="bold underline"))
            parts.append(_facts_table(part["facts"]))
            curve = part["facts"].get("curve")
            if curve:
                parts.append(Text(text_plot(curve["x"], curve["y"], log_x=curve.get("log_x", False),
                                            x_label=curve.get("x_label", ""), y_label=curve.get("y_label", ""))
                                  # non-breaking spaces: the plot's alignment is its leading blanks
                                  .replace(" ", "\u00a0"), no_wrap=True, overflow="crop"))
            parts.append(findings_renderable(part["findings"], compact=True))
            parts.append(Text(""))
        results.update(Group(*parts))

    def action_run_demo(self) -> None:
        if self._current is None:
            return
        # Run it and make it the subject: the screen keys (t, m, g, d) then open this demo,
        # as its buttons do (a walk-through found them on the demo loaded before).
        load_scenario(self.app, self._current)
        self.query_one("#demos-results", Static).update(Text(f"running {self._current.name}…", style="italic"))
        self._run(self._current)

    @work(thread=True, exclusive=True, exit_on_error=False, group="demo-run", description="run a demo scenario")
    def _run(self, scenario: Any) -> None:
        try:
            summary, error = scenario.run_headless(), None
        except Exception as exc:  # shown in the results panel; the screen stays usable
            from tensorscope.errors import one_line

            summary, error = None, one_line(exc)
        self.post_message(self.DemoRan(scenario.name, summary, error))

    @on(DemoRan)
    def _ran(self, message: DemoRan) -> None:
        self._results[message.name] = message.summary if message.error is None else {"error": message.error}
        if self._current is not None and self._current.name == message.name:
            self._render_results()
            # On a short terminal the results land below the fold: r seemed to do nothing
            # (walk-through at 120x40 and 80x24).
            results = self.query_one("#demos-results", Static)
            self.call_after_refresh(results.scroll_visible, top=True, animate=False)

    @on(Button.Pressed, "#run-demo")
    def _run_pressed(self) -> None:
        self.action_run_demo()

    @on(Button.Pressed, ".open-screen")
    def _open_pressed(self, event: Button.Pressed) -> None:
        if self._current is not None and event.button.name:
            open_scenario_screen(self.app, self._current, event.button.name)

    def action_doctor(self) -> None:
        current = self._current
        if current is None:
            return
        if "doctor" in current.screens:
            open_scenario_screen(self.app, current, "doctor")
            return
        # Opening the Doctor anyway would show whatever run was loaded before (another
        # demo's findings, as if they were this one's): say where this lesson shows instead.
        where = ", ".join(SCREEN_TITLES.get(name, name) for name in current.screens)
        self.app.notify(f"{current.name} has no doctor view: it shows on {where} "
                        "(the buttons below its code)", severity="warning")


def _facts_table(facts: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in facts.items():
        if key == "curve":
            continue
        table.add_row(key.replace("_", " "), _short(value))
    return table


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and len(value) > 16:
        head = ", ".join(_short(v) for v in value[:8])
        return f"[{head}, … {len(value) - 8} more]"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)
