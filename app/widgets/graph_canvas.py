"""GraphCanvas: a laid-out autograd graph drawn with box-drawing characters.

The canvas is a ScrollView over a grid as big as the layout: it renders only the rows on
screen (the Line API), so a layout of thousands of boxes scrolls as fast as a small one.
Arrow keys and the mouse pan; a click on a box posts :class:`GraphCanvas.BoxClicked`.
Without a layout it shows a message (laying out, dot missing, nothing given yet).
"""

from __future__ import annotations

from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tensorscope.graph_layout import LINE_CHARS, Box, Layout

KIND_COLOURS = {
    "root": "#81c784",
    "backward": "#cfd8dc",
    "leaf": "#64b5f6",
    "leaf-no-grad": "#78909c",
    "module": "#ffd54f",
}
"""Border and text colour of a box by node kind."""

EDGE_STYLE = Style(color="#607d8b")
ARROW_STYLE = Style(color="#90a4ae", bold=True)
FREED_COLOUR = "#e57373"


class GraphCanvas(ScrollView, can_focus=True):
    """Scrollable drawing of a :class:`~tensorscope.graph_layout.Layout`."""

    DEFAULT_CSS = """
    GraphCanvas { background: $surface; scrollbar-size: 1 1; }
    GraphCanvas:focus { background-tint: $primary 4%; }
    GraphCanvas > .graph-canvas--message { color: $text-muted; }
    """

    COMPONENT_CLASSES = {"graph-canvas--message"}

    BINDINGS = [
        ("left", "scroll_left", "Pan"), ("right", "scroll_right", "Pan"),
        ("up", "scroll_up", "Pan"), ("down", "scroll_down", "Pan"),
    ]

    selected: reactive[str | None] = reactive(None)
    """Key of the highlighted box ("n<id>" or "m:<path>")."""

    message: reactive[str] = reactive("")
    """Text shown instead of a drawing (no layout yet, dot missing, laying out)."""

    class BoxClicked(Message):
        """The user clicked a box."""

        def __init__(self, key: str) -> None:
            self.key = key
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._layout: Layout | None = None
        self._freed: frozenset[int] = frozenset()
        self._rows_boxes: dict[int, list[Box]] = {}
        self._rows_lines: dict[int, list[tuple[int, str, Style]]] = {}

    # -- data in ------------------------------------------------------------------------

    @property
    def layout_shown(self) -> Layout | None:
        return self._layout

    def show(self, layout: Layout | None, freed: frozenset[int] = frozenset()) -> None:
        """Draw ``layout`` (None: show ``message`` instead)."""
        self._layout = layout
        self._freed = freed
        self._rows_boxes = {}
        self._rows_lines = {}
        self._row_strip.cache_clear()
        if layout is not None:
            for b in layout.boxes:
                for y in range(b.y, b.y + b.h):
                    self._rows_boxes.setdefault(y, []).append(b)
            for (x, y), bits in layout.lines.items():
                self._rows_lines.setdefault(y, []).append((x, LINE_CHARS.get(bits, "·"), EDGE_STYLE))
            for (x, y), ch in layout.arrows.items():
                self._rows_lines.setdefault(y, []).append((x, ch, ARROW_STYLE))
            self.virtual_size = Size(layout.width + 2, layout.height + 1)
        else:
            self.virtual_size = Size(0, 0)
        self.refresh()

    def watch_selected(self, old: str | None, new: str | None) -> None:
        self._row_strip.cache_clear()
        self.refresh()

    def watch_message(self) -> None:
        self.refresh()

    def center_on(self, key: str) -> None:
        """Scroll so the box ``key`` sits in the middle of the view."""
        box = self._layout.find(key) if self._layout else None
        if box is None:
            return
        self.scroll_to_region(Region(box.x, box.y, box.w, box.h), animate=False, center=True,
                              force=True)

    # -- input --------------------------------------------------------------------------

    def on_click(self, event: events.Click) -> None:
        if self._layout is None:
            return
        x = event.x - self._pad() + int(self.scroll_offset.x)
        y = event.y + int(self.scroll_offset.y)
        box = self._layout.box_at(x, y)
        if box is not None:
            self.post_message(self.BoxClicked(box.key))

    # -- drawing ------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._layout is None:
            return self._message_line(y, width)
        scroll_x, scroll_y = self.scroll_offset
        strip = self._row_strip(int(y + scroll_y))
        pad = self._pad()
        if pad:
            return Strip([Segment(" " * pad), *strip]).extend_cell_length(width)
        return strip.crop(int(scroll_x), int(scroll_x) + width).extend_cell_length(width)

    def _pad(self) -> int:
        """Columns of margin that centre a drawing narrower than the canvas."""
        if self._layout is None:
            return 0
        return max((self.size.width - (self._layout.width + 2)) // 2, 0)

    def _message_line(self, y: int, width: int) -> Strip:
        lines = self.message.splitlines() or [""]
        top = max((self.size.height - len(lines)) // 2, 0)
        if top <= y < top + len(lines):
            text = lines[y - top]
            pad = max((width - len(text)) // 2, 0)
            style = self.get_component_rich_style("graph-canvas--message")
            return Strip([Segment(" " * pad), Segment(text, style)]).extend_cell_length(width)
        return Strip.blank(width)

    @lru_cache(maxsize=512)
    def _row_strip(self, row: int) -> Strip:
        layout = self._layout
        if layout is None or row >= layout.height:
            return Strip.blank(0)
        width = layout.width + 2
        chars = [" "] * width
        styles: list[Style | None] = [None] * width
        for x, ch, style in self._rows_lines.get(row, ()):
            if x < width:
                chars[x] = ch
                styles[x] = style
        for box in self._rows_boxes.get(row, ()):
            self._draw_box_row(box, row, chars, styles, layout)
        for (x, y), ch in layout.ports.items():
            if y == row and x < width and chars[x] == "─":
                chars[x] = ch
        segments: list[Segment] = []
        run_style = styles[0]
        run: list[str] = []
        for ch, st in zip(chars, styles):
            if st is not run_style:
                segments.append(Segment("".join(run), run_style))
                run, run_style = [], st
            run.append(ch)
        segments.append(Segment("".join(run), run_style))
        return Strip(segments, width)

    def _draw_box_row(self, box: Box, row: int, chars: list[str], styles: list[Style | None],
                      layout: Layout) -> None:
        colour = KIND_COLOURS.get(box.kind, "#cfd8dc")
        if box.node_id is not None and box.node_id in self._freed:
            colour = FREED_COLOUR
        selected = box.key == self.selected
        border = Style(color=colour, bold=selected)
        text_style = Style(color=colour, bold=True)
        if selected:
            border = Style(color="#000000", bgcolor=colour, bold=True)
            text_style = border
        r = row - box.y
        if layout.zoom == "detail":
            if r == 0:
                line = "╭" + "─" * (box.w - 2) + "╮"
                st = [border] * box.w
            elif r == box.h - 1:
                line = "╰" + "─" * (box.w - 2) + "╯"
                st = [border] * box.w
            else:
                text = box.lines[r - 1] if r - 1 < len(box.lines) else ""
                inner = text.center(box.w - 4)
                line = "│ " + inner + " │"
                sub = r - 1 > 0
                inner_style = Style(color=colour, dim=not selected) if sub else text_style
                if selected:
                    inner_style = text_style
                st = [border, border] + [inner_style] * len(inner) + [border, border]
        else:
            text = box.lines[0]
            line = "[" + text.center(box.w - 2) + "]"
            if layout.zoom == "overview":
                line = " " + text.center(box.w - 2) + " "
                fill = Style(color="#000000", bgcolor=colour, bold=selected)
                st = [fill] * box.w
            else:
                st = [border] + [text_style] * (box.w - 2) + [border]
        for i, (ch, sty) in enumerate(zip(line, st)):
            x = box.x + i
            if 0 <= x < len(chars):
                chars[x] = ch
                styles[x] = sty
