"""TensorGrid: a tensor's logical grid, drawn line by line from the visible window only.

Rows are the tensor's elements grouped by its last dim (leading indices label each row),
so any rank fits a 2-d grid. Each cell shows the value and, dimmed, the storage index it
reads. Only the rows and columns on screen are gathered from the tensor (one torch gather
per frame), so a 1e8-element tensor scrolls as smoothly as a 12-element one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tensorscope.app.layout_view import format_value

VALUE_WIDTH = 7


@dataclass
class GridSource:
    """What the grid draws: a tensor, its layout, and the colour of its legend."""

    name: str
    tensor: Any
    layout: Any
    colour: str


class TensorGrid(ScrollView, can_focus=True):
    """The selected tensor's logical grid; arrows or a click select an element."""

    DEFAULT_CSS = """
    TensorGrid { background: $surface; scrollbar-size: 1 1; }
    TensorGrid:focus { background-tint: $foreground 3%; }
    """

    BINDINGS = [
        Binding("up", "move(-1, 0)", "Up", show=False),
        Binding("down", "move(1, 0)", "Down", show=False),
        Binding("left", "move(0, -1)", "Left", show=False),
        Binding("right", "move(0, 1)", "Right", show=False),
        Binding("pageup", "move(-20, 0)", "Page up", show=False),
        Binding("pagedown", "move(20, 0)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    cursor: reactive[tuple[int, int]] = reactive((0, 0), always_update=True, repaint=False)
    """Selected (row, column) in the grid's rows-by-last-dim view."""

    class CellSelected(Message):
        """An element was selected: its multi-index and the storage cell it reads."""

        def __init__(self, grid: "TensorGrid", position: tuple[int, ...], storage_index: int) -> None:
            super().__init__()
            self.grid = grid
            self.position = position
            self.storage_index = storage_index

        def can_replace(self, message: Message) -> bool:
            # Key repeat faster than frames: only the newest selection of this grid is shown.
            return isinstance(message, TensorGrid.CellSelected) and message.grid is self.grid

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source: GridSource | None = None
        self._cache_key: tuple | None = None
        self._cache: dict[int, tuple[list[int], list[Any]]] = {}
        self._rows = 0
        self._cols = 0
        self._label_width = 0
        self._index_width = 2
        self._c0 = self._c1 = 0

    # ---- data ---------------------------------------------------------------------
    def show(self, source: GridSource | None, keep_cursor: bool = False) -> None:
        """Draw ``source`` (None clears the grid)."""
        self.source = source
        self._cache_key = None
        if source is None:
            self._rows = self._cols = 0
            self.virtual_size = Size(0, 0)
            self.refresh()
            return
        shape = source.layout.shape or (1,)
        self._cols = shape[-1] if shape[-1] else 0
        self._rows = source.layout.numel // self._cols if self._cols else 0
        lead = shape[:-1]
        self._label_width = (sum(len(str(max(n - 1, 0))) + 2 for n in lead) + 4) if lead else 2
        span = source.layout.span
        self._index_width = len(str(span[1])) + 1 if span else 2
        self.virtual_size = Size(self._label_width + self._cols * self.cell_width, self._rows + 1)
        row, col = self.cursor if keep_cursor else (0, 0)
        self.cursor = (min(row, max(self._rows - 1, 0)), min(col, max(self._cols - 1, 0)))
        self.refresh()

    def invalidate(self) -> None:
        """The tensor's values changed: fetch the window again on the next frame."""
        self._cache_key = None
        self.refresh()

    @property
    def cell_width(self) -> int:
        return VALUE_WIDTH + self._index_width + 2

    def position_of(self, row: int, col: int) -> tuple[int, ...]:
        if self.source is None:
            return ()
        if not self.source.layout.shape:
            return ()
        return self.source.layout.unravel(row * self._cols + col)

    def _window(self) -> dict[int, tuple[list[int], list[Any]]]:
        """Indices and values of the rows and columns on screen, fetched in one gather."""
        import torch

        from tensorscope.storage import gather

        assert self.source is not None
        sx, sy = self.scroll_offset
        width, height = self.size
        # The row label stays put; scroll_x moves the cells area only.
        c0 = min(max(0, sx // self.cell_width), max(self._cols - 1, 0))
        c1 = min(self._cols, c0 + max(width - self._label_width, 0) // self.cell_width + 2)
        r0 = max(0, sy)
        r1 = min(self._rows, sy + height)
        key = (c0, c1, r0, r1)
        if key != self._cache_key:
            self._cache = {}
            if r1 > r0 and c1 > c0:
                rows = torch.arange(r0, r1, dtype=torch.int64)
                cols = torch.arange(c0, c1, dtype=torch.int64)
                positions = (rows[:, None] * self._cols + cols[None, :]).reshape(-1)
                idx, values = gather(self.source.tensor, positions)
                n = c1 - c0
                for k, r in enumerate(range(r0, r1)):
                    self._cache[r] = (idx[k * n:(k + 1) * n], values[k * n:(k + 1) * n])
            self._cache_key = key
            self._c0, self._c1 = c0, c1
        return self._cache

    # ---- drawing ------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        sx, sy = self.scroll_offset
        width = self.size.width
        if self.source is None or self._rows == 0:
            return Strip.blank(width)
        colour = Style(color=self.source.colour, bold=True)
        dim = Style(dim=True)
        if y == 0:  # sticky header: column numbers
            segments = [Segment(" " * self._label_width, dim)]
            window = self._window()
            for c in range(self._c0, self._c1):
                label = f"[{c}]" if self.source.layout.shape else ""
                style = colour if c == self.cursor[1] else dim
                segments.append(Segment(f"{label:>{VALUE_WIDTH}}" + " " * (self._index_width + 2), style))
            return self._crop(segments, sx, width, header=True)
        row = sy + y - 1
        if row >= self._rows:
            return Strip.blank(width)
        window = self._window()
        idx, values = window.get(row, ([], []))
        segments = [Segment(f"{self._row_label(row):<{self._label_width}}",
                            colour if row == self.cursor[0] else dim)]
        selected_row = row == self.cursor[0]
        for k, (n, v) in enumerate(zip(idx, values)):
            c = self._c0 + k
            text = "·" if v is None else format_value(v, VALUE_WIDTH)
            selected = selected_row and c == self.cursor[1]
            value_style = Style(reverse=True, bold=True, color=self.source.colour) if selected else Style()
            segments.append(Segment(f"{text:>{VALUE_WIDTH}}", value_style))
            segments.append(Segment(f" @{n:<{self._index_width}}", colour if selected else dim))
        return self._crop(segments, sx, width, header=False)

    def _crop(self, segments: list[Segment], sx: int, width: int, header: bool) -> Strip:
        # Segments start at column c0's cell; shift so that scroll_x lines up, keep the label.
        label, cells = segments[0], segments[1:]
        skip = max(0, sx - self._c0 * self.cell_width)
        end = skip + max(width - self._label_width, 0)
        # Whole cells only at the right edge: a cut one turned "10 @10" into "10 @1", a
        # wrong cell index (walk-through at 120 columns). The rest of the row stays blank.
        end = max(skip, end - end % self.cell_width)
        body = Strip(cells).crop(skip, end)
        return Strip([label, *body]).adjust_cell_length(width).simplify()

    def _row_label(self, row: int) -> str:
        assert self.source is not None
        shape = self.source.layout.shape
        if len(shape) <= 1:
            return ""
        lead = self.source.layout.unravel(row * self._cols)[:-1]
        return "[" + ", ".join(str(i) for i in lead) + ", :]"

    # ---- selection ----------------------------------------------------------------
    def watch_cursor(self, cursor: tuple[int, int]) -> None:
        if self.source is None or self._rows == 0:
            return
        row, col = cursor
        position = self.position_of(row, col)
        # No scroll or refresh here: whoever handles CellSelected calls paint_cursor() with
        # its own updates (the Storage screen: strip and Element panel), so one move is one
        # frame. Painting here drew the grid alone at once and the rest 17-40 ms later.
        self.post_message(self.CellSelected(self, position, self.source.layout.index_of(position)))

    def paint_cursor(self) -> None:
        """Scroll the selected cell into view and repaint (call on handling CellSelected)."""
        self._scroll_to_cursor()
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        row, col = self.cursor
        # Virtual coordinates: the header is line 0, so row r sits on line r + 1.
        region = Region(col * self.cell_width, row, self.cell_width + self._label_width, 2)
        self.scroll_to_region(region, animate=False, force=True)

    def select_position(self, position: tuple[int, ...]) -> None:
        """Move the cursor to the element at multi-index ``position``."""
        if self.source is None or self._rows == 0:
            return
        flat = 0
        for i, n in zip(position, self.source.layout.shape):
            flat = flat * n + i
        self.cursor = divmod(flat, self._cols) if self.source.layout.shape else (0, 0)

    def action_move(self, drow: int, dcol: int) -> None:
        if self._rows == 0:
            return
        row = max(0, min(self._rows - 1, self.cursor[0] + drow))
        col = max(0, min(self._cols - 1, self.cursor[1] + dcol))
        self.cursor = (row, col)

    def action_jump(self, where: int) -> None:
        if self._rows:
            self.cursor = (0, 0) if where == 0 else (self._rows - 1, self._cols - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or self._rows == 0 or offset.y == 0:
            return
        sx, sy = self.scroll_offset
        col = (offset.x - self._label_width + sx) // self.cell_width
        row = offset.y - 1 + sy
        if 0 <= row < self._rows and 0 <= col < self._cols and offset.x >= self._label_width:
            self.cursor = (row, col)
