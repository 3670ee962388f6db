"""The Doctor screen: the doctor's findings, live, for the attached run or demo — each with its
evidence, its fix, and a jump to the screen that shows the problem."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from tensorscope.app.quantities import plural
from tensorscope.app.widgets.findings_view import as_dict, evidence_table, finding_header
from tensorscope.errors import one_line

# The paragraph is one logical line, so that it wraps at the box's width (an 80-column
# terminal over SSH); the command lines fit 70 columns, the box's inside there.
EMPTY_HELP = (
    "The doctor names common PyTorch training bugs — gradients carried across steps, "
    "in-place changes to saved tensors, evaluation in training mode or with a graph, host "
    "syncs in the loop, device mix-ups, exploding or vanishing gradients, parameters that "
    "never change, dead ReLUs, AMP skipped steps, a diverging loss — from what a run "
    "records.\n"
    "\n"
    "Nothing is attached yet. To get findings:\n"
    "\n"
    "  tensorscope run train.py       run your script under tensorscope\n"
    "  tensorscope replay run.jsonl   read a recorded run\n"
    "  tensorscope demo NAME          open a demo, e.g. missing-zero-grad\n"
    "\n"
    "or press e for the Demos screen, pick a scenario and press d.\n"
)

POLL_S = 1.0
"""How often a live run is re-read; the doctor re-runs only when the run has moved."""


class DoctorScreen(Screen):
    """Findings list on the left; the highlighted finding's evidence and fix on the right."""

    DEFAULT_CSS = """
    DoctorScreen #doctor-source { height: auto; padding: 0 1; color: $text-muted; }
    DoctorScreen #doctor-empty { padding: 1 2; border: round $primary; margin: 1 2; height: auto;
                                 width: 100; max-width: 100%; }
    DoctorScreen #doctor-main { height: 1fr; }
    DoctorScreen #doctor-list { width: 45%; max-width: 60; height: 1fr; border: round $primary; }
    DoctorScreen #doctor-detail { width: 1fr; height: 1fr; border: round $secondary; padding: 0 1; }
    DoctorScreen #doctor-jump { margin-top: 1; }
    """

    class FindingsReady(Message):
        """The doctor finished on the attached source (posted from the worker)."""

        def __init__(self, source: str, findings: list[dict[str, Any]], version: Any) -> None:
            super().__init__()
            self.source = source
            self.findings = findings
            self.version = version

    def __init__(self) -> None:
        super().__init__()
        self._findings: list[dict[str, Any]] = []
        self._version: Any = None
        self._examining = False
        """A diagnosis is running. The poll waits for it rather than starting another: the
        worker is exclusive, so a new one cancels it, and one that takes longer than POLL_S
        (a slow machine, a long run still growing) would never finish."""
        self._jump_to: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="doctor-source")
        yield Static(EMPTY_HELP, id="doctor-empty")
        with Horizontal(id="doctor-main"):
            yield OptionList(id="doctor-list")
            with VerticalScroll(id="doctor-detail"):
                yield Static(id="doctor-finding")
                yield Button("Open screen", id="doctor-jump", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#doctor-list", OptionList).border_title = "Findings"
        self.query_one("#doctor-detail").border_title = "Evidence and fix"
        self.query_one("#doctor-main").display = False
        self._refresh()
        if _subject_run(self.app.context) is not None:
            self.set_interval(POLL_S, self._refresh)

    def on_screen_resume(self) -> None:
        self._refresh()

    # -- sources ------------------------------------------------------------------------
    def _source_label(self) -> str | None:
        ctx = self.app.context
        run = _subject_run(ctx)
        if run is not None:
            return f"run: {_run_label(run)}"
        demo = getattr(ctx, "demo", None)
        if demo is not None:
            return f"demo: {demo.name} (the bug as written)"
        return None

    def _refresh(self) -> None:
        label = self._source_label()
        source = self.query_one("#doctor-source", Static)
        if label is None:
            source.update("")
            self.query_one("#doctor-empty").display = True
            self.query_one("#doctor-main").display = False
            return
        run = _subject_run(self.app.context)
        version = _run_version(run) if run is not None else ("demo", self.app.context.demo.name)
        if (version is not None and version == self._version) or self._examining:
            return  # (after a diagnosis in flight, the next poll takes the newest version)
        if self._version is None:
            source.update(Text(f"{label} · examining…", style="italic"))
        self._examining = True
        self._diagnose(label, version)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "doctor" or event.state not in (WorkerState.ERROR,
                                                                  WorkerState.CANCELLED):
            return
        self._examining = False  # the next poll (a live run) tries again
        if event.state == WorkerState.ERROR:
            self.query_one("#doctor-source", Static).update(Text(
                f"the doctor failed: {one_line(event.worker.error)}", style="bold red"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="doctor", description="run the doctor")
    def _diagnose(self, label: str, version: Any) -> None:
        from tensorscope.doctor import diagnose

        ctx = self.app.context
        run = _subject_run(ctx)
        observation = getattr(run, "observation", None)
        if observation is not None:  # a demo's run: its model, errors and graph count too
            found = observation.findings()
        elif run is not None:
            records, errors = _run_records(run)
            found = diagnose(records, errors=errors)
        else:
            found = ctx.demo.measure(False).findings()
        self.post_message(self.FindingsReady(label, [f.to_json() for f in found], version))

    @on(FindingsReady)
    def _ready(self, message: FindingsReady) -> None:
        self._version = message.version
        self._examining = False
        self._findings = message.findings
        self.query_one("#doctor-empty").display = False
        self.query_one("#doctor-main").display = True
        count = len(message.findings)
        crash = _crash(self.app.context)
        if count and crash:
            # The crash first: the findings may be unrelated to what stopped the run.
            verdict = (f"the run crashed: {crash} · {count} {plural(count, 'finding')}",
                       "bold red")
        elif count:
            verdict = (f"{count} {plural(count, 'finding')}", "bold red")
        elif crash:
            # No detector names a bug, but the run did not end well: never "all is well".
            verdict = (f"no known bug pattern, but the run crashed: {crash}", "bold yellow")
        else:
            verdict = ("no findings: nothing looks wrong", "green")
        self.query_one("#doctor-source", Static).update(Text.assemble(
            (message.source, "bold"), " · ", verdict))
        option_list = self.query_one("#doctor-list", OptionList)
        highlighted = option_list.highlighted
        option_list.clear_options()
        option_list.add_options([Option(finding_header(f), id=f"{i}") for i, f in enumerate(message.findings)])
        if message.findings:
            option_list.highlighted = min(highlighted or 0, count - 1)
            self._show(message.findings[option_list.highlighted])
            option_list.focus()
        elif crash:
            self.query_one("#doctor-finding", Static).update(Text(
                f"The run crashed ({crash}). None of the doctor's detectors matches it: the "
                "traceback on the Training screen says where.", style="yellow"))
            button = self.query_one("#doctor-jump", Button)
            button.display = True
            button.label = "Show it on the Training screen  (t)"
            self._jump_to = "training"
        else:
            self.query_one("#doctor-finding", Static).update(Text(
                "The doctor checked every detector on this source and found nothing.", style="green"))
            self.query_one("#doctor-jump", Button).display = False

    @on(OptionList.OptionHighlighted, "#doctor-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None and int(event.option.id) < len(self._findings):
            self._show(self._findings[int(event.option.id)])

    def _show(self, finding: dict[str, Any]) -> None:
        f = as_dict(finding)
        self.query_one("#doctor-finding", Static).update(Group(
            finding_header(f), Text(""), Text("evidence", style="bold underline"),
            evidence_table(f["evidence"]), Text(""), Text("fix", style="bold underline"),
            Text(f["fix"])))
        button = self.query_one("#doctor-jump", Button)
        from tensorscope.app.screens import REGISTRY

        available = {e.name: e for e in REGISTRY}
        screen = f.get("screen")
        button.display = screen in available and screen != "doctor"
        if screen in available:
            button.label = f"Show it on the {available[screen].title} screen  ({available[screen].key})"
        self._jump_to = screen

    @on(Button.Pressed, "#doctor-jump")
    def _jump(self, event: Button.Pressed) -> None:
        if self._jump_to:
            self.app.open_screen(self._jump_to)


def _snapshot(run: Any) -> Any:
    snap = getattr(run, "snapshot", None)
    return snap() if callable(snap) else None


def _run_label(run: Any) -> str:
    snap = _snapshot(run)
    if snap is not None:
        return f"{snap.label} ({snap.state}, {len(snap.records)} records)"
    return type(run).__name__


def _run_version(run: Any) -> Any:
    snap = _snapshot(run)
    if snap is not None:
        return (id(run), snap.version, len(snap.records))
    records = getattr(run, "records", None)
    return (id(run), len(records) if records is not None else 0)


def _run_records(run: Any) -> tuple[list[Any], list[Any]]:
    snap = _snapshot(run)
    if snap is not None:
        return list(snap.records), [snap.error] if getattr(snap, "error", None) else []
    return list(getattr(run, "records", []) or []), list(getattr(run, "errors", []) or [])


def _subject_run(context: Any) -> Any:
    """The run the Doctor examines: the context's, unless a demo loaded after it brought
    none of its own (a script under tensorscope run, then a graph demo: the demo)."""
    run = getattr(context, "run", None)
    fields = getattr(context, "scenario_fields", ())
    if run is not None and fields and "run" not in fields and getattr(context, "demo", None):
        return None
    return run


def _crash(context: Any) -> str | None:
    """"ExcType: message" of the attached run's crash, if it crashed (else None)."""
    run = _subject_run(context)
    if run is None:
        return None
    try:
        return run.snapshot().crash
    except Exception:  # a source that cannot say: no claim either way
        return None
