"""Rich renderables for a tensor's layout, shared by ``tensorscope layout`` and the TUI.

Each function takes a :class:`tensorscope.storage.TensorLayout` (plus the tensor where
values are shown) and returns a Rich renderable; nothing here prints.
"""

from __future__ import annotations

from typing import Any, Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tensorscope.storage import TensorLayout, value_window

GRID_LIMIT = 400
"""Tensors up to this many elements get their whole logical grid drawn in the report."""
STRIP_LIMIT = 96
"""Storage strips up to this many cells are drawn whole in the report."""


def format_value(value: Any, width: int = 6) -> str:
    """A value squeezed into ``width`` characters (floats in %g style)."""
    if value is None:  # meta tensors: a layout without values
        text = "·"
    elif isinstance(value, bool):
        text = "T" if value else "F"
    elif isinstance(value, float):
        # The most significant digits that fit: %g drops precision before it overflows.
        for digits in range(max(1, width - 1), 0, -1):
            text = f"{value:.{digits}g}"
            if len(text) <= width:
                break
        else:
            text = f"{value:.0e}"  # e.g. -9.5e-05 in 6 columns: "-1e-04"
    elif isinstance(value, complex):
        text = f"{value.real:.2g}{value.imag:+.2g}j"
        if len(text) > width:
            text = f"{value.real:.1g}{value.imag:+.1g}j"
    else:
        text = str(value)
        if len(text) > width and isinstance(value, int):
            text = f"{value:.{max(0, width - 6)}e}"
    return text if len(text) <= width else text[: width - 1] + "…"


def facts_table(layout: TensorLayout, title: str | None = None) -> Table:
    """Shape, strides, offset, dtype, storage and contiguity as a two-column table."""
    table = Table(show_header=False, box=None, pad_edge=False, title=title,
                  title_justify="left", title_style="bold")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row("shape", str(list(layout.shape)))
    table.add_row("strides", f"{list(layout.strides)}  (in elements of {layout.itemsize} bytes)")
    table.add_row("storage_offset", str(layout.storage_offset))
    table.add_row("dtype", f"{layout.dtype}  ({layout.itemsize} bytes each)")
    table.add_row("device", layout.device + ("" if layout.has_data else "  (layout only, no data)"))
    table.add_row("elements", f"{layout.numel:,}")
    table.add_row("storage", f"{layout.storage_size:,} elements · {layout.storage_nbytes:,} bytes")
    span = "empty" if layout.span is None else f"cells {layout.span[0]}..{layout.span[1]}"
    table.add_row("reads", span + ("  (the whole storage)" if layout.covers_whole_storage else ""))
    formats = Text()
    for i, (name, ok) in enumerate(layout.formats):
        if i:
            formats.append("  ")
        formats.append(("✔ " if ok else "✘ not ") + name, style="green" if ok else "red")
    table.add_row("memory format", formats)
    if layout.expanded_dims:
        table.add_row("expanded", f"dims {list(layout.expanded_dims)} have stride 0: "
                      "their elements all read the same cells")
    if layout.base is not None:
        base = layout.base
        shared = "shares its storage" if layout.shares_storage_with_base else "does NOT share storage"
        table.add_row("view of", f"a tensor of shape {list(base.shape)}, strides "
                      f"{list(base.strides)} ({shared})")
    else:
        table.add_row("view of", "nothing: it owns its storage")
    return table


def _cell(value: str, index: int, width: int, style: str = "") -> Text:
    text = Text(f"{value:>{width}}", style=style)
    text.append(f" @{index:<3}", style="dim")
    return text


def logical_grid(layout: TensorLayout, tensor: Any | None) -> Table | Text:
    """Each element's value (when there is data) and the storage cell it reads (``@n``)."""
    if layout.numel == 0:
        return Text("(no elements)", style="dim")
    if layout.numel > GRID_LIMIT:
        return Text(f"({layout.numel:,} elements: too many to list here; the TUI scrolls them)",
                    style="dim")
    indices = layout.indices().tolist()
    values = value_window(tensor) if (tensor is not None and layout.has_data) else None
    shape = layout.shape or (1,)
    cols = shape[-1]
    rows = layout.numel // cols
    width = 6
    table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
    lead_dims = len(shape) - 1
    table.add_column("", style="dim", no_wrap=True)
    for c in range(cols):
        table.add_column(f"[{c}]" if layout.shape else "", no_wrap=True, justify="right")
    for r in range(rows):
        lead = layout.unravel(r * cols)[:lead_dims] if layout.shape else ()
        label = "[" + ", ".join(str(i) for i in lead) + (", :]" if lead else ":]") if layout.shape else ""
        cells = []
        for c in range(cols):
            k = r * cols + c
            v = format_value(values[k], width) if values is not None else "·"
            cells.append(_cell(v, indices[k], width))
        table.add_row(label, *cells)
    return table


def storage_strip(layout: TensorLayout, limit: int = STRIP_LIMIT) -> Text:
    """The flat storage, one cell per element of the dtype; cells this tensor reads are lit
    (a number shows how many elements read a cell when more than one does)."""
    size = layout.storage_size
    shown = min(size, limit)
    counts: dict[int, int] = {}
    if layout.numel and layout.numel <= 100_000:
        for i in layout.indices().tolist():
            counts[i] = counts.get(i, 0) + 1
    text = Text()
    for n in range(shown):
        hits = counts.get(n, 0)
        if hits == 0:
            text.append("·", style="dim")
        elif hits == 1:
            text.append("█", style="bold green")
        else:
            text.append(str(min(hits, 9)), style="bold yellow")
        if n % 8 == 7:
            text.append(" ")
    if size > shown:
        text.append(f" … {size - shown:,} more cells", style="dim")
    text.append("\n")
    text.append("█ read once  ", style="green")
    text.append("2-9 read by that many elements  ", style="yellow")
    text.append("· not read", style="dim")
    return text


def view_notes(notes: Sequence[tuple[str, str | None, bool, str | None]]) -> Text:
    """Lines like ``view(-1): fails — <torch's error>; why; reshape(-1) copies``."""
    text = Text()
    for i, (shape_text, failure, copies, why) in enumerate(notes):
        if i:
            text.append("\n")
        if failure is None:
            text.append(f"view({shape_text})", style="bold")
            text.append(" works without a copy (reshape would not copy either)", style="green")
        else:
            text.append(f"view({shape_text})", style="bold")
            text.append(" fails: ", style="red")
            text.append(failure)
            if why:
                text.append("\n  why: ", style="bold")
                text.append(why)
            text.append(f"\n  fix: reshape({shape_text}) ", style="bold")
            text.append("copies into new storage" if copies else "works without a copy",
                        style="yellow" if copies else "green")
            text.append(" — or .contiguous() first, which copies too", style="dim")
    return text


def layout_report(layout: TensorLayout, tensor: Any | None, title: str,
                  notes: Sequence[tuple[str, str | None, bool, str | None]] = ()) -> Group:
    """The whole human report of ``tensorscope layout``."""
    parts: list[Any] = [Text(title, style="bold magenta"), Text(""), facts_table(layout), Text("")]
    parts.append(Text("Logical grid — value @ storage index (offset + Σ iₖ·strideₖ)", style="bold"))
    parts.append(logical_grid(layout, tensor))
    parts.append(Text(""))
    cells = "cell" if layout.storage_size == 1 else "cells"
    parts.append(Text(f"Storage strip ({layout.storage_size:,} {cells}, 8 per group)", style="bold"))
    parts.append(storage_strip(layout))
    if notes:
        parts.append(Text(""))
        parts.append(Text("view / reshape", style="bold"))
        parts.append(view_notes(notes))
    if layout.base is not None:
        parts.append(Text(""))
        parts.append(facts_table(layout.base, title="Its base (._base)"))
    return Group(*parts)
