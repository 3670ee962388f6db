"""Rich renderables for a checkpoint: shared by ``tensorscope inspect`` and the Inspect screen.

Each function takes the core's plain objects (:class:`tensorscope.checkpoint.Checkpoint`,
:class:`tensorscope.ckpt_diff.CheckpointDiff`) and returns something Rich can print, so the
terminal report and the TUI panels say the same thing the same way.
"""

from __future__ import annotations

import math
from typing import Any

from tensorscope.app.quantities import human_bytes  # (inspect_detail reads it here)
from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

FORMATS = {
    "zip": "torch.save archive",
    "legacy": "torch.save legacy (pre-1.6) format",
    "torchscript": "TorchScript archive (torch.jit.save)",
}


def number(x: float | None) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.4f}".rstrip("0").rstrip(".")


def percent(x: float | None) -> str:
    """A relative change as a percentage, e.g. 0.074 -> "7.4%"."""
    if x is None:
        return "—"
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x * 100:.3g}%"


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "—" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def header(ckpt: Any) -> Text:
    shared = sum(1 for s in ckpt.storages if len(s.keys) > 1)
    devices = sorted({t.device for t in ckpt.tensors})
    text = Text()
    text.append(ckpt.path, style="bold")
    text.append(f"  {FORMATS.get(ckpt.format, ckpt.format)} · {human_bytes(ckpt.file_bytes)}\n", style="dim")
    text.append(f"{len(ckpt.tensors)} tensors in {len(ckpt.storages)} storages")
    if shared:
        text.append(f" ({shared} shared by several keys: tied weights)", style="yellow")
    if devices:
        text.append(" · saved on " + ", ".join(devices))
    mode = "trusted: full unpickling (--trust)" if ckpt.trusted else "weights_only"
    if ckpt.format == "torchscript":
        mode = "torch.jit.load"
    text.append(f"\nloaded with {mode}, map_location=cpu" + (", mmap" if ckpt.mmap else ""), style="dim")
    return text


def tensors_table(ckpt: Any, limit: int | None = None) -> Table:
    table = Table(title="Tensors", title_justify="left", expand=False, header_style="bold")
    longest = max((len(t.key) for t in ckpt.tensors), default=3)
    table.add_column("key", min_width=min(longest, 48), overflow="fold")
    for col, justify in (("shape", "left"), ("dtype", "left"), ("device", "left"),
                         ("bytes", "right"), ("storage", "left"), ("stride +offset", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    shared = {s.id for s in ckpt.storages if len(s.keys) > 1}
    rows = ckpt.tensors if limit is None else ckpt.tensors[:limit]
    for t in rows:
        storage = Text(t.storage or t.kind, style="yellow bold" if t.storage in shared else "")
        if t.storage in shared:
            storage.append(" shared")
        layout = f"{shape_text(t.stride)} +{t.offset}" if t.storage else "—"
        table.add_row(t.key, shape_text(t.shape), t.dtype, t.device, human_bytes(t.bytes), storage, layout)
    if limit is not None and len(ckpt.tensors) > limit:
        table.caption = f"{len(ckpt.tensors) - limit} more (use --json for all)"
    return table


def shared_table(ckpt: Any) -> Table | None:
    shared = [s for s in ckpt.storages if len(s.keys) > 1]
    if not shared:
        return None
    table = Table(title="Shared storages (one storage, several keys: tied weights)", title_justify="left",
                  header_style="bold")
    table.add_column("storage")
    table.add_column("bytes", justify="right")
    table.add_column("device")
    table.add_column("keys", overflow="fold")
    for s in shared:
        table.add_row(s.id, human_bytes(s.bytes), s.device, ", ".join(s.keys))
    return table


def optimizer_tables(ckpt: Any, limit: int | None = None) -> list[Any]:
    """One block per optimizer; ``limit`` caps the parameter rows (the TUI's panel)."""
    out: list[Any] = []
    for opt in ckpt.optimizers:
        title = f"{opt.kind} state at '{opt.key}'" if opt.key else f"{opt.kind} state (the whole file)"
        groups = Text()
        for i, g in enumerate(opt.groups):
            hyper = ", ".join(f"{k}={v}" for k, v in g.items()
                              if k != "params" and v is not None and v is not False)
            groups.append(f"group {i} ({g['params']} params): ", style="bold")
            groups.append(hyper + "\n", style="dim")
        groups.append(opt.names_note, style="italic")
        table = Table(header_style="bold")
        table.add_column("id", justify="right")
        table.add_column("parameter", overflow="fold")
        table.add_column("step", justify="right")
        table.add_column("state (shape · L2 norm)", overflow="fold")
        shown = opt.params if limit is None else opt.params[:limit]
        for p in shown:
            state = Text()
            for i, m in enumerate(p.moments):
                if i:
                    state.append("\n")
                state.append(m.name, style="cyan")
                state.append(f" {shape_text(m.shape)} · norm {number(m.norm)}")
            for k, v in p.other.items():
                state.append(f"\n{k} = {v}", style="dim")
            table.add_row(str(p.id), p.name or Text("(unnamed)", style="dim"),
                          number(p.step) if p.step is not None else "—", state)
        if not opt.params:
            table.caption = "no per-parameter state (the optimizer has not stepped, or keeps none)"
        elif len(shown) < len(opt.params):
            table.caption = (f"first {len(shown)} of {len(opt.params)} parameters; select a tensor for its own "
                             "state, or run tensorscope inspect FILE --json for all")
        out.append(Group(Text(title, style="bold"), groups, table))
    return out


def metadata_table(ckpt: Any) -> Table | None:
    if not ckpt.metadata:
        return None
    table = Table(title="Metadata", title_justify="left", header_style="bold")
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for k, v in ckpt.metadata.items():
        text = repr(v) if not isinstance(v, str) else v
        table.add_row(k, text if len(text) <= 200 else text[:199] + "…")
    return table


def totals_tables(ckpt: Any) -> list[Table]:
    out = []
    for title, rows in (("Totals by dtype", ckpt.totals_by_dtype()),
                        ("Totals by top-level module (optimizer state apart)", ckpt.totals_by_module())):
        table = Table(title=title, title_justify="left", header_style="bold")
        table.add_column(title.split()[-1] if "dtype" in title else "module")
        table.add_column("tensors", justify="right")
        table.add_column("tensor bytes", justify="right")
        table.add_column("storage bytes", justify="right")
        for name, r in rows.items():
            table.add_row(name, str(r["tensors"]), human_bytes(r["bytes"]), human_bytes(r["storage_bytes"]))
        out.append(table)
    return out


def code_renderables(ckpt: Any, theme: str = "monokai") -> list[Any]:
    out: list[Any] = []
    for name, code in ckpt.code.items():
        label = name or "(root)"
        kind = ckpt.module_types.get(name, "")
        out.append(Text(f"\n{label}  {kind}" if out else f"{label}  {kind}", style="bold"))
        out.append(Syntax(code.rstrip(), "python", theme=theme, line_numbers=False, word_wrap=True))
    return out


STATUS_STYLE = {
    "only_a": ("only in A", "red"),
    "only_b": ("only in B", "green"),
    "shape": ("shape changed", "magenta bold"),
    "dtype": ("dtype changed", "magenta"),
    "changed": ("values moved", "yellow"),
    "same": ("identical", "dim"),
}


def diff_summary(diff: Any) -> Text:
    counts = diff.summary()
    text = Text()
    text.append("A ", style="bold red")
    text.append(diff.a + "\n")
    text.append("B ", style="bold green")
    text.append(diff.b + "\n")
    parts = [f"{counts.get(k, 0)} {STATUS_STYLE[k][0]}" for k in STATUS_STYLE]
    text.append(" · ".join(parts), style="bold")
    return text


def diff_table(diff: Any, *, include_same: bool = False, limit: int | None = None) -> Table:
    table = Table(title="Tensors compared (largest change first)", title_justify="left", header_style="bold")
    longest = max((len(r.key) for r in diff.rows), default=3)
    table.add_column("key", min_width=min(longest, 48), overflow="fold")
    for col, justify in (("status", "left"), ("dtype shape (A → B)", "left"),
                         ("max |B−A|", "right"), ("‖B−A‖/‖A‖", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    rows = [r for r in diff.rows if include_same or r.status != "same"]
    shown = rows if limit is None else rows[:limit]
    for r in shown:
        label, style = STATUS_STYLE[r.status]
        a = "" if r.shape_a is None else f"{r.dtype_a} {shape_text(r.shape_a)}"
        b = "" if r.shape_b is None else f"{r.dtype_b} {shape_text(r.shape_b)}"
        what = a if a == b else (f"{a} → {b}" if a and b else a or b)
        table.add_row(r.key, Text(label, style=style), what, number(r.max_abs_diff), number(r.rel_change))
    hidden = len(rows) - len(shown)
    same = sum(1 for r in diff.rows if r.status == "same")
    notes = []
    if hidden:
        notes.append(f"{hidden} more rows")
    if same and not include_same:
        notes.append(f"{same} identical keys not listed")
    if notes:
        table.caption = " · ".join(notes)
    return table


def diff_metadata_table(diff: Any) -> Table | None:
    if not diff.metadata:
        return None
    table = Table(title="Metadata that differs", title_justify="left", header_style="bold")
    table.add_column("key")
    table.add_column("A", overflow="fold")
    table.add_column("B", overflow="fold")
    for k, a, b in diff.metadata:
        table.add_row(k, "—" if a is None else repr(a), "—" if b is None else repr(b))
    return table
