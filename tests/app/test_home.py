"""The home screen, driven with Pilot."""

from __future__ import annotations

from textual.widgets import OptionList

from tensorscope.app.app import make_app
from tensorscope.app.screens import REGISTRY


async def test_home_lists_every_screen() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        options = app.screen.query_one("#home-screens", OptionList)
        assert options.option_count == len(REGISTRY)
        assert app.current_mode == "home"


async def test_unknown_screen_is_a_user_error() -> None:
    import pytest

    from tensorscope.errors import UserError

    with pytest.raises(UserError):
        make_app(screen="nope")


async def test_function_keys_switch_screens_even_while_an_input_has_focus() -> None:
    """Letters are typed into a focused Input; F-keys (priority bindings) still navigate."""
    from textual.widgets import Input

    from tensorscope.app.screens import function_key

    app = make_app(screen="graph")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert isinstance(app.focused, Input)  # the Graph screen focuses its expression input
        await pilot.press("m")  # typed, not navigation
        assert app.current_mode == "graph"
        for e in REGISTRY:
            await pilot.press(function_key(e))
            await pilot.pause()
            assert app.current_mode == e.name
        await pilot.press("f1")
        assert app.current_mode == "home"


async def test_escape_leaves_an_input_so_letters_navigate_again() -> None:
    app = make_app(screen="graph")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await pilot.press("escape")
        assert app.focused is None
        await pilot.press("m")
        await pilot.pause()
        assert app.current_mode == "model"


async def test_an_80x24_terminal_shows_every_screen_one_row_each() -> None:
    # Found in a walk-through: at 80x24 the summaries wrapped under the key column, the
    # list outgrew the window and its last rows (Inspect) could not be reached.
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        options = app.screen.query_one("#home-screens", OptionList)
        assert options.size.height == len(REGISTRY)  # one row each, all shown
        bottom = options.region.y + options.region.height
        assert bottom <= 24 - 1  # above the footer
        # The key hint, all three of its lines, inside the box: the logo makes way for it
        # (it cut the hint after its first line).
        hint = app.screen.query_one("#home-hint")
        box = app.screen.query_one("#home-box")
        assert not app.screen.query_one("#home-logo").display
        assert hint.size.height == 3
        assert hint.region.y + hint.region.height <= box.region.y + box.region.height - 1
    async with make_app().run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert pilot.app.screen.query_one("#home-logo").display  # room for it here

