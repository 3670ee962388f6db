"""The Demos and Doctor screens at 160x48 (deterministic: seeded demos, no times or paths)."""

from __future__ import annotations

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.demos import get


def test_demos_screen_snapshot(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    app = make_app(AppContext(demo=get("inplace-autograd")), screen="demos")
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_doctor_screen_snapshot(snap_compare) -> None:
    async def run_before(pilot) -> None:
        for _ in range(2):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()

    app = make_app(AppContext(**get("missing-zero-grad").context_fields()), screen="doctor")
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)
