"""The Training screen: a live (``tensorscope run``) or recorded (``replay``) run, charted.

It polls the run source for a frozen snapshot at 10 Hz (so redraws stay under 20 Hz whatever
the step rate) and feeds only the records that are new since the last poll into bounded
chart series. Keys: ``p`` pauses/resumes the script; ``q`` (and the app's ctrl+q) asks
whether a running script should go on or stop before quitting.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.reactive import Reactive
from textual.widget import Widget
from textual.widgets import Button, DataTable, Header, Label, ProgressBar, RichLog, Static

from tensorscope.app.quantities import plural
from tensorscope.app.widgets.chart import EMPTY_LIVE, LineChart, Series, fmt
from tensorscope.app.widgets.histogram import Histogram
from tensorscope.app.widgets.rank_panel import RankPanel
from tensorscope.app.widgets.steady_footer import SteadyFooter

POLL_S = 0.1
"""How often the screen asks the run for a snapshot (10 Hz: well under the 20 Hz cap)."""
CHART_EVERY_S = 0.5
"""The least time between taking in new data while a run streams."""
GRAD_TITLE = "gradient norm"
GRAD_EMPTY_LIVE = "no gradients seen yet"
CHART_IDS = ("ch-loss", "ch-lr", "ch-grad", "ch-sps", "ch-time", "ch-mem", "ch-amp")
CHARTS_PER_TICK = 2
"""Charts redrawn per poll tick: a full redraw spreads over four ticks (0.4 s)."""
HIST_MIN_ROWS = 36
"""Below this many rows the per-module panel shows its table without the histogram."""
MODULES_WIDE_COLS = 150
"""From this many columns the per-module table fits a third of the screen's width."""


class QuitRunScreen(ModalScreen[str]):
    """Asked on quit while the script still runs: leave it running, stop it, or stay."""

    DEFAULT_CSS = """
    QuitRunScreen { align: center middle; }
    QuitRunScreen > Vertical { width: 72; height: auto; border: thick $warning; padding: 1 2;
                               background: $surface; }
    QuitRunScreen Label { width: 100%; margin-bottom: 1; }
    QuitRunScreen Horizontal { height: auto; align: center middle; }
    QuitRunScreen Button { margin: 0 1; }
    """
    BINDINGS = [
        Binding("l", "dismiss('leave')", "Leave it running"),
        Binding("s", "dismiss('stop')", "Stop the script"),
        Binding("escape", "dismiss('cancel')", "Stay"),
    ]

    def __init__(self, paused: bool = False) -> None:
        super().__init__()
        self.paused = paused

    def compose(self) -> ComposeResult:
        with Vertical():
            # (A paused script is resumed when left running: nobody could resume it later.)
            state = ("The script is paused. When tensorscope quits, it can:\n" if self.paused
                     else "The script is still running. When tensorscope quits, it can:\n")
            leave = ("resume and go on" if self.paused else "go on")
            yield Label(state + f"[dim]l: {leave} (its output follows in this terminal) · "
                        "s: stop (Ctrl-C, then SIGTERM) · Esc: stay here[/]")
            with Horizontal():
                yield Button("Leave it running", id="leave", variant="primary")
                yield Button("Stop the script", id="stop", variant="error")
                yield Button("Stay", id="cancel")

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")


class TrainingScreen(Screen):
    """Charts of one run: loss, lr, grad norm, throughput, step time, memory, AMP, modules."""

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)
    """The focused widget. Textual's own reactive repaints the whole screen on every focus
    move (~45 ms for seven charts, a table and a log under load); the widgets that gain and
    lose :focus are repainted by Textual's focus-style update anyway."""

    DEFAULT_CSS = """
    TrainingScreen #tr-status { height: 1; padding: 0 1; background: $boost; }
    TrainingScreen #tr-progress-row { height: 1; padding: 0 1; }
    TrainingScreen #tr-progress-row > Label { width: auto; margin-right: 1; color: $text-muted; }
    TrainingScreen #tr-progress-row > #tr-eta { width: 1fr; }
    TrainingScreen #tr-progress-row ProgressBar { width: 44; margin-right: 2; }
    TrainingScreen #tr-progress-row Bar { width: 1fr; }
    TrainingScreen #tr-grid { grid-size: 3 2; grid-rows: 1fr 1fr; grid-columns: 1fr 1fr 1fr;
                              height: 2fr; }
    TrainingScreen #tr-bottom { height: 1fr; }
    TrainingScreen #tr-bottom > * { width: 1fr; height: 1fr; }
    TrainingScreen #tr-modules-box { border: round $primary-background-lighten-2; height: 1fr; }
    TrainingScreen #tr-modules { height: 1fr; }
    TrainingScreen #tr-hist { height: 5; }
    TrainingScreen #tr-log { border: round $primary-background-lighten-2; height: 1fr; }
    TrainingScreen #tr-empty { padding: 2 4; }
    """
    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume"),
        # (The app's d, hidden in every footer; here, next to a run, the doctor is the
        # next thing to look at.)
        Binding("d", "app.open_screen('doctor')", "Doctor"),
        # Not in the footer: the app's ctrl+q, shown there, asks the same question.
        Binding("q", "quit_run", "Quit", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._seen = 0
        self._version = -1
        self._drawn_at = 0.0
        self._dirty: list[str] = []
        self._train_steps = 0
        self._passes = 1
        """Backward passes per step, as the latest step that counted them said."""
        self._epoch_now: int | None = None
        self._epoch_began = 0
        """Train steps before the script's current epoch began."""
        self._epoch_len: int | None = None
        """Train steps in the first whole epoch seen (None until one ends)."""
        self._loss_seen = False
        self._state = ""
        self._series = {
            "loss": Series("train", "cyan"), "eval": Series("eval", "yellow"),
            # Short names for a legend a third of 120 columns wide.
            "grad": Series("grad norm", "magenta", short="norm"),
            "clipped": Series("after clipping", "yellow", short="clipped"),
            "sps": Series("samples/s", "green"),
            "data": Series("data wait", "yellow", short="data"), "compute": Series("compute", "cyan"),
            "alloc": Series("allocated", "cyan", short="alloc"),
            "reserved": Series("reserved", "yellow", short="resv"),
            "peak": Series("peak", "red"), "rss": Series("process RSS", "cyan"),
            "scale": Series("scale", "green"),
        }
        self._lr: list[Series] = []
        self._skipped: list[float] = []
        self._memory_kind: str | None = None
        self._autocast: str | None = None  # the autocast dtype the run's steps reported
        self._norm_every = 1  # the run takes the gradient norm on 1 step in this many
        self._modules_shown: object = None

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        source = self.app.context.run
        if source is None:
            yield Static(self._empty_text(), id="tr-empty")
            yield SteadyFooter()
            return
        yield Static("", id="tr-status")
        with Horizontal(id="tr-progress-row"):
            yield Label("epoch", id="tr-epoch-label")
            yield ProgressBar(id="tr-epoch", show_eta=False)
            yield Label("run", id="tr-run-label")
            yield ProgressBar(id="tr-run", show_eta=False)
            yield Label("", id="tr-eta")
        yield RankPanel(id="tr-ranks")  # shows itself only for a multi-rank run
        with Grid(id="tr-grid"):
            yield LineChart("loss", id="ch-loss")
            yield LineChart("learning rate", id="ch-lr")
            yield LineChart(GRAD_TITLE, id="ch-grad")
            yield LineChart("throughput", id="ch-sps")
            yield LineChart("step time: data wait vs compute", unit="s", id="ch-time")
            yield LineChart("memory", unit="B", id="ch-mem")
        # The bottom row is not part of the grid: its middle panel widens on a narrow
        # terminal (see on_resize), while the charts above keep their three equal columns.
        with Horizontal(id="tr-bottom"):
            yield LineChart("AMP: GradScaler scale", id="ch-amp")
            with Vertical(id="tr-modules-box"):
                yield DataTable(id="tr-modules", cursor_type="row", zebra_stripes=True)
                yield Histogram(id="tr-hist")
            yield RichLog(id="tr-log", wrap=True, markup=False, max_lines=2000,
                          min_width=20)  # wrap at the panel's width, not 78
        yield SteadyFooter()

    def _empty_text(self) -> Text:
        from tensorscope.runsource import recent_records

        text = Text()
        text.append("Training\n\n", style="bold")
        text.append("This screen charts a training run as it happens: loss (train and eval), "
                    "learning rate, gradient norm,\nthroughput, step time, memory and AMP, with "
                    "the script's own output beside them.\n\n")
        text.append("Start a run:     ", style="dim")
        text.append("tensorscope run train.py [ARGS...]\n", style="bold")
        text.append("Open a record:   ", style="dim")
        text.append("tensorscope replay run.jsonl", style="bold")
        text.append("   (written by run --record FILE)\n\n", style="dim")
        files = recent_records(".")
        if files:
            text.append("Record files here:\n", style="dim")
            for path in files:
                text.append(f"  tensorscope replay {path}\n")
        else:
            text.append("No record files (*.jsonl) in this folder.", style="dim")
        return text

    def on_mount(self) -> None:
        if self.app.context.run is None:
            return
        self.query_one("#ch-loss", LineChart).marker_label = "skipped"
        self.query_one("#ch-amp", LineChart).empty_text = (
            "no GradScaler seen in this run (AMP scale and skipped steps appear here)")
        self.query_one("#ch-grad", LineChart).empty_text = GRAD_EMPTY_LIVE
        log = self.query_one("#tr-log", RichLog)
        log.border_title = "script output"
        self.query_one("#tr-modules-box").border_title = "per-module output (last detailed step)"
        self._poll()
        self.set_interval(POLL_S, self._poll)

    def on_resize(self, event: events.Resize) -> None:
        # On a short terminal (80x24) the per-module panel is 7 rows: the histogram's 5 left
        # the table a header and no row. The table is the panel's point; the histogram of
        # the highlighted row comes back with the room.
        for hist in self.query("#tr-hist"):  # (none on a screen built with no run)
            hist.display = event.size.height >= HIST_MIN_ROWS
        # Below ~150 columns a third of the width cuts the per-module table's last columns
        # (|max|, ‖grad‖): the table then takes half of the bottom row.
        for box in self.query("#tr-modules-box"):
            box.styles.width = "1fr" if event.size.width >= MODULES_WIDE_COLS else "2fr"
        # The two bars leave the steps and ETA text its room (at 120 columns two bars of
        # 44 cut it to "12/24 steps ·"; at 80 it was gone).
        bar_width = 44 if event.size.width >= MODULES_WIDE_COLS else max(10, (event.size.width - 64) // 2)
        for bar in self.query("#tr-progress-row ProgressBar"):
            bar.styles.width = bar_width

    # --- polling ---------------------------------------------------------------------------

    def _poll(self) -> None:
        run = self.app.context.run
        if run is None:
            return  # a demo without a run was loaded: this screen is on its way out
        self._draw_some(CHARTS_PER_TICK)
        snap = run.snapshot()
        self.query_one(RankPanel).show(snap)
        if snap.version == self._version:
            return
        now = time.monotonic()
        # New data is taken in at most CHART_EVERY_S apart (state changes show at once): a
        # fast run must not starve the keyboard of the UI thread.
        if (now - self._drawn_at < CHART_EVERY_S and snap.state == self._state
                and not snap.finished):
            return
        if snap.state != self._state:
            self.refresh_bindings()  # p appears or goes with the script (see check_action)
        self._drawn_at, self._state = now, snap.state
        self._version = snap.version
        with self.app.batch_update():
            self._ingest(snap)
            self._status(snap)
            self._log(snap)
            self._modules(snap)
        self._dirty = list(CHART_IDS)
        if snap.finished:
            # Over: a chart still empty will stay so. "no data yet" would promise more.
            for chart in self.query(LineChart):
                if chart.empty_text in (EMPTY_LIVE, GRAD_EMPTY_LIVE):
                    chart.empty_text = "none in this run"
            self._draw_some(len(CHART_IDS))

    def _draw_some(self, count: int) -> None:
        """Redraw up to ``count`` charts that have new data: the work of one redraw is
        spread over several ticks, so a key press never waits behind all seven charts."""
        while self._dirty and count > 0:
            self._draw_chart(self._dirty.pop(0))
            count -= 1

    def _ingest(self, snap) -> None:
        records = snap.records
        new = records[self._seen:] if self._seen <= len(records) else records
        self._seen = len(records)
        s = self._series
        for r in new:
            if r.rank not in (None, 0):
                continue  # a multi-rank run: charts follow rank 0, the rank panel has the rest
            self._train_steps += r.phase == "train"
            if r.phase == "eval":
                s["eval"].append(r.step, r.loss)
                continue
            passes = r.signals.get("backward_passes")
            if passes:
                self._passes = int(passes)
            if r.epoch is not None and r.epoch != self._epoch_now:
                if self._epoch_now is not None and self._epoch_len is None:
                    # The first whole epoch seen: its length, counted, beats any estimate.
                    self._epoch_len = self._train_steps - 1 - self._epoch_began
                self._epoch_now, self._epoch_began = r.epoch, self._train_steps - 1
            s["loss"].append(r.step, r.loss)
            self._loss_seen = self._loss_seen or r.loss is not None  # NaN counts: it was found
            for i, lr in enumerate(r.lr):
                while len(self._lr) <= i:
                    palette = ("cyan", "yellow", "green", "magenta", "red")
                    self._lr.append(Series(f"group {len(self._lr)}", palette[len(self._lr) % 5]))
                self._lr[i].append(r.step, lr)
            s["grad"].append(r.step, r.grad_norm)
            every = r.signals.get("grad_norm_every")
            if isinstance(every, int) and not isinstance(every, bool) and every >= 1:
                self._norm_every = every
            clipped = r.grad_norm_clipped
            if clipped is None and s["clipped"].ys:
                clipped = r.grad_norm  # a script that clips, on a step where nothing was clipped
            s["clipped"].append(r.step, clipped)
            s["sps"].append(r.step, r.samples_per_s)
            s["data"].append(r.step, r.data_time_s)
            s["compute"].append(r.step, r.compute_time_s)
            mem = r.memory or {}
            self._memory_kind = mem.get("kind", self._memory_kind)
            s["alloc"].append(r.step, mem.get("allocated"))
            s["reserved"].append(r.step, mem.get("reserved"))
            s["peak"].append(r.step, mem.get("peak"))
            s["rss"].append(r.step, mem.get("rss"))
            amp = r.amp or {}
            self._autocast = amp.get("autocast_dtype") or self._autocast
            s["scale"].append(r.step, amp.get("scale"))
            if amp.get("skipped"):
                self._skipped.append(r.step)
        if self._train_steps >= 3 and not self._loss_seen:
            # Not "no data yet": the steps are here, the loss was never found in them.
            self.query_one("#ch-loss", LineChart).empty_text = (
                f"no loss found in {self._train_steps} steps: no nn loss module (nn.MSELoss, ...) "
                "ran, and no variable named `loss` held it at optimizer.step()")

    def _draw_chart(self, chart_id: str) -> None:
        s = self._series
        chart = self.query_one(f"#{chart_id}", LineChart)
        if chart_id == "ch-loss":
            chart.set_data([s["loss"], s["eval"]], self._skipped)
        elif chart_id == "ch-lr":
            chart.set_data(self._lr)
        elif chart_id == "ch-grad":
            # Under a budget the run takes the exact norm on some steps only (never an
            # estimate on the others): say so where the line is drawn.
            # (The legend names the before / after lines; the panel has no room for both.)
            # The spacing first: on a narrow panel the title's end is cut. "before / after
            # clipping" only for a script that clips (its legend then has both lines).
            clips = bool(s["clipped"].ys)
            title = "gradient norm"
            if self._norm_every > 1:
                title += f" · taken 1 step in {self._norm_every}"
            if clips:
                title += " · before / after clipping" if self._norm_every > 1 else (
                    " (before / after clipping)")
            chart.border_title = title
            chart.set_data([s["grad"], s["clipped"]] if clips else [s["grad"]])
        elif chart_id == "ch-sps":
            chart.set_data([s["sps"]])
        elif chart_id == "ch-time":
            chart.set_data([s["data"], s["compute"]])
        elif chart_id == "ch-mem":
            if self._memory_kind == "cpu-rss":
                chart.border_title = "memory: process RSS (no allocator on CPU)"
                chart.set_data([s["rss"]])
            else:
                # (No kind: no record carried a memory reading, as in a demo's recording.)
                chart.border_title = (f"memory: {self._memory_kind} caching allocator"
                                      if self._memory_kind else "memory")
                chart.set_data([s["alloc"], s["reserved"], s["peak"]])
        elif chart_id == "ch-amp":
            dtype = self._autocast
            if dtype:
                chart.border_title = f"AMP: {dtype} autocast · GradScaler scale"
                if dtype == "float16":
                    chart.empty_text = ("float16 autocast with no GradScaler: small gradients "
                                        "can underflow to zero (use torch.amp.GradScaler)")
                else:
                    chart.empty_text = (f"no GradScaler: {dtype} keeps float32's exponent "
                                        "range, so it needs no loss scaling")
            chart.marker_label = "skipped"
            chart.set_data([s["scale"]], self._skipped)

    def _status(self, snap) -> None:
        last = next((r for r in reversed(snap.records) if r.phase == "train"), None)
        state_style = {"running": "bold green", "paused": "bold yellow", "finished": "bold",
                       "crashed": "bold red", "failed": "bold red", "recorded": "bold",
                       "starting": "dim"}
        text = Text()
        text.append(f" {snap.state.upper()} ", style=f"reverse {state_style.get(snap.state, '')}")
        text.append(f"  {snap.label}", style="bold")
        argv = snap.meta.get("argv") or []
        if argv:
            text.append(" " + " ".join(map(str, argv)), style="dim")
        # A separator: a script's last argument ("30") ran into the step count.
        text.append("  ·  ", style="dim")
        text.append(f"step {last.step if last else 0}")
        if last is not None and last.epoch is not None:
            text.append(f"  epoch {last.epoch}")
        if last is not None and last.loss is not None:
            if math.isfinite(last.loss):
                text.append(f"  loss {fmt(last.loss)}")
            else:
                text.append(f"  loss {last.loss}", style="bold red")  # "nan", not a dash
        # How the run ends, and what went wrong, before the model's description: on an
        # 80-column terminal the line's end is cut, and it took the exit code with it.
        if snap.exit_code is not None:
            text.append(f"   exit code {snap.exit_code}", style="bold red" if snap.exit_code else "bold")
        if snap.error:
            # The type only: the message, often long, has the progress line to itself.
            text.append(f"   {snap.error.get('exc_type')}", style="red")
        problems = {k: v for k, v in snap.counters.items() if v}
        if problems:
            text.append("   " + " ".join(f"{k.replace('_', ' ')} {v}" for k, v in problems.items()),
                        style="yellow")
        model = snap.model or {}
        if model.get("model"):
            text.append(f"   {_named(model.get('model_name'), model['model'])} "
                        f"({fmt(model.get('parameters'))} params) · "
                        f"{_named(model.get('optimizer_name'), model.get('optimizer'))}"
                        f"{_takeover(model)}"
                        + (" · GradScaler" if model.get("scaler") else ""), style="dim")
        others = model.get("other_optimizers")
        if others:
            names = model.get("other_optimizer_names") or [None] * len(others)
            shown = ", ".join(_named(name, kind) for name, kind in zip(names, others))
            text.append(f"  (also steps: {shown}, not charted)", style="yellow")
        # (No key hint here: the footer shows p and ctrl+q, and the hint was what a narrow
        # terminal cut first, to a lone "p".)
        # Fixed size (one line; the ETA label takes the row's rest): new text is a repaint,
        # never a layout pass of the whole screen.
        self.query_one("#tr-status", Static).update(text, layout=False)
        self._progress(snap, model)

    def _progress(self, snap, model: dict) -> None:
        per_epoch = model.get("batches_per_epoch")
        epochs = model.get("epochs")
        steps = self._train_steps
        train = [r for r in snap.records[-60:] if r.phase == "train"]
        if per_epoch and self._epoch_len:
            per_epoch = self._epoch_len  # counted over a whole epoch of the script's own
        elif per_epoch and self._passes > 1:
            # An estimate until a whole epoch is seen: under gradient accumulation the
            # DataLoader's length counts micro-batches, and a step takes one per backward
            # pass (a step with two passes on one batch, as the DCGAN tutorial's
            # discriminator makes, is corrected once its epoch ends).
            per_epoch = max(1, per_epoch // self._passes)
        epoch_bar = self.query_one("#tr-epoch", ProgressBar)
        run_bar = self.query_one("#tr-run", ProgressBar)
        eta = self.query_one("#tr-eta", Label)

        def set_eta(text: str) -> None:
            # The label fills the rest of its one-line row (1fr), so a new text never needs
            # a layout pass; the same text is not even a repaint.
            # Text, not a str: a str is read as markup, and a crash's message may hold
            # brackets ("No such split [/data/train]" raised MarkupError in review).
            if str(eta.content) != text:
                eta.update(Text(text), layout=False)

        for widget in (epoch_bar, run_bar, self.query_one("#tr-epoch-label"),
                       self.query_one("#tr-run-label")):
            widget.display = bool(per_epoch)
        if not per_epoch:
            if snap.error:
                set_eta(f"{_ending(snap)} (its traceback: script output)")
            elif snap.finished and not steps:
                set_eta("no training step ran")
            elif snap.finished:
                # Over: a progress bar would have nothing left to measure, so no word on
                # the DataLoader (a demo or a replay has none to find anyway).
                set_eta(f"{steps} {plural(steps, 'step')} · {_ending(snap)}")
            elif not model:
                set_eta("run length: looked for at the first optimizer step")
            else:
                set_eta("run length unknown: no training DataLoader with a length in the "
                        "script (a shuffling one, or the only one), so no progress bar")
            return
        if self._epoch_now is not None:
            into = min(per_epoch, steps - self._epoch_began)  # from where this epoch began
        else:
            into = steps % per_epoch if steps % per_epoch or not steps else per_epoch
        epoch_bar.update(total=per_epoch, progress=into)
        if epochs and steps > epochs * per_epoch:
            # More steps than the script's epochs x batches (k folds of them, a second
            # phase): the run bar would sit at 100% saying "10/8".
            run_bar.display = False
            self.query_one("#tr-run-label").display = False
            over = (f"{steps} steps, past the {epochs * per_epoch} of {epochs} epochs × "
                    f"{per_epoch}")
            set_eta(f"{over} · {_ending(snap)}" if snap.finished else over)
        elif epochs:
            total = epochs * per_epoch
            run_bar.update(total=total, progress=min(steps, total))
            remaining = max(0, total - steps)
            times = [r.step_time_s for r in train[-50:] if r.step_time_s]
            if snap.finished:
                set_eta(f"{steps}/{total} steps · {_ending(snap)}")
            elif times and remaining:
                seconds = remaining * sum(times) / len(times)
                set_eta(f"{steps}/{total} steps · ETA {_clock(seconds)}")
            else:
                set_eta(f"{steps}/{total} steps")
        else:
            run_bar.display = False
            self.query_one("#tr-run-label").display = False
            set_eta(f"{per_epoch} steps per epoch; epoch count unknown")

    def _log(self, snap) -> None:
        log = self.query_one("#tr-log", RichLog)
        shown = getattr(self, "_log_shown", 0)
        lines = snap.output
        # Counted over the whole run: the snapshot keeps only the last lines, and an index
        # into them stops moving once the window is full.
        new, _ = snap.output_since(max(shown, 0))
        for line in new:
            log.write(Text(line))
        self._log_shown = snap.lines_printed
        if snap.source == "replay" and shown == 0 and not lines:
            meta = snap.meta
            script = os.path.basename(str(meta.get("script", "?")))
            dropped = snap.counters.get("dropped_lines") or 0
            log.write(Text(f"recorded run of {script}", style="bold"))
            count = len(snap.records)
            log.write(Text(f"{count} {plural(count, 'record')} read"
                           + (f"; {dropped} incomplete or unreadable {plural(dropped, 'line')}"
                              " dropped" if dropped else ""),
                           style="yellow" if dropped else "dim"))
            if not meta.get("ended"):
                log.write(Text("the file ends without an end line: the run was cut off",
                               style="yellow"))
            self._log_shown = -1  # replay: written once
        if snap.error and not getattr(self, "_error_shown", False):
            self._error_shown = True
            if snap.source == "replay" or not any("Traceback" in l for l in lines):
                for line in (snap.error.get("traceback") or "").splitlines():
                    log.write(Text(line, style="red"))
            log.border_title = f"script output — crashed: {snap.error.get('exc_type')}"

    def _modules(self, snap) -> None:
        last = next((r for r in reversed(snap.records) if r.phase == "train" and r.modules), None)
        table = self.query_one("#tr-modules", DataTable)
        for hist in self.query("#tr-hist"):
            # The table says why there is nothing; under it, "not recorded *yet*" would
            # promise what a finished run never brings.
            hist.empty_text = "" if last is None else "no activation recorded for this module"
        if last is None:
            stepped = self._train_steps > 0
            empty = ("none, over" if stepped else "no step, over") if snap.finished else "none"
            if self._modules_shown != empty:
                table.clear(columns=True)
                table.add_column("per-module statistics")
                # Short rows: the panel is a third of the screen.
                if not stepped and snap.finished:
                    # Nothing to say about detail: no optimizer step ever came.
                    table.add_row("none: the run made no optimizer step")
                else:
                    table.add_row("none in this run: it had no detail steps" if snap.finished
                                  else "none yet: they come on detail steps")
                    table.add_row("run --detail sampled: as often as 2% of")
                    table.add_row("step time allows; full: every step")
                self._modules_shown = empty
            return
        if self._modules_shown is last:
            return
        self._modules_shown = last
        every = last.signals.get("detail_every")
        self.query_one("#tr-modules-box").border_title = (
            f"per-module output · step {last.step} · 1 step in {every}"
            if isinstance(every, int) and every > 1 else f"per-module output · step {last.step}")
        present = {k for stats in last.modules.values() for k, v in stats.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        keys = [k for k in _MODULE_COLUMNS if k in present]
        keys += sorted(present - set(keys) - {"calls", "numel", "min", "max"})[: max(0, 5 - len(keys))]
        if not any(stats.get("nonfinite") for stats in last.modules.values()):
            # A column of zeros says nothing and pushed the gradient norm out of the panel
            # (a third of the screen): it shows, in red, when an output holds inf/NaN.
            keys = [k for k in keys if k != "nonfinite"]
        table.clear(columns=True)
        table.add_column("module")
        table.add_column("output")
        for key in keys:
            table.add_column(_MODULE_HEADERS.get(key, key.replace("_", " ")))
        for path, stats in last.modules.items():
            shape = stats.get("shape")
            table.add_row(
                Text(path or "(root)", style="bold"),
                Text("×".join(map(str, shape)) if isinstance(shape, list) else "—", style="dim"),
                *[_cell(k, stats.get(k)) for k in keys], key=path)
        self._show_hist(table.cursor_row)

    @on(DataTable.RowHighlighted, "#tr-modules")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_hist(event.cursor_row)

    def _show_hist(self, row: int) -> None:
        """The highlighted module's activation histogram (the Model screen's widget)."""
        hist = self.query_one("#tr-hist", Histogram)
        last = self._modules_shown
        paths = list(last.modules) if hasattr(last, "modules") else []
        stats = last.modules.get(paths[row]) if 0 <= row < len(paths) else None
        if not stats or not stats.get("hist"):
            hist.counts, hist.value_range, hist.caption = (), None, ""
            return
        hist.counts = tuple(stats["hist"])
        low, high = stats.get("hist_range") or (stats.get("min"), stats.get("max"))
        hist.value_range = (low, high) if low is not None and high is not None else None
        caption = f"{paths[row] or '(model)'}: output values at step {last.step}"
        bad, numel = stats.get("nonfinite") or 0, stats.get("numel") or 0
        if bad and numel:
            # The bars count finite values only: say how many were left out.
            caption += f" · {'~' if stats.get('sampled', numel) < numel else ''}{bad} of {numel} nan/inf, not drawn"
        hist.caption = caption

    # --- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_pause":
            # Only a script that runs can be paused: a replay or a finished run hides p.
            run = self.app.context.run
            return bool(run is not None and run.running)
        return True

    def action_toggle_pause(self) -> None:
        source = self.app.context.run
        if source is None or not source.running:
            self.notify("no running script to pause", severity="warning")
            return
        if source.snapshot().state == "paused":
            source.resume()
            self.notify("resumed")
        elif source.pause():
            self.notify("paused: the script is stopped until you press p again")
        else:  # a multi-rank or attached run: its processes are not ours to stop
            self.notify(getattr(source, "no_pause_reason", "this run cannot be paused"),
                        severity="warning")
        self._poll()

    def action_quit_run(self) -> None:
        ask_before_quit(self.app)


def ask_before_quit(app: Any) -> None:
    """Quit, first asking what becomes of a script that still runs (q here, ctrl+q anywhere):
    the one this app was started to watch, even while a demo's run is on screen."""
    own = app.context.own_run
    source = own if own is not None and own.running else app.context.run
    if source is None or not source.running:
        app.exit()
        return
    if isinstance(app.screen, QuitRunScreen):
        return  # asked already

    def chosen(choice: str | None) -> None:
        if choice in {"leave", "stop"}:
            source.quit_choice = choice
            app.exit()

    try:
        paused = source.snapshot().state == "paused"
    except Exception:  # quitting must work whatever the source can tell
        paused = False
    app.push_screen(QuitRunScreen(paused=paused), chosen)


_MODULE_COLUMNS = ("mean", "std", "abs_max", "grad_norm", "nonfinite")
"""Per-module statistics shown first, in this order, when the records carry them."""

_MODULE_HEADERS = {"abs_max": "|max|", "grad_norm": "‖grad‖", "nonfinite": "inf/nan"}
"""Short headers: the table shares the screen's width with two other panels."""


def _cell(key: str, value: object) -> Text:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Text("—", style="dim")
    if key == "nonfinite" and value:
        return Text(str(value), style="bold red")  # inf/NaN in a module's output
    if isinstance(value, int):
        return Text(str(value))
    # Three significant digits, not fmt's four: six columns fit a third of a 160-column
    # screen, and a histogram below says the rest.
    if value != value or value in (float("inf"), float("-inf")):
        return Text(str(value), style="bold red")  # a statistic of an output with inf/NaN
    return Text(f"{value:.3g}")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _ending(snap) -> str:
    """How a finished run ended, for the progress line: "done" only for a clean end."""
    if snap.crash:
        return f"crashed: {snap.crash}"
    if snap.state == "crashed":
        return "crashed"
    if snap.exit_code not in (None, 0):
        return f"exit code {snap.exit_code}"
    if snap.source == "replay" and not snap.meta.get("ended"):
        return "cut off (no end line)"
    return "done"


def _takeover(model: dict) -> str:
    """Text such as " from step 51 (SGD to 50)" when another optimizer was charted before
    this one (the next training phase, the next fold)."""
    earlier = model.get("earlier") or []
    if not earlier:
        return ""
    last = earlier[-1]
    return f" from step {model.get('charted_since')} ({last.get('optimizer')} to {last.get('until_step')})"



def _named(name: str | None, kind: str | None) -> str:
    """Text such as "netD: Sequential" when the script's name for it is known, else the
    class alone (a GAN's two Sequentials and two Adams are told apart by their names)."""
    return f"{name}: {kind}" if name else str(kind)
