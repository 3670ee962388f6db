"""The Storage screen, driven with Pilot: statements, selection, writes through views,
failed views, bad input and a huge tensor."""

from __future__ import annotations

from textual.widgets import Input, OptionList, RichLog, Static

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.app.widgets.storage_strip import StorageStrip
from tensorscope.app.widgets.tensor_grid import TensorGrid

SIZE = (160, 48)
SYLLABUS = ["x = torch.arange(12.).reshape(3, 4)", "t = x.T", "col = x[:, 1]"]


def line_text(widget, y: int) -> str:
    return widget.render_line(y).text


def history_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen.query_one("#history", RichLog).lines)


async def type_statement(pilot, text: str) -> None:
    console = pilot.app.screen.query_one("#console", Input)
    console.focus()
    console.value = text
    await pilot.press("enter")
    await pilot.pause()
    for _ in range(200):  # a slow machine: a statement past FOREGROUND_S ends in the background
        if pilot.app.screen._console_job is None:
            break
        await pilot.pause(0.05)


async def test_empty_namespace_explains_itself_and_offers_examples() -> None:
    app = make_app(AppContext(), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert screen.query_one("#welcome").display
        assert not screen.query_one("#storage-main").display
        examples = screen.query_one("#examples", OptionList)
        assert examples.option_count >= 5
        examples.focus()
        examples.highlighted = 0
        await pilot.press("enter")
        await pilot.pause()
        assert "x" in app.context.namespace and screen.selected == "x"
        assert screen.query_one("#storage-main").display


async def test_statement_draws_its_grid() -> None:
    app = make_app(AppContext(), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await type_statement(pilot, "x = torch.arange(12.).reshape(3, 4)")
        grid = app.screen.query_one("#grid", TensorGrid)
        assert grid.source.name == "x"
        rows = [line_text(grid, y) for y in range(4)]
        assert "[0]" in rows[0] and "[3]" in rows[0]
        assert "@0" in rows[1] and "@3" in rows[1] and "11 @11" in rows[3]
        await type_statement(pilot, "t = x.T")
        assert grid.source.name == "t"
        assert "@4" in line_text(grid, 1).split("@0")[1]  # t's first row reads 0, 4, 8


async def test_selection_highlights_the_cell_and_shows_the_arithmetic() -> None:
    app = make_app(AppContext(statements=list(SYLLABUS)), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        screen.query_one("#tensor-list", OptionList).focus()
        # Select t, then move to t[2, 1] with the arrows.
        screen.select_tensor("t")
        await pilot.pause()
        grid = screen.query_one("#grid", TensorGrid)
        grid.focus()
        await pilot.press("down", "down", "right")
        await pilot.pause()
        strip = screen.query_one("#strip", StorageStrip)
        assert strip.highlight == 6
        detail = str(screen.query_one("#detail", Static).content)
        assert "t[2, 1]" in detail and "0 + 2·1 + 1·4 = 6" in detail and "x[1, 2]" in detail
        # A click selects too: t[0, 2] reads cell 8.
        x = grid._label_width + 2 * grid.cell_width + 2
        await pilot.click(TensorGrid, offset=(x, 1))
        await pilot.pause()
        assert grid.cursor == (0, 2) and strip.highlight == 8


async def test_write_through_one_view_changes_the_others() -> None:
    app = make_app(AppContext(statements=list(SYLLABUS)), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        await type_statement(pilot, "col[0] = 99")
        screen.select_tensor("t")
        await pilot.pause()
        grid = screen.query_one("#grid", TensorGrid)
        assert "99 @1" in line_text(grid, 2)  # t[1, 0] is cell 1
        strip = screen.query_one("#strip", StorageStrip)
        assert "99" in line_text(strip, 1)
        # All three views of the one storage are marked against the strip.
        assert [v.name for v in strip.source.views] == ["x", "t", "col"]
        assert strip.source.views[2].mask.nonzero().flatten().tolist() == [1, 5, 9]
        legend = str(screen.query_one("#strip-legend", Static).content)
        assert "x: 12 shared cells" in legend and "col: 3 shared cells" in legend


async def test_invalid_view_shows_torchs_error_and_the_fix() -> None:
    app = make_app(AppContext(statements=list(SYLLABUS)), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_statement(pilot, "flat = t.view(12)")
        detail = str(app.screen.query_one("#detail", Static).content)
        # Torch's message alone names no dimension (walk-through): the panel leads with
        # the reason in t's own sizes and strides; torch's words are in the history.
        assert detail.startswith("✘ t.view(12) fails: the new shape merges dim 0 with dim 1")
        assert "view size is not compatible" in history_text(app)
        assert "t.reshape(12) copies (new data pointer)" in detail
        assert ".contiguous().view(12)" in detail
        assert "fix 1" in history_text(app)
        await type_statement(pilot, "flat = t.reshape(12)")
        assert app.screen.selected == "flat"
        assert "view size" not in str(app.screen.query_one("#detail", Static).content)


async def test_bad_input_is_shown_in_place_and_the_app_stays_usable() -> None:
    app = make_app(AppContext(), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        for bad in ("x = torch.(", "y = nope", "1/0", "z = torch.empty(10**14)"):
            await type_statement(pilot, bad)
        text = history_text(app)
        assert "syntax error" in text and "unknown name" in text and "ZeroDivisionError" in text
        assert "more memory than this machine can give" in text
        assert "Traceback" not in text
        await type_statement(pilot, "s = torch.ones(3).to_sparse()")
        await type_statement(pilot, "x = torch.ones(2, 3)")
        assert app.screen.selected == "x"
        labels = [str(o.prompt) for o in app.screen.query_one("#tensor-list", OptionList).options]
        assert any("sparse_coo tensors are not supported yet" in label for label in labels)


async def test_huge_tensor_draws_only_its_window() -> None:
    ctx = AppContext(statements=["big = torch.arange(10**7).reshape(10**4, 10**3)"])
    app = make_app(ctx, screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        grid = app.screen.query_one("#grid", TensorGrid)
        grid.focus()
        await pilot.press("end")
        await pilot.pause()
        assert grid.cursor == (9999, 999)
        assert app.screen.query_one("#strip", StorageStrip).highlight == 10**7 - 1
        cached = sum(len(idx) for idx, _ in grid._cache.values())
        assert 0 < cached < 5_000  # the window only, never the 1e7 elements
        assert any("9999999" in line_text(grid, y) for y in range(grid.size.height))


async def test_every_kind_of_tensor_draws() -> None:
    statements = ["m = torch.empty(3, 4, device='meta').T", "z = torch.tensor(3.5)",
                  "e = torch.empty(0, 3)", "c = torch.ones(2, 2, dtype=torch.complex64)",
                  "h = torch.ones(2, 3, dtype=torch.bfloat16)", "x = torch.arange(8.)",
                  "xi = x.view(torch.int32)", "ex = torch.zeros(3, 1).expand(3, 4)"]
    app = make_app(AppContext(statements=statements), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        grid = screen.query_one("#grid", TensorGrid)
        expected = {"m": "· @4", "z": "3.5 @0", "c": "1+0j @0", "h": "1 @2", "xi": "@1",
                    "ex": "0 @0"}
        for name, words in expected.items():
            screen.select_tensor(name)
            await pilot.pause()
            assert words in line_text(grid, 1), (name, line_text(grid, 1))
        screen.select_tensor("e")
        await pilot.pause()
        assert "no elements" in str(screen.query_one("#grid-facts", Static).content)
        screen.select_tensor("ex")
        await pilot.pause()
        assert "expanded dims [1]" in str(screen.query_one("#grid-facts", Static).content)
        # x and its int32 reinterpretation share one storage, so they are listed together.
        assert any(set(g) == {"x", "xi"} for g in screen._groups)


async def test_console_recalls_history_and_completes_examples() -> None:
    app = make_app(AppContext(), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await type_statement(pilot, "a = torch.ones(2)")
        await type_statement(pilot, "b = a[1:]")
        console = app.screen.query_one("#console", Input)
        await pilot.press("up")
        assert console.value == "b = a[1:]"
        await pilot.press("up", "down")
        assert console.value == "b = a[1:]"
        await pilot.press("down")
        assert console.value == ""
        await pilot.press("t", " ", "=")
        await pilot.pause()
        await pilot.press("right")
        assert console.value == "t = x.T"


async def test_clicking_a_storage_cell_selects_the_element_that_reads_it() -> None:
    app = make_app(AppContext(statements=list(SYLLABUS)), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        screen.select_tensor("t")
        await pilot.pause()
        strip = screen.query_one("#strip", StorageStrip)
        # Cell 6 sits in storage row 1 (cells 6..11 at this width), first column.
        per_row = strip.per_row
        row, column = divmod(6, per_row)
        await pilot.click(StorageStrip, offset=(strip.index_width + column * 9 + 4, row * 3 + 1))
        await pilot.pause()
        grid = screen.query_one("#grid", TensorGrid)
        assert grid.cursor == (2, 1) and strip.highlight == 6  # t[2, 1] reads cell 6
        screen.select_tensor("col")
        await pilot.pause()
        await pilot.click(StorageStrip, offset=(strip.index_width + 4, 1))  # cell 0
        await pilot.pause()
        detail = str(screen.query_one("#detail", Static).content)
        assert "cell 0 is not read by col" in detail and "x[0, 0]" in detail


async def test_a_statement_that_never_ends_leaves_the_ui_usable_and_ctrl_c_stops_it() -> None:
    # Found in a walk-through: `while True: pass` in the console froze the whole app, and
    # no key (ctrl+c, ctrl+q) got through.
    app = make_app(AppContext(), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await type_statement(pilot, "x = torch.arange(6.)")
        screen = app.screen
        console = screen.query_one("#console", Input)
        console.value = "n = 0\nwhile True: n += 1"
        await pilot.press("enter")
        await pilot.pause()
        try:
            assert screen._console_job is not None and "still running" in history_text(app)
            await pilot.press("ctrl+g")  # the UI answers keys meanwhile
            await pilot.pause()
            assert screen.query_one("#grid", TensorGrid).has_focus
            console.value = "y = x * 2"  # refused (kept) while the last one runs
            await pilot.press("ctrl+l", "enter")
            await pilot.pause()
            assert "y" not in app.context.namespace and console.value == "y = x * 2"
            await pilot.press("ctrl+c")
            for _ in range(100):
                await pilot.pause(0.05)
                if screen._console_job is None:
                    break
            assert screen._console_job is None
            assert "interrupted (KeyboardInterrupt)" in history_text(app)
            assert app.context.namespace["n"] > 0  # what it assigned before is kept
        finally:
            if screen._console_job is not None:  # never leave a spinning thread behind
                screen._console_job.interrupt()
        await pilot.press("enter")  # the kept statement runs now
        await pilot.pause()
        assert app.context.namespace["y"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        assert app.is_running


async def test_a_statement_still_running_is_interrupted_when_its_screen_is_rebuilt() -> None:
    # Review: loading a demo rebuilds the Storage screen; a statement left running on the
    # old one would spin with no screen left to stop it.
    from demos import get
    from tensorscope.app.screens.demos import open_scenario_screen

    app = make_app(AppContext(), screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        old = app.screen
        console = old.query_one("#console", Input)
        console.value = "while True: pass"
        await pilot.press("enter")
        await pilot.pause()
        job = old._console_job
        assert job is not None and job.is_alive()
        try:
            app.open_screen("demos")  # the statement goes on meanwhile
            await pilot.pause()
            assert job.is_alive()
            open_scenario_screen(app, get("memory-sharing"), "storage")
            await pilot.pause()
            job.join(5)
            assert app.screen is not old and not job.is_alive() and job.interrupted
        finally:
            job.interrupt()


async def test_an_80x24_terminal_leaves_the_grid_rows_to_draw_in() -> None:
    # Found in a walk-through: at 80x24 the element and history panes (8 + 7 rows) left
    # the grid and the storage strip 2 rows each: the picture itself never showed.
    ctx = AppContext(statements=["x = torch.arange(12.).reshape(3, 4)", "t = x.T"])
    app = make_app(ctx, screen="storage")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#grid", TensorGrid).size.height >= 3
        assert app.screen.query_one("#strip", StorageStrip).size.height >= 3


async def test_grad_mode_set_by_a_statement_holds_for_the_next_ones() -> None:
    # Each statement runs on a thread of its own and grad mode belongs to a thread:
    # `torch.set_grad_enabled(False)` used to be forgotten by the next statement, and the
    # command line's statements (run on the UI thread) changed the UI's own mode.
    import torch

    context = AppContext(statements=["torch.set_grad_enabled(False)"])
    app = make_app(context, screen="storage")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert torch.is_grad_enabled()  # the UI thread keeps its own mode
        await type_statement(pilot, "w = torch.ones(3, requires_grad=True)")
        await type_statement(pilot, "y = w * 2")
        assert not app.context.namespace["y"].requires_grad
        await type_statement(pilot, "torch.set_grad_enabled(True)")
        await type_statement(pilot, "z = w * 2")
        assert app.context.namespace["z"].requires_grad
        assert torch.is_grad_enabled()


async def test_an_80_column_terminal_keeps_each_tensor_s_strides_in_the_sidebar() -> None:
    # Found at 80x24: the sidebar stayed 34 wide (the grid and strip panes got 21 columns
    # each), and narrower, its rows wrapped: names were padded to 6 whatever their length.
    app = make_app(AppContext(statements=SYLLABUS), screen="storage")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        listing = app.screen.query_one("#tensor-list", OptionList)
        assert listing.size.width < 30
        rows = [line_text(listing, y) for y in range(4)]
        assert any("x" in row and "[3, 4] (4, 1)" in row for row in rows), rows
        assert any("t" in row and "[4, 3] (1, 4)" in row for row in rows), rows
        assert app.screen.query_one("#grid-pane").size.width >= 24


async def test_a_cell_cut_by_the_grid_s_edge_is_left_out_not_misquoted() -> None:
    # Walk-through at 120x40: the grid's right edge cut "10 @10" to "10 @1", a wrong cell.
    import re

    app = make_app(AppContext(statements=SYLLABUS), screen="storage")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await type_statement(pilot, "t = x.T")
        grid = app.screen.query_one("#grid", TensorGrid)
        t = app.context.namespace["t"]
        for row in range(t.shape[0]):
            line = line_text(grid, row + 1)
            shown = [int(n) for n in re.findall(r"@(\d+)", line)]
            truth = [row * t.stride(0) + c * t.stride(1) for c in range(t.shape[1])]
            assert shown == truth[:len(shown)], (line, truth)
