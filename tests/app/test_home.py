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
