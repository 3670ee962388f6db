"""The home screen: names the product, lists every screen with its key, and says what
this machine offers (torch build, accelerator, graphviz) so missing pieces are no surprise."""

from __future__ import annotations

import shutil

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from tensorscope.app.screens import REGISTRY, ScreenEntry, function_key

# A three-row box-drawing font: reads on any terminal font, no figlet needed.
_GLYPHS = {
    "t": ("╺┳╸", " ┃ ", " ╹ "),
    "e": ("┏━╸", "┣╸ ", "┗━╸"),
    "n": ("┏┓╻", "┃┗┫", "╹ ╹"),
    "s": ("┏━┓", "┗━┓", "┗━┛"),
    "o": ("┏━┓", "┃ ┃", "┗━┛"),
    "r": ("┏━┓", "┣┳┛", "╹┗╸"),
    "c": ("┏━╸", "┃  ", "┗━╸"),
    "p": ("┏━┓", "┣━┛", "╹  "),
}
LOGO = "\n".join(" ".join(_GLYPHS[ch][row] for ch in "tensorscope") for row in range(3))
TAGLINE = "PyTorch internals, made visible while real code runs."
SHORT_TERMINAL_ROWS = 30
"""Below this many rows the home screen leaves its logo out."""


def environment_line() -> Text:
    """torch version, accelerator and graphviz, each marked ok or missing."""
    import torch

    parts: list[tuple[str, str]] = [(f"torch {torch.__version__}", "bold")]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        parts.append((f"CUDA: {torch.cuda.device_count()} × {name}", "green"))
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        parts.append(("Apple MPS", "green"))
    else:
        parts.append(("CPU only (no CUDA device)", "yellow"))
    if shutil.which("dot"):
        parts.append(("graphviz dot: found", "green"))
    else:
        parts.append(("graphviz dot: missing — graph layout and SVG/PNG export need it", "red"))
    text = Text()
    for i, (label, style) in enumerate(parts):
        if i:
            text.append("  ·  ", style="dim")
        text.append(label, style=style)
    return text


class HomeScreen(Screen):
    """Lists the screens; Enter (or the screen's key) opens one."""

    DEFAULT_CSS = """
    HomeScreen { align: center middle; }
    HomeScreen #home-box { width: 116; max-width: 100%; height: auto; max-height: 100%; padding: 1 3;
                           border: round $primary; }
    HomeScreen #home-logo { color: $accent; text-style: bold; width: 100%;
                            content-align: center middle; }
    HomeScreen #home-tagline { color: $text-muted; content-align: center middle; width: 100%;
                               margin-bottom: 1; }
    /* One row per screen, the summary cut with an ellipsis on a narrow terminal: wrapped
       under the key column, the list outgrew an 80x24 window and hid its last rows. */
    HomeScreen OptionList { height: auto; max-height: 24; border: none; padding: 0;
                            text-wrap: nowrap; text-overflow: ellipsis; }
    HomeScreen #home-env { margin-top: 1; content-align: center middle; width: 100%; }
    HomeScreen #home-hint { color: $text-muted; margin-top: 1; content-align: center middle;
                            width: 100%; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="home-box"):
            yield Static(LOGO, id="home-logo")
            yield Static(TAGLINE, id="home-tagline")
            yield OptionList(*[self._option(e) for e in REGISTRY], id="home-screens")
            yield Static(Text("checking torch and graphviz…", style="dim"), id="home-env")
            yield Static(
                "enter opens the highlighted screen · its letter (or F-key, even while typing) opens it "
                "from anywhere · esc leaves a text input · f1 comes back here · ctrl+p finds any "
                "command · ctrl+q quits",
                id="home-hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        self._probe_environment()

    def on_resize(self, event: events.Resize) -> None:
        # An 80x24 window (a common SSH default) has no room for the 3-row logo and the
        # whole key hint: the hint, which says how to use the app, wins.
        self.query_one("#home-logo").display = event.size.height >= SHORT_TERMINAL_ROWS

    @work(thread=True, exclusive=True, exit_on_error=False, group="home",
          description="probe torch and graphviz")
    def _probe_environment(self) -> None:
        # Importing torch takes most of a second: off the UI thread, so the first frame is fast.
        line = environment_line()
        self.app.call_from_thread(self.query_one("#home-env", Static).update, line)

    @staticmethod
    def _option(e: ScreenEntry) -> Option:
        label = Text.assemble(
            (f" {e.key} ", "bold reverse"), " ", (f"{function_key(e).upper():<3}", "dim"), "  ",
            (f"{e.title:<10}", "bold"), " ", (e.summary, "dim")
        )
        return Option(label, id=e.name)

    @on(OptionList.OptionSelected, "#home-screens")
    def _open(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.app.open_screen(event.option.id)
