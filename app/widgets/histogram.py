"""Histogram: vertical bars of a fixed number of bins, drawn with block characters."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

_BLOCKS = " ▁▂▃▄▅▆▇█"


class Histogram(Static):
    """Bars for ``counts`` over ``value_range``; the x axis is labelled with the range ends."""

    DEFAULT_CSS = """
    Histogram { height: 8; width: 1fr; color: $accent; }
    """

    counts: reactive[tuple[int, ...]] = reactive(tuple, layout=False)
    """Count per bin, left to right."""
    value_range: reactive[tuple[float, float] | None] = reactive(None)
    """(low, high) of the values the bins cover, or None when unknown."""
    caption: reactive[str] = reactive("")
    """One line under the axis (e.g. what was sampled)."""
    empty_text: reactive[str] = reactive("no activation recorded yet for this module")
    """Said when there are no counts ("" when the panel around it says why already)."""

    def watch_empty_text(self) -> None:
        self._redraw()

    def watch_counts(self) -> None:
        self._redraw()

    def watch_value_range(self) -> None:
        self._redraw()

    def watch_caption(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _show(self, text: Text) -> None:
        # With a fixed height (the default) new bars are a repaint, not a layout pass of the
        # whole screen; setting counts, range and caption redraws three times in a row.
        height = self.styles.height
        self.update(text, layout=height is None or height.is_auto)

    def _redraw(self) -> None:
        counts = list(self.counts)
        if not counts:
            self._show(Text(self.empty_text, style="dim"))
            return
        rows = max(1, (self.size.height or 8) - 2)
        available = self.size.width or 48
        if len(counts) > available:
            # Narrower than the bins (an 80-column terminal): neighbouring bins are added
            # up, so a row never outgrows the widget and wraps into broken bars.
            per = -(-len(counts) // available)
            counts = [sum(counts[i:i + per]) for i in range(0, len(counts), per)]
        width = max(1, available // len(counts))
        peak = max(counts) or 1
        levels = [c / peak * rows * 8 for c in counts]
        text = Text()
        for r in range(rows - 1, -1, -1):
            for lv in levels:
                fill = max(0.0, min(8.0, lv - r * 8))
                ch = _BLOCKS[int(round(fill))] if fill > 0 else " "
                if lv > 0 and r == 0 and ch == " ":
                    ch = "▁"  # a non-empty bin always shows
                text.append(ch * width)
            text.append("\n")
        axis_len = width * len(counts)
        if self.value_range is not None:
            lo, hi = self.value_range
            left, right = f"{lo:.3g}", f"{hi:.3g}"
            gap = max(1, axis_len - len(left) - len(right))
            text.append(left + " " * gap + right, style="dim")
        text.append("\n")
        text.append(self.caption, style="dim")
        self._show(text)
