"""Snapshots of the Storage screen in the states that matter (160x48)."""

from __future__ import annotations

from textual.widgets import Input

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext

SIZE = (160, 48)
SYLLABUS = ["x = torch.arange(12.).reshape(3, 4)", "t = x.T", "col = x[:, 1]", "col[0] = 99"]


class TestStorageScreen:
    def test_welcome_when_nothing_to_show(self, snap_compare) -> None:
        assert snap_compare(make_app(AppContext(), screen="storage"), terminal_size=SIZE)

    def test_views_of_one_storage_with_a_selected_element(self, snap_compare) -> None:
        async def select(pilot) -> None:
            screen = pilot.app.screen
            screen.select_tensor("t")
            screen.query_one("#grid").focus()
            await pilot.press("down", "right")
            await pilot.pause()

        app = make_app(AppContext(statements=list(SYLLABUS)), screen="storage")
        assert snap_compare(app, terminal_size=SIZE, run_before=select)

    def test_invalid_view_with_its_fix(self, snap_compare) -> None:
        async def fail(pilot) -> None:
            console = pilot.app.screen.query_one("#console", Input)
            console.value = "flat = t.view(12)"
            await pilot.press("enter")
            await pilot.pause()

        app = make_app(AppContext(statements=list(SYLLABUS)), screen="storage")
        assert snap_compare(app, terminal_size=SIZE, run_before=fail)

    def test_huge_tensor_scrolled_to_its_end(self, snap_compare) -> None:
        async def scroll(pilot) -> None:
            pilot.app.screen.query_one("#grid").focus()
            await pilot.press("end")
            await pilot.pause()

        app = make_app(AppContext(statements=["big = torch.arange(10**7).reshape(10**4, 10**3)"]),
                       screen="storage")
        assert snap_compare(app, terminal_size=SIZE, run_before=scroll)
