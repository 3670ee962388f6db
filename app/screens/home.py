"""The home screen: names the product and lists every screen with its key."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from tensorscope.app.screens import REGISTRY

BANNER = "tensorscope"
TAGLINE = "PyTorch internals, made visible while real code runs."


class HomeScreen(Screen):
    """Lists the screens; Enter (or the screen's key) opens one."""

    DEFAULT_CSS = """
    HomeScreen { align: center middle; }
    HomeScreen #home-box { width: 96; height: auto; max-height: 100%; padding: 1 2;
                           border: round $primary; }
    HomeScreen #home-title { text-style: bold; color: $accent; content-align: center middle;
                             width: 100%; }
    HomeScreen #home-tagline { color: $text-muted; content-align: center middle; width: 100%;
                               margin-bottom: 1; }
    HomeScreen OptionList { height: auto; max-height: 24; border: none; }
    HomeScreen #home-hint { color: $text-muted; margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="home-box"):
            yield Static(BANNER, id="home-title")
            yield Static(TAGLINE, id="home-tagline")
            yield OptionList(*[self._option(e) for e in REGISTRY], id="home-screens")
            yield Static(
                "Enter opens the highlighted screen · its key opens it from anywhere · "
                "ctrl+p searches every command · ctrl+q quits",
                id="home-hint",
            )
        yield Footer()

    @staticmethod
    def _option(e) -> Option:
        label = Text.assemble((f" {e.key} ", "bold reverse"), "  ", (f"{e.title:<10}", "bold"), "  ", (e.summary, "dim"))
        return Option(label, id=e.name)

    @on(OptionList.OptionSelected, "#home-screens")
    def _open(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.app.open_screen(event.option.id)
