"""The rank-aware part of the Training screen: one row per rank, and the run's health across ranks.

Shown only for a run whose step records carry a rank (``tensorscope run --nproc N``, a
``torchrun`` script that streamed to tensorscope, or a replay of either); hidden otherwise.

- a status line: how many ranks, the mean loss over ranks at the last complete step,
  whether the parameters are still in sync (checksums after the optimizer step), and any
  straggler;
- a table: per rank its steps, step time, samples/s, memory, last loss, and how it ended
  (failed ranks with their exit code or signal and the first line of their error).

The figures come from :func:`tensorscope.rank_stats.summarize`; it is recomputed at most
once a second (and once more when the run ends), over a bounded tail of the records.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tensorscope.app.quantities import plural
from tensorscope.app.widgets.chart import fmt

REFRESH_S = 1.0
TAIL = 4000
"""Records read per refresh: enough for the straggler windows of every rank, bounded."""


class RankPanel(Vertical):
    """Per-rank figures, mean loss, param-sync and straggler status of a multi-rank run."""

    DEFAULT_CSS = """
    RankPanel { height: auto; max-height: 14; display: none; }
    RankPanel #rk-status { height: auto; padding: 0 1; }
    RankPanel #rk-table { height: auto; max-height: 11; border: round $primary-background-lighten-2; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_refresh = 0.0
        self._last_version = -1
        self._finished_drawn = False

    def compose(self) -> ComposeResult:
        yield Static("", id="rk-status")
        yield DataTable(id="rk-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#rk-table", DataTable)
        # Not focusable while hidden: a one-process run keeps the screen's own focus order.
        table.can_focus = False
        table.border_title = "ranks (the charts below follow rank 0)"
        for label in ("rank", "steps", "step time", "samples/s", "memory", "loss", "state"):
            table.add_column(label, key=label)

    def show(self, snap: Any) -> None:
        """Redraw from a run snapshot, at most once per REFRESH_S (always once at the end)."""
        now = time.monotonic()
        final = bool(getattr(snap, "finished", False))
        if snap.version == self._last_version:
            return
        if final and self._finished_drawn:
            return
        if not final and now - self._last_refresh < REFRESH_S:
            return
        records = snap.records[-TAIL:]
        if not any(r.rank is not None for r in records):
            return  # not a multi-rank run (yet): stay hidden
        from tensorscope.rank_stats import summarize

        self._last_refresh = now
        self._last_version = snap.version
        self._finished_drawn = final
        summary = summarize(records)
        failures = {f.get("rank"): f for f in snap.meta.get("failures") or []}
        self.display = True
        self.query_one("#rk-table", DataTable).can_focus = True
        self.query_one("#rk-status", Static).update(status_line(summary, snap.meta, failures))
        self._table(summary, records, failures)

    def _table(self, summary: Any, records: Any, failures: dict) -> None:
        table = self.query_one("#rk-table", DataTable)
        last_loss: dict[int, float | None] = {}
        for r in records:
            if r.rank is not None and r.phase == "train":
                last_loss[r.rank] = r.loss
        slow = {s.rank for s in summary.stragglers}
        table.clear()
        for rank in sorted(set(summary.ranks) | {r for r in failures if r is not None}):
            f = summary.figures.get(rank)
            unit_mem = "B"
            failure = failures.get(rank)
            if failure is not None:
                how = failure.get("signal") or f"exit {failure.get('exitcode')}"
                state = Text(f"failed ({how})", style="bold red")
                if failure.get("root_cause"):
                    state.append(" first", style="red")
            elif rank in slow:
                state = Text("straggler", style="bold yellow")
            else:
                state = Text("ok", style="green")
            table.add_row(
                str(rank),
                str(f.steps) if f else "0",
                fmt(f.step_time_s, "s") if f else "—",
                fmt(f.samples_per_s) if f else "—",
                fmt(f.memory_bytes, unit_mem) if f else "—",
                fmt(last_loss.get(rank)),
                state,
            )


def status_line(summary: Any, meta: dict, failures: dict) -> Text:
    """Ranks, mean loss, param sync and stragglers; a second line for the first crash."""
    text = Text(no_wrap=True, overflow="ellipsis")
    nproc = meta.get("nproc")
    ranks = len(summary.ranks)
    text.append(f"{ranks} {plural(ranks, 'rank')}", style="bold")
    if nproc and nproc != ranks:
        text.append(f" of {nproc} reporting", style="yellow")
    complete = [p for p in summary.loss if p.ranks == max(ranks, 1)]
    if complete:
        point = complete[-1]
        text.append(f"  ·  mean loss over ranks {fmt(point.loss)} (step {point.step})")
    sync = summary.sync
    text.append("  ·  params ")
    if sync.in_sync is None:
        text.append("sync not checked yet (needs checksums from 2+ ranks)", style="dim")
    elif sync.in_sync:
        text.append(f"in sync ({sync.checked_steps} steps checked)", style="green")
    else:
        text.append(f"DIVERGED at step {sync.first_divergence} "
                    f"({len(sync.mismatches)} of {sync.checked_steps} steps differ)",
                    style="bold red")
    for straggler in summary.stragglers:
        text.append("  ·  ")
        text.append(straggler.describe(), style="yellow")
    root = next((f for f in failures.values() if f.get("root_cause")), None)
    if root is not None:
        how = root.get("signal") or f"exit code {root.get('exitcode')}"
        message = root.get("message") or ""
        text.append(f"\nrank {root.get('rank')} crashed first ({how})"
                    + (f": {message[:120]}" if message else ""), style="bold red")
    return text
