"""A small character plot (points on a grid, optional log x axis) for measured curves such
as the learning-rate range test. Returns plain text; the caller styles it."""

from __future__ import annotations

import math
from typing import Sequence


def text_plot(xs: Sequence[float], ys: Sequence[float | None], *, width: int = 64, height: int = 10,
              log_x: bool = False, x_label: str = "", y_label: str = "") -> str:
    """Plot y against x; None/non-finite y are drawn as ↑ on the top row (off the chart)."""
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and (not log_x or x > 0)]
    if not pts:
        return "(no data)"
    tx = [math.log10(x) if log_x else x for x, _ in pts]
    finite = sorted(y for _, y in pts if y is not None and math.isfinite(y))
    if not finite:
        return "(no finite values)"
    # Clip the top at twice the median so a diverging tail does not flatten the rest of the
    # curve (the clipped points show as ↑ on the top row).
    median = finite[len(finite) // 2]
    lo = finite[0]
    hi = min(finite[-1], median + abs(median)) if median > lo else finite[-1]
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = min(tx), max(tx)
    x1 = x1 if x1 > x0 else x0 + 1.0
    grid = [[" "] * width for _ in range(height)]
    for x, (_, y) in zip(tx, pts):
        col = min(width - 1, int((x - x0) / (x1 - x0) * (width - 1)))
        if y is None or not math.isfinite(y) or y > hi:
            grid[0][col] = "↑"
            continue
        row = height - 1 - min(height - 1, int((y - lo) / (hi - lo) * (height - 1)))
        grid[row][col] = "•"
    lines = []
    for i, row in enumerate(grid):
        label = f"{hi:8.3g}" if i == 0 else (f"{lo:8.3g}" if i == height - 1 else " " * 8)
        lines.append(f"{label} │{''.join(row)}")
    lines.append(" " * 9 + "└" + "─" * width)
    left = f"{10 ** x0:.0e}" if log_x else f"{x0:.3g}"
    right = f"{10 ** x1:.0e}" if log_x else f"{x1:.3g}"
    mid = x_label.center(width - len(left) - len(right))
    lines.append(" " * 10 + left + mid + right)
    if y_label:
        lines.insert(0, f"{y_label} (↑ = off the chart)")
    return "\n".join(lines)
