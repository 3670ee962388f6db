"""The Inspect screen's "Selected" panel: everything about one key of a checkpoint.

For a tensor: shape, dtype, where it was saved from, bytes, its storage and the other keys
viewing that storage, its layout (stride, offset, span; memory formats from
:func:`tensorscope.storage.layout_of`), a small summary of its values, its
optimizer state, and its row of the diff. For a container: what lies under it.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tensorscope.app import inspect_report as report

#: Values are summarised (min/max/mean) up to this many elements: it reads the whole tensor.
STATS_LIMIT = 4_000_000


def _facts(rows: list[tuple[str, Any]], title: str | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", min_width=18)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    if title:
        table.title = title
        table.title_justify = "left"
        table.title_style = "bold underline"
    return table


def node_detail(ckpt: Any, node: Any, diff_row: Any | None = None) -> Any:
    if node.kind == "tensor":
        return _tensor_detail(ckpt, ckpt.tensors[node.tensor], diff_row)
    if node.kind == "value":
        return Group(Text(node.key or node.name, style="bold"), Text(repr(ckpt.metadata.get(node.key, node.summary))))
    under = [ckpt.tensors[n.tensor] for n in node.walk() if n.tensor is not None]
    rows: list[tuple[str, Any]] = [
        ("kind", "file root" if not node.key else node.kind),
        ("holds", node.summary or "—"),
        ("tensors under it", str(len(under))),
        ("tensor bytes", report.human_bytes(sum(t.bytes for t in under))),
    ]
    if not node.key:
        rows.insert(0, ("file", ckpt.path))
        rows.append(("format", report.FORMATS.get(ckpt.format, ckpt.format)))
    storages = {t.storage for t in under if t.storage}
    rows.append(("storages", str(len(storages))))
    hint = Text("\n↑/↓ move through the keys, Enter or space opens/closes a branch; the tabs above hold the "
                "optimizer state, metadata and totals.", style="dim")
    return Group(Text(node.key or node.name, style="bold"), _facts(rows), hint)


def _tensor_detail(ckpt: Any, entry: Any, diff_row: Any | None) -> Any:
    value = ckpt.values.get(entry.key)
    where = entry.device
    if entry.device != "cpu":
        where = f"{entry.device} (opened on cpu through map_location)"
    numel = math.prod(entry.shape) if entry.shape else 1
    rows: list[tuple[str, Any]] = [
        ("shape", report.shape_text(entry.shape) + f"  ({numel:,} elements)"),
        ("dtype", entry.dtype),
        ("saved from", where),
        ("bytes", report.human_bytes(entry.bytes) + (f"  ({entry.bytes:,})" if entry.bytes >= 1024 else "")),
        ("kind", entry.kind + ("  requires_grad" if entry.requires_grad else "")),
    ]
    parts: list[Any] = [Text(entry.key, style="bold"), _facts(rows)]
    storage = ckpt.storage(entry.storage)
    if storage is not None:
        others = [k for k in storage.keys if k != entry.key]
        srows: list[tuple[str, Any]] = [
            ("storage", f"{storage.id} · {report.human_bytes(storage.bytes)} · saved on {storage.device}"),
            ("this tensor uses", f"{report.human_bytes(entry.bytes)} of it"),
        ]
        if others:
            srows.append(("shared with", Text("\n".join(others), style="yellow")))
            srows.append(("", Text("one storage, several keys: tied weights (or views) saved once",
                                   style="dim")))
        else:
            srows.append(("shared with", Text("no other key", style="dim")))
        parts += [Text("\nStorage", style="bold underline"), _facts(srows)]
        parts += [Text("\nLayout", style="bold underline"), _facts(_layout_rows(entry, value))]
    if value is not None:
        stats = _value_rows(value)
        if stats:
            parts += [Text("\nValues", style="bold underline"), _facts(stats)]
    for opt in ckpt.optimizers:
        for p in opt.params:
            named = ckpt.tensor(p.name) if p.name else None
            same = named is not None and (named.key == entry.key or (
                (named.storage, named.offset, named.shape, named.stride)
                == (entry.storage, entry.offset, entry.shape, entry.stride)))
            if same:
                orows: list[tuple[str, Any]] = [("optimizer", f"{opt.key or '(root)'} · {opt.kind} · id {p.id}"),
                                                ("step", report.number(p.step))]
                if named.key != entry.key:
                    orows.append(("held under", Text(f"{named.key} (the same tensor: tied)", style="yellow")))
                orows += [(m.name, f"{report.shape_text(m.shape)} · L2 norm {report.number(m.norm)}")
                          for m in p.moments]
                parts += [Text("\nOptimizer state", style="bold underline"), _facts(orows)]
    if diff_row is not None:
        label, style = report.STATUS_STYLE[diff_row.status]
        drows: list[tuple[str, Any]] = [("status", Text(label, style=style))]
        if diff_row.shape_b is not None and diff_row.status in ("shape", "dtype"):
            drows.append(("in B", f"{diff_row.dtype_b} {report.shape_text(diff_row.shape_b)}"))
        if diff_row.max_abs_diff is not None:
            drows += [("max |B−A|", report.number(diff_row.max_abs_diff)),
                      ("‖B−A‖ / ‖A‖", report.number(diff_row.rel_change))]
        parts += [Text("\nDiff (A → B)", style="bold underline"), _facts(drows)]
    return Group(*parts)


def _layout_rows(entry: Any, value: Any) -> list[tuple[str, Any]]:
    """Stride, offset, contiguity and the storage span, plus the channels_last verdicts
    from :func:`tensorscope.storage.layout_of` where they apply (4-d and 5-d tensors)."""
    rows: list[tuple[str, Any]] = [("stride", report.shape_text(entry.stride)),
                                   ("storage offset", str(entry.offset))]
    if value is None:
        return rows
    rows.append(("contiguous", "yes" if value.is_contiguous() else "no"))
    if entry.shape and all(entry.shape):
        low = entry.offset + sum((n - 1) * s for n, s in zip(entry.shape, entry.stride) if s < 0)
        high = entry.offset + sum((n - 1) * s for n, s in zip(entry.shape, entry.stride) if s > 0)
        size = value.untyped_storage().nbytes() // max(value.element_size(), 1)
        rows.append(("reads storage", f"elements {low} … {high} of {size}"))
    expanded = [str(d) for d, (n, s) in enumerate(zip(entry.shape, entry.stride)) if s == 0 and n > 1]
    if expanded:
        rows.append(("expanded dims", ", ".join(expanded) + " (stride 0: one cell read many times)"))
    from tensorscope.storage import layout_of

    try:
        lay = layout_of(value, entry.key)
    except Exception as exc:  # a layout the storage module does not cover (it says why)
        rows.append(("layout", Text(str(exc), style="dim")))
        return rows
    others = [(name, ok) for name, ok in lay.formats if name != "contiguous"]
    if others:
        rows.append(("memory formats", ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in others)))
    return rows


def _value_rows(t: Any) -> list[tuple[str, Any]]:
    import torch

    if t.layout != torch.strided or t.numel() == 0:
        return []
    if t.numel() > STATS_LIMIT:
        return [("summary", Text(f"not computed for {t.numel():,} elements (kept lazy: the file is "
                                 "memory-mapped)", style="dim"))]
    x = t.detach()
    if x.is_complex():
        x = x.abs()
    if x.dtype == torch.bool:
        return [("true", f"{int(x.sum()):,} of {x.numel():,}")]
    x = x.to(torch.float64)
    finite = torch.isfinite(x)
    rows: list[tuple[str, Any]] = []
    if not bool(finite.all()):
        rows.append(("non-finite", Text(f"{int((~finite).sum()):,} NaN/Inf", style="red bold")))
        x = x[finite]
    if x.numel():
        rows += [("min / max", f"{report.number(float(x.min()))} / {report.number(float(x.max()))}"),
                 ("mean / std", f"{report.number(float(x.mean()))} / "
                                f"{report.number(float(x.std())) if x.numel() > 1 else '—'}"),
                 ("L2 norm", report.number(float(torch.linalg.vector_norm(x))))]
    return rows
