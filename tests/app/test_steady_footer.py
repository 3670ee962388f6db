"""SteadyFooter shows the keys of the focused widget, and skips rebuilds that change nothing."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Button, Input
from textual.widgets._footer import FooterKey

from tensorscope.app.widgets.steady_footer import SteadyFooter


class Keyed(Button):
    BINDINGS = [Binding("x", "noop", "Extra key")]

    def action_noop(self) -> None:
        pass


class FooterApp(App):
    def compose(self) -> ComposeResult:
        yield Button("a", id="a")
        yield Button("b", id="b")
        yield Keyed("k", id="k")
        yield SteadyFooter()


def _shown(app: App) -> set[str]:
    return {key.description for key in app.screen.query(FooterKey)}


async def test_footer_follows_focus_and_skips_same_keys() -> None:
    app = FooterApp()
    async with app.run_test() as pilot:
        footer = app.screen.query_one(SteadyFooter)
        rebuilds = []
        original = footer.recompose

        async def counted():
            rebuilds.append(1)
            await original()

        footer.recompose = counted
        app.screen.query_one("#a").focus()
        await pilot.pause()
        assert "Extra key" not in _shown(app)
        before = len(rebuilds)
        app.screen.query_one("#b").focus()  # same keys shown: no rebuild
        await pilot.pause()
        assert len(rebuilds) == before
        app.screen.query_one("#k").focus()  # a new key: rebuilt and shown
        await pilot.pause()
        assert len(rebuilds) == before + 1
        assert "Extra key" in _shown(app)
        app.screen.query_one("#a").focus()
        await pilot.pause()
        assert "Extra key" not in _shown(app)
