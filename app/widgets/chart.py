"""A terminal line chart drawn in braille dots, decimated to the widget's width.

:class:`Series` holds one line's points with bounded memory: past ``capacity`` points it
merges neighbours pairwise (keeping each pair's mean), so a 100k-step run costs the same to
draw as a 2k-step one. :class:`LineChart` bins every series into the dots its current width
has (two per cell), draws each bin's min-to-max span (so spikes survive decimation), and
marks events (skipped AMP steps) as red ticks along the top row.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.reactive import reactive
from textual.widget import Widget

EMPTY_LIVE = "no data yet"
"""What a chart with nothing to draw says while its run goes on."""

MAX_LABEL_W = 12
"""The most columns the y-axis labels take (fmt's numbers fit in 11 and a space)."""

# Braille dot bits for (column 0/1, row 0..3 from the top).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@dataclass
class Series:
    """One named line: x (step) and y values, at most ``capacity`` points kept."""

    name: str
    color: str
    capacity: int = 2048
    short: str | None = None
    """The name where the legend is too narrow for every series in full."""
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    bad_xs: list[float] = field(default_factory=list)
    """Where the value was nan or inf: drawn as marks on the top row, not as points."""
    last_bad: float | None = None
    """The latest value when it was nan or inf (the legend says so), else None."""

    def append(self, x: float, y: float | None) -> None:
        if y is None:
            return
        if not math.isfinite(y):
            # Kept apart, not dropped: a loss that turned NaN must show where it did, and
            # the chart's x range must go on with the run.
            self.bad_xs.append(float(x))
            if len(self.bad_xs) > self.capacity:
                del self.bad_xs[: len(self.bad_xs) - self.capacity]
            self.last_bad = float(y)
            return
        self.last_bad = None
        self.xs.append(float(x))
        self.ys.append(float(y))
        if len(self.xs) > self.capacity:
            self.xs = [(self.xs[i] + self.xs[i + 1]) / 2 for i in range(0, len(self.xs) - 1, 2)]
            self.ys = [(self.ys[i] + self.ys[i + 1]) / 2 for i in range(0, len(self.ys) - 1, 2)]

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None

    def clear(self) -> None:
        self.xs.clear()
        self.ys.clear()
        self.bad_xs.clear()
        self.last_bad = None


def fmt(value: float | None, unit: str = "") -> str:
    """A short number: 3 significant digits, engineering suffix for big ones."""
    if value is None or not math.isfinite(value):
        return "—"
    if unit == "B":
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(value) < 1024 or suffix == "TiB":
                return f"{value:.1f} {suffix}" if suffix != "B" else f"{value:.0f} B"
            value /= 1024
    if unit == "s":
        if abs(value) < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if abs(value) < 1:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}{unit}"
    if value == int(value):
        return f"{int(value)}{unit}"  # a GradScaler's 16384, not 1.638e+04
    return f"{value:.4g}{unit}"


class LineChart(Widget):
    """A titled braille chart of one or more series, with a legend of last values."""

    DEFAULT_CSS = """
    LineChart { height: 1fr; min-height: 6; border: round $primary-background-lighten-2;
                padding: 0 1; }
    LineChart:focus { border: round $accent; }
    """

    version: reactive[int] = reactive(0, layout=False)
    """Bumped when the data changed, so the chart redraws."""

    def __init__(self, title: str, *, unit: str = "", log_y: bool = False,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = title
        self.unit = unit
        self.log_y = log_y
        self.series: list[Series] = []
        self.markers: list[float] = []
        """x positions of events drawn as red ticks (skipped steps)."""
        self.marker_label = ""
        self.empty_text = EMPTY_LIVE

    def set_data(self, series: list[Series], markers: list[float] | None = None) -> None:
        self.series = series
        self.markers = list(markers or [])
        self.version += 1

    def render_line(self, y: int) -> Strip:
        # The line API with strips cached per data version: a repaint (focus change, a
        # key press elsewhere) costs a list lookup, not a re-layout of thousands of spans.
        key = (self.version, self.content_size, len(self.markers), self.marker_label,
               self.rich_style, self.empty_text)
        if getattr(self, "_cache_key", None) != key:
            self._cache_key, self._strips = key, self._to_strips(self._draw())
        width = self.content_size.width
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(width, self.rich_style)

    def _to_strips(self, text: Text) -> list[Strip]:
        width = self.content_size.width
        base = self.rich_style
        styles: dict[str, Style] = {}
        strips = []
        for line in text.split("\n", allow_blank=True):
            segments = []
            for piece in line.divide(sorted({span.start for span in line.spans}
                                            | {span.end for span in line.spans})):
                if not piece.plain:
                    continue
                name = str(piece.spans[0].style) if piece.spans else str(line.style or "")
                if name not in styles:
                    styles[name] = base + Style.parse(name) if name else base
                segments.append(Segment(piece.plain, styles[name]))
            strips.append(Strip(segments).crop_extend(0, width, base))
        return strips

    def _empty(self, width: int) -> Text:
        # Wrapped to the chart's width: these say why a chart is empty, and a cut-off
        # reason ("no GradScaler seen in this run (AMP scale and ski") says nothing.
        return Text("\n".join(textwrap.wrap(self.empty_text, max(width, 8))), style="dim")

    def _draw(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        drawn = [s for s in self.series if s.ys or s.bad_xs]
        if width < 8 or height < 2:
            return Text("")
        if not drawn:
            return self._empty(width)
        legend = self._legend(drawn, width)
        plot_h = max(1, height - 1)
        arrays = [(s, np.asarray(s.xs, dtype=float), self._tf_array(s.ys)) for s in drawn]
        finite = [a[2][np.isfinite(a[2])] for a in arrays]
        finite = [f for f in finite if f.size]
        if not finite:
            out = Text(no_wrap=True, overflow="crop")
            out.append_text(legend)
            out.append("\nno finite value to plot: every one is nan or inf", style="bold red")
            return out
        lo, hi = min(float(f.min()) for f in finite), max(float(f.max()) for f in finite)
        if hi - lo < 1e-12:
            pad = abs(hi) * 0.05 or 1.0
            lo, hi = lo - pad, hi + pad
        top, bottom = fmt(self._inv(hi), self.unit), fmt(self._inv(lo), self.unit)
        # The axis labels and a space before the plot: a 9-character label ("1.002e+04",
        # "314.7 MiB") used to touch the first column of dots.
        label_w = min(max(9, len(top) + 1, len(bottom) + 1), MAX_LABEL_W)
        plot_w = max(2, width - label_w)
        every_x = [a[1] for a in arrays if a[1].size] + [np.asarray(s.bad_xs) for s in drawn
                                                          if s.bad_xs]
        x_lo = min(float(x.min()) for x in every_x)
        x_hi = max(float(x.max()) for x in every_x)
        x_span = (x_hi - x_lo) or 1.0
        dots_w, dots_h = plot_w * 2, plot_h * 4
        cells = [[0] * plot_w for _ in range(plot_h)]
        colors: list[list[str | None]] = [[None] * plot_w for _ in range(plot_h)]
        for s, xs, ys in arrays:
            keep = np.isfinite(ys)
            xs, ys = xs[keep], ys[keep]
            if not xs.size:
                continue
            # Vectorised decimation: each dot column keeps the min and max of its points.
            cols = np.clip(((xs - x_lo) / x_span * (dots_w - 1) + 0.5).astype(int), 0, dots_w - 1)
            order = np.argsort(cols, kind="stable")
            cols, ys = cols[order], ys[order]
            starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
            bins = dict(zip(cols[starts].tolist(),
                            zip(np.minimum.reduceat(ys, starts).tolist(),
                                np.maximum.reduceat(ys, starts).tolist())))

            def dot(col: int, r: int, point: bool = False, color: str = s.color) -> None:
                cy, dy = divmod(r, 4)
                cx, dx = divmod(col, 2)
                cells[cy][cx] |= _DOTS[dx][dy]
                # A cell has one colour: a series' own points take it from an earlier
                # series, its joining lines do not. (Evaluation losses, a point per epoch,
                # sat on the train loss's line and were all drawn in its colour.)
                if point or colors[cy][cx] is None:
                    colors[cy][cx] = color

            prev: tuple[int, int] | None = None
            for col in sorted(bins):
                a, b = bins[col]
                r0 = self._row(b, lo, hi, dots_h)
                r1 = self._row(a, lo, hi, dots_h)
                for r in range(r0, r1 + 1):  # the bin's min-to-max span: spikes survive
                    dot(col, r, True)
                mid = (r0 + r1) // 2
                if prev is not None:  # a straight line from the previous bin's middle
                    pc, pr = prev
                    steps = max(col - pc, abs(mid - pr))
                    for k in range(1, steps):
                        dot(pc + round((col - pc) * k / steps), pr + round((mid - pr) * k / steps))
                prev = (col, mid)
        def column(x: float) -> int:
            return min(plot_w - 1, int((x - x_lo) / x_span * (dots_w - 1) + 0.5) // 2)

        marker_cols = {column(mx) for mx in self.markers}
        bad_cols = {column(bx) for s in drawn for bx in s.bad_xs}
        # Runs of one style become one span: Textual's cost grows with spans, not characters.
        out = Text(no_wrap=True, overflow="crop")
        out.append_text(legend)
        for cy in range(plot_h):
            if cy == 0:
                label = top
            elif cy == plot_h - 1:
                label = bottom
            else:
                label = ""
            out.append("\n")
            out.append(f"{label:>{label_w - 1}} "[:label_w], style="dim")
            run_style, run = "", []
            for cx in range(plot_w):
                bits = cells[cy][cx]
                if cy == 0 and cx in bad_cols:
                    char, style = "×", "bold red"  # nan or inf here
                elif cy == 0 and cx in marker_cols and not bits:
                    char, style = "▼", "bold red"
                elif bits:
                    char = chr(0x2800 + bits)
                    style = "bold red" if cx in marker_cols else (colors[cy][cx] or "")
                elif cx in marker_cols:
                    char, style = "│", "red dim"
                else:
                    char, style = " ", ""
                if style != run_style and run:
                    out.append("".join(run), style=run_style or None)
                    run = []
                run_style = style
                run.append(char)
            if run:
                out.append("".join(run), style=run_style or None)
        return out

    def _legend(self, drawn: list[Series], width: int) -> Text:
        legend = self._legend_text(drawn, compact=False)
        if legend.cell_len > width:
            # Every series' last value matters more than the step number and the spacing
            # (three memory lines in a third of 160 columns lost the peak to the ellipsis).
            legend = self._legend_text(drawn, compact=True)
        legend.truncate(width)
        return legend

    def _legend_text(self, drawn: list[Series], compact: bool) -> Text:
        legend = Text(no_wrap=True, overflow="ellipsis")
        gap = " " if compact else "  "
        for i, s in enumerate(drawn):
            if i:
                legend.append(gap)
            legend.append("━ ", style=s.color)
            legend.append(f"{(s.short or s.name) if compact else s.name} ", style="dim")
            if s.last_bad is not None:
                legend.append(str(s.last_bad) + ("" if compact else " "), style="bold red")
            else:
                legend.append(fmt(s.last, self.unit) + ("" if compact else " "), style="bold")
        if self.markers and self.marker_label:
            legend.append(f"{gap}▼ {self.marker_label} ×{len(self.markers)}", style="bold red")
        if not compact:
            last_x = max(max(s.xs[-1] if s.xs else -math.inf, s.bad_xs[-1] if s.bad_xs else -math.inf)
                         for s in drawn)
            legend.append(f"  step {int(last_x)}", style="dim")
        return legend

    def _tf_array(self, ys: list[float]) -> np.ndarray:
        values = np.asarray(ys, dtype=float)
        if not self.log_y:
            return values
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, np.log10(values), np.nan)

    def _inv(self, v: float) -> float:
        return 10 ** v if self.log_y else v

    @staticmethod
    def _row(v: float, lo: float, hi: float, dots_h: int) -> int:
        frac = (v - lo) / (hi - lo)
        return max(0, min(dots_h - 1, int(round((1 - frac) * (dots_h - 1)))))
