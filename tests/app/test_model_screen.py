"""The Model screen, driven with Pilot: tree, tables, live steps, hook toggles and counts."""

from __future__ import annotations

from textual.widgets import DataTable, OptionList, Static

from tensorscope import zoo
from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.app.widgets.module_tree import ModuleTree


def _ctx(name: str) -> AppContext:
    ex = zoo.get(name)
    return AppContext(model=ex.model, model_step=ex.step)


async def _steps(app, pilot, n: int) -> None:
    for _ in range(n):
        await pilot.press("n")
        await app.workers.wait_for_complete()
        await pilot.pause()


def _status(app) -> str:
    return str(app.screen.query_one("#model-status", Static).content)


async def test_tree_and_tables_show_the_anatomy() -> None:
    ctx = _ctx("two_layer_mlp")
    app = make_app(ctx, screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        tree = app.screen.query_one(ModuleTree)
        labels = [str(n.label) for n in tree.root.children]
        assert [lab.split()[1] for lab in labels] == ["fc1", "relu", "drop", "fc2"]
        params = app.screen.query_one("#params-table", DataTable)
        names = [params.get_row_at(i)[0] for i in range(params.row_count)]
        assert names == ["scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
        buffers = app.screen.query_one("#buffers-table", DataTable)
        assert buffers.get_row_at(0)[0] == "bias_correction"
        summary = str(app.screen.query_one("#model-summary", Static).content)
        assert "965 parameters" in summary
        assert "hooks active: 0" in _status(app)


async def test_steps_record_stats_and_hook_toggles_change_counts() -> None:
    ctx = _ctx("sequential_mlp")
    app = make_app(ctx, screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await _steps(app, pilot, 2)
        screen = app.screen
        assert screen.steps == 2
        # The root row (selected first) is not hooked itself; it says so rather than that
        # it never ran (walk-through).
        assert screen.selected in ("", None)
        root_text = str(screen.query_one("#module-stats", Static).content)
        assert "the model as a whole is not hooked" in root_text and "never calls" not in root_text
        all_hooks = screen.hook_count
        assert all_hooks > 0 and f"hooks active: {all_hooks}" in _status(app)
        assert len(screen.session.hooks.names) == 5
        # Select "0" (first Linear) and switch its hooks off.
        await pilot.press("down")
        await pilot.pause()
        assert screen.selected == "0"
        await pilot.press("h")
        await pilot.pause()
        assert screen.session.hooks.names == ["1", "2", "3", "4"]
        assert screen.hook_count == all_hooks - 1
        await _steps(app, pilot, 1)
        assert "0" not in screen._latest.modules and "2" in screen._latest.modules
        stats_text = str(screen.query_one("#module-stats", Static).content)
        assert "not hooked" in stats_text
        await pilot.press("h")  # back on
        await pilot.pause()
        assert len(screen.session.hooks.names) == 5
        await pilot.press("x")  # detach everything
        await pilot.pause()
        assert screen.hook_count == 0 and "hooks active: 0" in _status(app)
        model = ctx.model
        assert all(not m._forward_hooks for m in model.modules())


async def test_run_and_pause_in_a_worker() -> None:
    ctx = _ctx("inplace_relu")
    app = make_app(ctx, screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        assert app.screen.running.is_set()
        assert "running" in _status(app)
        await pilot.press("r")  # pause
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not app.screen.running.is_set()
        assert app.screen.steps >= 1 and "paused" in _status(app)
        # Stats of the Linear followed by an in-place ReLU, with its gradient norm.
        stats = app.screen._latest.modules["fc1"]
        assert stats["grad_norm"] is not None and stats["grad_norm"] > 0


async def test_no_model_offers_examples_and_opens_one() -> None:
    app = make_app(AppContext(), screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        text = str(app.screen.query_one("#model-empty-text", Static).content)
        assert "No model was given" in text
        options = app.screen.query_one("#model-examples", OptionList)
        assert options.option_count == len(zoo.names())
        options.highlighted = zoo.names().index("cnn_batchnorm")
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.context.model).__name__ == "SmallCNN"
        buffers = app.screen.query_one("#buffers-table", DataTable)
        names = [buffers.get_row_at(i)[0] for i in range(buffers.row_count)]
        assert "features.1.running_mean" in names and "features.1.num_batches_tracked" in names


async def test_failing_step_is_shown_in_place() -> None:
    ex = zoo.get("two_layer_mlp")

    def broken() -> None:
        raise ValueError("data loader ran dry")

    app = make_app(AppContext(model=ex.model, model_step=broken), screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await _steps(app, pilot, 1)
        assert "step failed: ValueError: data loader ran dry" in _status(app)


async def test_model_without_step_shows_structure_only() -> None:
    ex = zoo.get("shared_module")
    app = make_app(AppContext(model=ex.model), screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        assert "structure only" in _status(app)
        assert app.screen.hook_count == 0


async def test_toggle_while_running_and_nothing_left_after_exit() -> None:
    from torch.nn.modules import module as module_globals
    from torch.optim import optimizer as optim_globals

    ctx = _ctx("shared_module")
    app = make_app(ctx, screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("down", "h")  # unhook "inp" while the worker runs
        await pilot.pause()
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert "inp" not in screen.session.hooks.names
        assert set(screen.session.hooks.names) == {"shared", "out"}
        assert screen.hook_count > 0
    model = ctx.model
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(not (p._backward_hooks or {}) for p in model.parameters())
    assert not module_globals._global_forward_hooks and not module_globals._global_forward_pre_hooks
    assert not optim_globals._global_optimizer_post_hooks


async def test_an_80x24_terminal_keeps_every_panel_inside_the_screen() -> None:
    # Found at 80x24: the tree kept 56 columns and the module panel its 38, so the
    # module's facts were cut at the right edge and the parameter tabs had no rows.
    app = make_app(_ctx("two_layer_mlp"), screen="model")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        for selector in ("#model-status", "#module-stats", "#module-hist", "#module-sparks",
                         "#params-table"):
            region = screen.query_one(selector).region
            assert region.width > 0 and region.right <= 80, selector
        assert screen.query_one("#module-stats").size.width >= 20
        assert screen.query_one("#params-table").region.height >= 2


async def test_a_histogram_narrower_than_its_bins_adds_them_up_instead_of_wrapping() -> None:
    # Walk-through at 80x24: 48 bins in a 20-column panel wrapped into broken bars.
    from textual.app import App

    from tensorscope.app.widgets.histogram import Histogram

    class One(App):
        CSS = "Histogram { width: 20; height: 6; }"

        def compose(self):
            yield Histogram()

    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        hist = app.query_one(Histogram)
        hist.counts = tuple(range(48))
        hist.value_range = (-1.0, 1.0)
        await pilot.pause()
        lines = [hist.render_line(y).text.rstrip() for y in range(hist.size.height)]
        bars = lines[: hist.size.height - 2]
        assert all(len(line) <= 20 for line in lines), lines
        assert bars[-1].strip() and "█" in bars[0]  # bars drawn, the tallest reaching the top


async def test_counts_of_one_are_singular() -> None:
    # Walk-through: "1 modules".
    from torch import nn

    app = make_app(AppContext(model=nn.Linear(2, 2)), screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        summary = str(app.screen.query_one("#model-summary", Static).content)
        assert "Linear · 1 module · " in summary and "(2 tensors)" in summary


async def test_under_a_run_the_empty_model_screen_points_to_the_training_screen() -> None:
    # Walk-through: during tensorscope run, Model said "No model was given" while the
    # Training screen named the script's Sequential.
    from pathlib import Path

    from tensorscope.runsource import ReplayRun

    records = Path(__file__).resolve().parent.parent / "fixtures" / "records"
    app = make_app(AppContext(run=ReplayRun(str(records / "minimal_run.jsonl"))), screen="model")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        text = str(app.screen.query_one("#model-empty-text", Static).content)
        assert "The script's model (Sequential)" in text and "Training screen (t)" in text
        assert "No model was given" not in text
