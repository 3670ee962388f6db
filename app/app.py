"""The Textual application and its factory.

``make_app(...)`` is the one way to build the app: the CLI, the tests and the snapshot
tests all call it, so what is tested is what users run.
"""

from __future__ import annotations

from functools import partial
from typing import Iterable

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tensorscope.app.context import AppContext
from tensorscope.app.screens import REGISTRY, entry, function_key
from tensorscope.app.screens.home import HomeScreen


class TensorscopeApp(App):
    """tensorscope's TUI: one mode per screen, so each keeps its state while you roam."""

    TITLE = "tensorscope"
    CSS_PATH = "tensorscope.tcss"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "open_screen('home')", "Home"),
    ] + [
        Binding(e.key, f"open_screen('{e.name}')", e.title, show=False) for e in REGISTRY
    ] + [
        # Function keys work even while an Input has focus (letters would be typed into it).
        Binding(function_key(e), f"open_screen('{e.name}')", e.title, show=False, priority=True)
        for e in REGISTRY
    ] + [
        Binding("escape", "leave_input", "Leave input", show=False),
    ]

    def __init__(self, context: AppContext | None = None, screen: str = "home") -> None:
        super().__init__()
        self.context = context or AppContext()
        self._initial = screen
        self.add_mode("home", HomeScreen)
        for e in REGISTRY:
            self.add_mode(e.name, partial(self._build_screen, e.name))

    def _build_screen(self, name: str) -> Screen:
        return entry(name).load()()

    def on_mount(self) -> None:
        self.switch_mode(self._initial)

    async def action_quit(self) -> None:
        """ctrl+q: while a script runs under `tensorscope run`, ask what becomes of it
        first (leave it running, stop it, or stay), as q on the Training screen does."""
        # ask_before_quit quits at once when nothing runs: the one place that says which
        # script quitting asks about.
        from tensorscope.app.screens.training import ask_before_quit

        ask_before_quit(self)

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Textual's screenshot, into a Downloads folder made first if there is none (a
        fresh server account has none, and the save failed with no reason given)."""
        from pathlib import Path

        from platformdirs import user_downloads_path

        target = Path(path) if path else user_downloads_path()
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.notify(f"cannot make {target} for the screenshot: {exc.strerror}",
                        severity="error")
            return
        super().action_screenshot(filename, str(target))

    def action_leave_input(self) -> None:
        """Escape in a text input gives up focus, so single-letter keys work again."""
        from textual.widgets import Input, TextArea

        if isinstance(self.focused, (Input, TextArea)):
            self.screen.set_focus(None)

    def action_open_screen(self, name: str) -> None:
        self.open_screen(name)

    def open_screen(self, name: str) -> None:
        if name != self.current_mode:
            self.switch_mode(name)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Home", "The list of screens", partial(self.open_screen, "home"))
        for e in REGISTRY:
            yield SystemCommand(f"Open {e.title}", e.summary, partial(self.open_screen, e.name))

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        # Workers are declared with exit_on_error=False; a failure is shown, never a crash.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            from tensorscope.errors import one_line

            # markup=False: an exception's text may hold brackets ("[/data/train]").
            self.notify(one_line(event.worker.error), title=event.worker.name or "background job",
                        severity="error", timeout=8, markup=False)


def make_app(context: AppContext | None = None, *, screen: str = "home") -> TensorscopeApp:
    """Build the app, opened on ``screen`` ("home" or a name from the screen registry)."""
    valid = {"home", *(e.name for e in REGISTRY)}
    if screen not in valid:
        from tensorscope.errors import UserError

        raise UserError(f"no screen named '{screen}' (choose from: {', '.join(sorted(valid))})")
    return TensorscopeApp(context, screen)
