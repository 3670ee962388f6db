"""The Training screen, fed by recorded runs (replay) and by a live script under `run`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.app.widgets.chart import LineChart, Series
from tensorscope.runsource import LiveRun, ReplayRun

RECORDS = Path(__file__).resolve().parent.parent / "fixtures" / "records"
FIXTURES = RECORDS.parent


def _app(name: str):
    return make_app(AppContext(run=ReplayRun(str(RECORDS / name))), screen="training")


async def test_replay_charts_every_step_and_marks_the_skipped_one() -> None:
    app = _app("amp_run.jsonl")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        loss = app.screen.query_one("#ch-loss", LineChart)
        assert len(loss.series[0].ys) == 40
        assert loss.markers == [4.0]
        scale = app.screen.query_one("#ch-amp", LineChart).series[0]
        assert scale.ys[3] == scale.ys[2] / 2 and max(scale.ys) > scale.ys[2]
        status = str(app.screen.query_one("#tr-status").content)
        assert "RECORDED" in status and "GradScaler" in status and "step 40" in status
        # Over, with no DataLoader length: how it ended, not advice about progress bars.
        assert str(app.screen.query_one("#tr-eta").content) == "40 steps · done"


async def test_replay_of_a_crash_shows_its_traceback_and_exit_code() -> None:
    app = _app("crash_run.jsonl")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        log = app.screen.query_one("#tr-log")
        text = "\n".join(line.text for line in log.lines)
        assert "RuntimeError" in text and "crashed" in str(log.border_title)
        status = str(app.screen.query_one("#tr-status").content)
        assert "exit code 1" in status and "RuntimeError" in status
        # The whole message, which the one-line status cut (walk-through), has the
        # progress line to itself.
        message = "mat1 and mat2 shapes cannot be multiplied (16x9 and 8x1)"
        assert message not in status
        assert message in str(app.screen.query_one("#tr-eta").content)


@pytest.mark.slow
async def test_a_script_that_exits_non_zero_without_a_traceback_is_failed_not_finished(
        tmp_path: Path) -> None:
    # Found in a walk-through: `run train.py --bogus` (argparse exits 2 before any step)
    # showed FINISHED and blamed a missing DataLoader for the missing progress bar.
    script = tmp_path / "train.py"
    shutil.copy(FIXTURES / "minimal_train.py", script)
    source = LiveRun(str(script), ["--bogus"]).start()
    assert source.wait(60) == 2
    app = make_app(AppContext(run=source), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.3)
        assert source.snapshot().state == "failed" and source.snapshot().finished
        status = str(app.screen.query_one("#tr-status").content)
        assert "FAILED" in status and "exit code 2" in status
        assert str(app.screen.query_one("#tr-eta").content) == "no training step ran"
    source.close()


async def test_truncated_record_is_replayed_with_the_drop_reported(tmp_path: Path) -> None:
    data = (RECORDS / "minimal_run.jsonl").read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[: len(data) // 2])
    source = ReplayRun(str(cut))
    complete = data[: len(data) // 2].count(b"\n")
    assert source.dropped == 1 and len(source.snapshot().records) == complete - 2  # run + model
    app = make_app(AppContext(run=source), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        # The log wraps at the panel's width: compare words, not lines.
        text = " ".join(" ".join(line.text for line in app.screen.query_one("#tr-log").lines).split())
        assert "1 incomplete or unreadable line dropped" in text
        assert "cut off" in text
        # ...and the progress line does not call the cut-off run "done" (walk-through)
        eta = str(app.screen.query_one("#tr-eta").content)
        assert eta.endswith("steps · cut off (no end line)"), eta


async def test_progress_bars_know_the_length_of_the_minimal_run() -> None:
    app = _app("minimal_run.jsonl")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        run_bar = app.screen.query_one("#tr-run")
        assert run_bar.total == 39 and run_bar.progress == 39
        assert "39/39 steps" in str(app.screen.query_one("#tr-eta").content)
        table = app.screen.query_one("#tr-modules")
        assert table.row_count == 6  # the six layers of the Sequential


async def test_nothing_to_show_says_how_to_start_a_run() -> None:
    app = make_app(AppContext(), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        text = str(app.screen.query_one("#tr-empty").content)
        assert "tensorscope run train.py" in text and "tensorscope replay" in text


@pytest.mark.slow
async def test_live_run_pauses_resumes_and_stays_up_after_the_end(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    shutil.copy(FIXTURES / "eval_train.py", script)
    source = LiveRun(str(script), ["--epochs", "2"]).start()
    app = make_app(AppContext(run=source), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("p")
        await pilot.pause()
        assert source.snapshot().state in {"paused", "finished"}
        await pilot.press("p")
        await pilot.pause()
        assert source.wait(120) == 0
        await pilot.pause(0.3)  # one poll interval
        await pilot.pause()
        snap = source.snapshot()
        assert snap.state == "finished" and len(snap.train) == 8
        assert app.is_running  # the UI stays up until the user quits
        assert "FINISHED" in str(app.screen.query_one("#tr-status").content)
        output = "\n".join(line.text for line in app.screen.query_one("#tr-log").lines)
        assert "val loss" in output
        await pilot.press("q")
    source.close()


def test_training_snapshot(snap_compare) -> None:
    assert snap_compare(_app("amp_run.jsonl"), terminal_size=(160, 48))


async def test_module_row_shows_its_activation_histogram() -> None:
    from tensorscope.app.widgets.histogram import Histogram

    app = _app("minimal_run.jsonl")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#tr-modules")
        table.focus()
        await pilot.press("down")
        await pilot.pause()
        hist = app.screen.query_one("#tr-hist", Histogram)
        last = [r for r in ReplayRun(str(RECORDS / "minimal_run.jsonl")).snapshot().records
                if r.modules][-1]
        assert hist.counts == tuple(last.modules["1"]["hist"])
        assert hist.caption.startswith("1: output values")


def _edited_replay(tmp_path: Path, edit):
    """The Training screen on amp_run.jsonl with ``edit(event, index)`` applied to each step
    record that has a gradient norm (index counts those records)."""
    import json

    lines, index = [], 0
    for line in (RECORDS / "amp_run.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "step" and event.get("grad_norm") is not None:
            edit(event, index)
            index += 1
        lines.append(json.dumps(event))
    path = tmp_path / "edited.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return make_app(AppContext(run=ReplayRun(str(path))), screen="training")


async def test_clipped_norms_get_their_own_line_and_detail_spacing_is_named(tmp_path: Path) -> None:
    def clipped(event: dict, _: int) -> None:
        event["grad_norm_clipped"] = event["grad_norm"] / 2  # the script clipped
        event["signals"]["detail_every"] = 5

    app = _edited_replay(tmp_path, clipped)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        grad = app.screen.query_one("#ch-grad", LineChart)
        assert [s.name for s in grad.series] == ["grad norm", "after clipping"]
        assert grad.series[1].ys == [y / 2 for y in grad.series[0].ys]
        assert str(grad.border_title) == "gradient norm (before / after clipping)"
        title = str(app.screen.query_one("#tr-modules-box").border_title)
        assert "1 step in 5" in title


async def test_after_clipping_line_follows_the_norm_on_steps_that_clipped_nothing(tmp_path: Path) -> None:
    def clipped_early(event: dict, index: int) -> None:
        if index < 3:  # only the first steps clip
            event["grad_norm_clipped"] = event["grad_norm"] / 2

    app = _edited_replay(tmp_path, clipped_early)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        before, after = app.screen.query_one("#ch-grad", LineChart).series
        assert after.ys[:3] == [y / 2 for y in before.ys[:3]]
        assert after.ys[3:] == before.ys[3:] and after.last == before.last  # not a stale 1/2


async def test_a_norm_taken_on_some_steps_is_charted_where_taken_and_named(tmp_path: Path) -> None:
    def every_third(event: dict, index: int) -> None:
        event["signals"]["grad_norm_every"] = 3
        if index % 3:
            event["grad_norm"] = None  # not this step's turn: no value, never an estimate

    app = _edited_replay(tmp_path, every_third)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        grad = app.screen.query_one("#ch-grad", LineChart)
        # The spacing first (a narrow panel cuts the title's end); no clipping named in a
        # run that does not clip (walk-through).
        assert str(grad.border_title) == "gradient norm · taken 1 step in 3"
        steps = grad.series[0].xs
        assert steps and all(b - a >= 3 for a, b in zip(steps, steps[1:]))


class _RunningScript:
    """A run that is still going, as far as quitting is concerned."""

    running = True
    quit_choice = None


async def test_ctrl_q_asks_about_a_running_script_before_quitting() -> None:
    from tensorscope.app.screens.training import QuitRunScreen

    run = _RunningScript()
    app = make_app(AppContext(run=run), screen="home")  # ctrl+q works from any screen
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, QuitRunScreen) and app.is_running
        await pilot.press("ctrl+q")  # asked already: one dialog, not two
        await pilot.pause()
        assert len([s for s in app.screen_stack if isinstance(s, QuitRunScreen)]) == 1
        await pilot.press("escape")  # stay
        await pilot.pause()
        assert not isinstance(app.screen, QuitRunScreen) and app.is_running
        assert run.quit_choice is None
        await pilot.press("ctrl+q")
        await pilot.press("l")
        await pilot.pause()
    assert run.quit_choice == "leave"


async def test_ctrl_q_quits_a_replay_at_once() -> None:
    app = _app("minimal_run.jsonl")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


async def test_a_run_whose_loss_was_never_found_says_so(tmp_path: Path) -> None:
    import json

    lines = []
    for line in (RECORDS / "minimal_run.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "step":
            event["loss"] = None  # e.g. `l1 = F.mse_loss(...)`: no module, no `loss` variable
        lines.append(json.dumps(event))
    path = tmp_path / "no_loss.jsonl"
    path.write_text("\n".join(lines) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(path))), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        text = app.screen.query_one("#ch-loss", LineChart).empty_text
        assert text.startswith("no loss found in 39 steps") and "`loss`" in text


async def test_pause_is_offered_only_while_a_script_runs() -> None:
    replay = _app("minimal_run.jsonl")
    async with replay.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert "p" not in replay.screen.active_bindings  # nothing to pause in a recording
    # (While a script runs, p pauses it: test_live_run_pauses_resumes_and_stays_up_after_the_end.)


async def test_the_epoch_percentage_keeps_room_as_it_grows(tmp_path: Path) -> None:
    # Sized to its first text ("15%"), the label would cut "100%" to "100" later on.
    from textual.widgets._progress_bar import PercentageStatus

    lines = (RECORDS / "minimal_run.jsonl").read_text().splitlines()
    part = tmp_path / "part.jsonl"
    part.write_text("\n".join(lines[:5]) + "\n")  # run, model, three steps: mid-epoch
    app = make_app(AppContext(run=ReplayRun(str(part))), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        shown = [s for s in app.screen.query(PercentageStatus) if s.display]
        assert shown and all(s.size.width >= len("100%") for s in shown)


async def test_autocast_without_a_scaler_is_named_and_float16_is_warned(tmp_path: Path) -> None:
    import json

    for dtype, says in (("bfloat16", "needs no loss scaling"), ("float16", "can underflow")):
        lines = []
        for line in (RECORDS / "minimal_run.jsonl").read_text().splitlines():
            event = json.loads(line)
            if event.get("type") == "step":
                event["amp"] = {"scale": None, "growth_tracker": None, "skipped": False,
                                "autocast_dtype": dtype}
            lines.append(json.dumps(event))
        path = tmp_path / f"{dtype}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        app = make_app(AppContext(run=ReplayRun(str(path))), screen="training")
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()
            chart = app.screen.query_one("#ch-amp", LineChart)
            assert chart.border_title == f"AMP: {dtype} autocast · GradScaler scale"
            assert says in chart.empty_text and not chart.series[0].ys


def test_a_narrow_legend_keeps_every_series_value() -> None:
    # Three CUDA memory lines in a third of 160 columns: the full legend would end in an
    # ellipsis before the peak; the compact one drops the step and shortens the names.
    chart = LineChart("memory", unit="B")
    lines = [Series("allocated", "cyan", short="alloc"), Series("reserved", "yellow", short="resv"),
             Series("peak", "red")]
    for line, value in zip(lines, (65.1, 66.0, 65.2)):
        line.append(78, value * 2**20)
    full = chart._legend(lines, 200).plain
    assert "allocated" in full and "step 78" in full
    narrow = chart._legend(lines, 50).plain
    assert "…" not in narrow and "step" not in narrow
    assert all(f"{name} {value} MiB" in narrow
               for name, value in (("alloc", 65.1), ("resv", 66.0), ("peak", 65.2)))


async def test_a_finished_recording_does_not_promise_data_it_will_never_get(tmp_path: Path) -> None:
    # Found in a walk-through of a demo's recording: empty charts said "no data yet", the
    # memory chart was titled "memory: ? caching allocator", and the per-module row was
    # cut off mid-sentence.
    import json

    path = tmp_path / "bare.jsonl"
    lines = [{"type": "run", "script": "train.py", "argv": []}]
    lines += [{"type": "step", "step": i, "loss": 1.0 / i, "lr": [0.1]} for i in range(1, 6)]
    lines.append({"type": "end", "exit_code": 0})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(path))), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert screen.query_one("#ch-sps", LineChart).empty_text == "none in this run"
        assert screen.query_one("#ch-grad", LineChart).empty_text == "none in this run"
        memory = screen.query_one("#ch-mem", LineChart)
        assert memory.border_title == "memory" and memory.empty_text == "none in this run"
        table = screen.query_one("#tr-modules")
        rows = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert rows[0] == "none in this run: it had no detail steps"
        assert all(len(row) <= 45 for row in rows)  # a third of 160 columns, borders and all


async def test_per_module_table_fits_its_panel_and_shows_inf_nan_only_when_found(tmp_path) -> None:
    # Found at 160x48: seven columns of four-digit numbers outgrew the panel (a third of
    # the width) and cut the gradient norm to "grad no". A column of zeros (inf/nan
    # counts) goes; it comes back, in red, with an output that holds inf/NaN.
    import json

    from textual.widgets import DataTable

    app = _app("minimal_run.jsonl")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#tr-modules", DataTable)
        headers = [str(c.label) for c in table.columns.values()]
        assert headers == ["module", "output", "mean", "std", "|max|", "‖grad‖"]
        assert table.max_scroll_x == 0  # nothing cut off to the right
    lines = (RECORDS / "minimal_run.jsonl").read_text().splitlines()
    last = max(i for i, line in enumerate(lines) if '"modules": {"' in line)
    event = json.loads(lines[last])
    first = next(iter(event["modules"]))
    event["modules"][first].update(nonfinite=3, mean=float("nan"))
    lines[last] = json.dumps(event)
    bad = tmp_path / "nan_run.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(bad))), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#tr-modules", DataTable)
        headers = [str(c.label) for c in table.columns.values()]
        assert headers[-1] == "inf/nan"
        row = table.get_row_at(0)
        assert str(row[headers.index("mean")]) == "nan" and str(row[-1]) == "3"
        assert "red" in str(row[-1].style)


async def test_an_80x24_terminal_gives_the_per_module_panel_to_its_table() -> None:
    # Found at 80x24: the histogram's 5 rows left the table its header and no module.
    app = _app("minimal_run.jsonl")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app.screen.query_one("#tr-hist").display
        assert app.screen.query_one("#tr-modules").region.height >= 4
    app = _app("minimal_run.jsonl")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#tr-hist").display


async def test_axis_labels_keep_a_space_before_the_plot() -> None:
    # Found in a walk-through: nine-character labels ("1.002e+04", "314.7 MiB") touched
    # the first column of dots.
    from textual.app import App

    class One(App):
        def compose(self):
            chart = LineChart("memory", unit="B")
            line = Series("rss", "cyan")
            for step, value in enumerate((300.0, 314.7, 305.0)):
                line.append(step, value * 2**20)
            chart.series = [line]
            yield chart

    app = One()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        chart = app.query_one(LineChart)
        text = chart._draw().plain.splitlines()
        top, bottom = text[1], text[-1]
        assert top.startswith("314.7 MiB ") and bottom.startswith("300.0 MiB ")


async def test_a_crash_message_with_brackets_is_shown_as_it_is(tmp_path: Path) -> None:
    # Review: the progress line took the message as Textual markup: "[/data/train]"
    # raised MarkupError and closed the app; "[b]" vanished.
    import json

    lines = (RECORDS / "crash_run.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        event = json.loads(line)
        if event.get("type") == "error":
            event["message"] = "no such split [/data/train] in [b]"
        out.append(json.dumps(event))
    path = tmp_path / "bracket.jsonl"
    path.write_text("\n".join(out) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(path))), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.3)
        assert app.is_running
        eta = str(app.screen.query_one("#tr-eta").content)
        assert "no such split [/data/train] in [b]" in eta


async def test_an_80_column_status_line_keeps_the_exit_code() -> None:
    # Walk-through at 80 columns: the model's description pushed "exit code 1" and the
    # exception's name off the one-line status.
    app = _app("crash_run.jsonl")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        status = app.screen.query_one("#tr-status")
        shown = status.render_line(0).text
        assert "exit code 1" in shown, shown
        assert "RuntimeError" in app.screen.query_one("#tr-eta").render_line(0).text


async def test_the_status_line_says_from_which_step_a_new_optimizer_is_charted(tmp_path) -> None:
    import json

    lines = (RECORDS / "minimal_run.jsonl").read_text().splitlines()
    model = json.loads(lines[1])
    at = next(i for i, line in enumerate(lines) if json.loads(line).get("step") == 21)
    later = {**model, "optimizer": "SGD", "earlier": [{"optimizer": "AdamW", "until_step": 20}],
             "charted_since": 21, "model_name": "netD", "other_optimizers": ["Adam"],
             "other_optimizer_names": ["optimizerG"]}
    path = tmp_path / "phases.jsonl"
    path.write_text("\n".join([*lines[:at], json.dumps(later), *lines[at:]]) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(path))), screen="training")
    async with app.run_test(size=(220, 48)) as pilot:  # (the whole line)
        await pilot.pause()
        shown = app.screen.query_one("#tr-status").render_line(0).text
        assert "SGD from step 21 (AdamW to 20)" in shown, shown
        # The script's own names tell a GAN's two Sequentials and two Adams apart.
        assert "netD: Sequential" in shown and "also steps: optimizerG: Adam" in shown


async def test_a_120_column_per_module_table_shows_every_column() -> None:
    # Walk-through at 120 columns: a third of the width cut |max| and ‖grad‖ off the table.
    from textual.widgets import DataTable

    app = _app("minimal_run.jsonl")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#tr-modules", DataTable)
        assert table.row_count and table.virtual_size.width <= table.scrollable_content_region.width


async def _drawn(series: list[Series]):
    """A 60x12 LineChart of ``series``, drawn: its Text."""
    from textual.app import App

    chart = LineChart("loss", id="c")

    class One(App):
        def compose(self):
            yield chart

    async with One().run_test(size=(60, 12)) as pilot:
        chart.set_data(series)
        await pilot.pause()
        return chart._draw()


async def test_eval_points_on_the_train_line_keep_their_own_colour() -> None:
    # Walk-through: "━ eval 0.0596" in the legend, but no yellow point on the chart; each
    # eval point fell in a cell the train line had already coloured.
    train, evals = Series("train", "cyan"), Series("eval", "yellow")
    for step in range(1, 201):
        train.append(step, 1.0 / step)
    for step in (50, 100, 150, 200):
        evals.append(step, 1.0 / step)
    text = await _drawn([train, evals])
    plot = text.plain.split("\n", 1)[1]
    start = len(text.plain) - len(plot)
    colored = {str(span.style) for span in text.spans if span.end > start}
    assert "yellow" in colored and "cyan" in colored


async def test_gradient_accumulation_counts_optimizer_steps_per_epoch(tmp_path) -> None:
    # Walk-through: a DataLoader of 64 micro-batches, 4 per optimizer step, and the epoch
    # bar counted 64 steps per epoch (53% at step 34, in the third epoch).
    steps = [{"type": "step", "step": i, "loss": 1.0, "lr": [0.1],
              "signals": {"backward_passes": 4 if i % 2 else None}} for i in range(1, 35)]
    assert (await _bars(tmp_path, 64, steps))[:2] == ((16, 2), (48, 34))


async def _bars(tmp_path, batches_per_epoch: int, steps: list[dict],
                epochs: int = 3) -> tuple[tuple, tuple | None, str]:
    """(total, progress) of the epoch and run bars (None: hidden) over a replay of
    ``steps``, and the text beside them."""
    import json

    from textual.widgets import ProgressBar

    lines = [{"type": "run", "script": "train.py", "argv": []},
             {"type": "model", "model": "Sequential", "parameters": 10, "optimizer": "Adam",
              "batches_per_epoch": batches_per_epoch, "epochs": epochs}, *steps]
    path = tmp_path / "bars.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(path))), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        epoch = app.screen.query_one("#tr-epoch", ProgressBar)
        run = app.screen.query_one("#tr-run", ProgressBar)
        return ((epoch.total, epoch.progress),
                (run.total, run.progress) if run.display else None,
                str(app.screen.query_one("#tr-eta").content))


async def test_a_run_with_no_step_does_not_talk_about_detail_steps(tmp_path) -> None:
    # Walk-through: a script that failed on import got "none in this run: it had no detail
    # steps ... run --detail sampled" and, under it, "no activation recorded yet".
    import json

    from textual.widgets import DataTable

    path = tmp_path / "early.jsonl"
    lines = [{"type": "run", "script": "early.py", "argv": []},
             {"type": "error", "exc_type": "ImportError", "message": "no module named foo",
              "traceback": "Traceback ...\nImportError: no module named foo"},
             {"type": "end", "exit_code": 1}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(path))), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#tr-modules", DataTable)
        rows = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert rows == ["none: the run made no optimizer step"]
        hist = app.screen.query_one("#tr-hist")
        assert "yet" not in str(hist.content)


async def test_the_screenshot_command_makes_its_downloads_folder(tmp_path) -> None:
    # Walk-through on a fresh account: "Failed to save screenshot", no ~/Downloads.
    app = _app("minimal_run.jsonl")
    target = tmp_path / "no" / "such" / "folder"
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.action_screenshot("shot.svg", str(target))
        for _ in range(20):
            await pilot.pause(0.05)
            if (target / "shot.svg").exists():
                break
    assert (target / "shot.svg").read_text().lstrip().startswith("<svg")


async def test_quitting_a_paused_script_says_it_is_paused() -> None:
    from tensorscope.app.screens.training import QuitRunScreen
    from textual.widgets import Label

    app = _app("minimal_run.jsonl")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(QuitRunScreen(paused=True))
        await pilot.pause()
        text = str(app.screen.query_one(Label).content)
        assert text.startswith("The script is paused") and "resume and go on" in text


async def test_a_loss_that_turns_nan_is_marked_where_it_did() -> None:
    # Walk-through of a diverging run: the loss chart stopped at its last finite step (44)
    # while the lr chart ran on to 75, and nothing said the loss had become nan.
    loss = Series("train", "cyan")
    for step in range(1, 76):
        loss.append(step, 1.0 / step if step < 45 else float("nan"))
    legend, top = (await _drawn([loss])).plain.split("\n")[:2]
    assert "train nan" in legend and "step 75" in legend
    marks = [i for i, ch in enumerate(top) if ch == "×"]
    assert marks and min(marks) > len(top) * 0.5  # the second half of the run, to its end
    assert top.rstrip().endswith("×")


async def test_a_histogram_with_nan_outputs_says_how_many_it_left_out(tmp_path) -> None:
    # Walk-through: "output values" over 48 bars, while 464 of the 512 values were nan.
    import json

    events = [json.loads(line) for line in (RECORDS / "minimal_run.jsonl").read_text().splitlines()]
    last = max(i for i, e in enumerate(events) if e.get("type") == "step" and e.get("modules"))
    first = next(iter(events[last]["modules"]))
    events[last]["modules"][first].update(nonfinite=464, numel=512, sampled=512)
    path = tmp_path / "nan.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(path))), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        caption = app.screen.query_one("#tr-hist").caption
        assert caption.endswith("464 of 512 nan/inf, not drawn"), caption


async def test_a_counted_epoch_corrects_the_estimate_from_backward_passes(tmp_path) -> None:
    # Review: the DCGAN tutorial's discriminator makes two backward passes on one batch,
    # so dividing the DataLoader's length by the passes halved the epoch; once the
    # script's own epoch variable has turned over, its count is used instead.
    steps = [{"type": "step", "step": i, "loss": 1.0, "lr": [0.1], "epoch": (i - 1) // 20,
              "signals": {"backward_passes": 2}} for i in range(1, 26)]
    assert (await _bars(tmp_path, 20, steps))[:2] == ((20, 5), (60, 25))


async def test_more_steps_than_the_scripts_length_drop_the_run_bar(tmp_path) -> None:
    # Walk-through of a k-fold script: "run 100% 10/8 steps" from the second fold on.
    steps = [{"type": "step", "step": i, "loss": 1.0, "lr": [0.1]} for i in range(1, 11)]
    _, run, eta = await _bars(tmp_path, 4, steps, epochs=2)
    assert run is None and eta.startswith("10 steps, past the 8 of 2 epochs × 4")
