"""StorageStrip: one flat storage, wrapped into rows, with every view's cells marked.

Each storage row takes three lines: the cell numbers, the values (in the selected
tensor's dtype), and one coloured mark per view that reads the cell (the legend colour of
that view). The selected element's cell is drawn reversed. Like TensorGrid it draws only
the rows on screen: values and marks for the visible cells are computed per frame, so a
storage of 1e8 cells scrolls without ever being read whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tensorscope.app.layout_view import format_value

CELL_WIDTH = 9
LINES_PER_ROW = 3
MASK_LIMIT = 4_000_000
"""Storages up to this many cells get each view's cells precomputed as one mask."""


@dataclass
class StripView:
    """One tensor drawn against the strip: its name, legend colour and the tensor."""

    name: str
    colour: str
    tensor: Any
    mask: Any = None
    """Bool tensor over the whole storage (small storages), else None: computed per frame."""


@dataclass
class StripSource:
    """The storage to draw: its size, the tensor whose dtype reads the values, its views."""

    storage_size: int
    reference: Any
    views: list[StripView] = field(default_factory=list)
    selected: str | None = None


class StorageStrip(ScrollView):
    """The flat storage of the selected tensor, shared by all of its views."""

    DEFAULT_CSS = """
    StorageStrip { background: $surface; scrollbar-size: 1 1; }
    """

    class CellClicked(Message):
        """A storage cell was clicked: the screen finds the element that reads it."""

        def __init__(self, strip: "StorageStrip", cell: int) -> None:
            super().__init__()
            self.strip = strip
            self.cell = cell

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source: StripSource | None = None
        self.highlight: int | None = None
        self._cache_key: tuple | None = None
        self._cache: dict[int, tuple[list[Any], list[list[bool]]]] = {}

    # ---- data ---------------------------------------------------------------------
    def show(self, source: StripSource | None) -> None:
        import torch

        from tensorscope.storage import storage_indices

        self.source = source
        self._cache_key = None
        if source is not None and source.storage_size <= MASK_LIMIT:
            itemsize = source.reference.element_size()
            for view in source.views:
                mask = torch.zeros(source.storage_size, dtype=torch.bool)
                if view.tensor.element_size() == itemsize and view.tensor.numel():
                    idx = storage_indices(view.tensor)
                    mask[idx[(idx >= 0) & (idx < source.storage_size)]] = True
                view.mask = mask
        self._resize_virtual()
        self.refresh()

    def invalidate(self) -> None:
        """Values changed: read the visible cells again on the next frame."""
        self._cache_key = None
        self.refresh()

    @property
    def index_width(self) -> int:
        size = self.source.storage_size if self.source else 1
        return len(str(max(size - 1, 0))) + 2

    @property
    def per_row(self) -> int:
        return max(4, (self.size.width - self.index_width - 1) // CELL_WIDTH)

    def _resize_virtual(self) -> None:
        if self.source is None:
            self.virtual_size = Size(0, 0)
            return
        rows = -(-self.source.storage_size // self.per_row)
        self.virtual_size = Size(self.index_width + self.per_row * CELL_WIDTH, rows * LINES_PER_ROW)

    def on_resize(self) -> None:
        self._cache_key = None
        self._resize_virtual()

    def set_highlight(self, cell: int | None) -> None:
        """Mark ``cell`` (the selected element's storage index) and scroll it into view."""
        self.highlight = cell
        if cell is not None and self.source is not None:
            row = cell // self.per_row
            self.scroll_to_region(Region(0, row * LINES_PER_ROW, 1, LINES_PER_ROW),
                                  animate=False, force=True, immediate=True)
        self.refresh()

    # ---- window -------------------------------------------------------------------
    def _window(self, r0: int, r1: int) -> dict[int, tuple[list[Any], list[list[bool]]]]:
        import torch

        from tensorscope.storage import read_cells, reads_cells

        assert self.source is not None
        key = (r0, r1, self.per_row)
        if key == self._cache_key:
            return self._cache
        k = self.per_row
        first, last = r0 * k, min(self.source.storage_size, r1 * k)
        cells = torch.arange(first, last, dtype=torch.int64)
        values = read_cells(self.source.reference, cells) if len(cells) else []
        marks = []
        for view in self.source.views:
            if view.mask is not None:
                marks.append(view.mask[first:last].tolist())
            elif view.tensor.element_size() == self.source.reference.element_size():
                hit = reads_cells(view.tensor, cells)
                marks.append(hit.tolist() if hit is not None else [False] * len(cells))
            else:
                marks.append([False] * len(cells))
        self._cache = {}
        for r in range(r0, r1):
            a, b = (r - r0) * k, min((r - r0 + 1) * k, len(cells))
            self._cache[r] = (values[a:b], [m[a:b] for m in marks])
        self._cache_key = key
        return self._cache

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self.source is None:
            return Strip.blank(width)
        sx, sy = self.scroll_offset
        line = sy + y
        row, kind = divmod(line, LINES_PER_ROW)
        k = self.per_row
        total_rows = -(-self.source.storage_size // k)
        if row >= total_rows:
            return Strip.blank(width)
        r0 = sy // LINES_PER_ROW
        r1 = min(total_rows, (sy + self.size.height) // LINES_PER_ROW + 1)
        values, marks = self._window(r0, r1).get(row, ([], []))
        first = row * k
        dim = Style(dim=True)
        selected_view = next((i for i, v in enumerate(self.source.views)
                              if v.name == self.source.selected), None)
        gutter = f"{first:>{self.index_width - 2}}  " if kind == 1 else " " * self.index_width
        segments = [Segment(gutter, dim)]
        for j in range(len(values)):
            cell = first + j
            if kind == 0:
                segments.append(Segment(f"{cell:>{CELL_WIDTH - 1}} ", dim))
            elif kind == 1:
                read_by = [i for i, m in enumerate(marks) if m[j]]
                text = f"{format_value(values[j], CELL_WIDTH - 2):>{CELL_WIDTH - 1}} "
                if cell == self.highlight:
                    colour = self.source.views[selected_view].colour if selected_view is not None else None
                    segments.append(Segment(text[:-1], Style(reverse=True, bold=True, color=colour)))
                    segments.append(Segment(" "))
                elif selected_view is not None and selected_view in read_by:
                    segments.append(Segment(text, Style(color=self.source.views[selected_view].colour,
                                                        bold=True)))
                elif read_by:
                    segments.append(Segment(text))
                else:
                    segments.append(Segment(text, dim))
            else:
                slots = CELL_WIDTH - 1
                marker = []
                for i, m in enumerate(marks[:slots]):
                    marker.append(Segment("▀", Style(color=self.source.views[i].colour)) if m[j]
                                  else Segment(" "))
                pad = slots - len(marker)
                segments.append(Segment(" " * pad))
                segments.extend(marker)
                segments.append(Segment(" "))
        strip = Strip(segments)
        return strip.crop(sx, sx + width).adjust_cell_length(width).simplify()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or self.source is None:
            return
        sx, sy = self.scroll_offset
        x = offset.x + sx - self.index_width
        column = x // CELL_WIDTH
        if x < 0 or column >= self.per_row:
            return
        cell = ((offset.y + sy) // LINES_PER_ROW) * self.per_row + column
        if cell < self.source.storage_size:
            self.post_message(self.CellClicked(self, cell))
