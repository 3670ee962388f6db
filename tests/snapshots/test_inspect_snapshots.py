"""Snapshots of the Inspect screen at 160x48 (relative paths: no machine paths in the SVG)."""

from __future__ import annotations

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tests import ckpt_factory as make


class TestInspectSnapshots:
    def test_tensor_selected(self, snap_compare, tmp_path, monkeypatch) -> None:
        make.adam_checkpoint(tmp_path / "tiny.pt")
        monkeypatch.chdir(tmp_path)

        async def run_before(pilot) -> None:
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("down", "down", "down", "down", "down", "down", "down", "down")
            await pilot.pause()

        app = make_app(AppContext(checkpoints=["tiny.pt"]), screen="inspect")
        assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)

    def test_diff(self, snap_compare, tmp_path, monkeypatch) -> None:
        make.adam_checkpoint(tmp_path / "a.pt", steps=1)
        make.adam_checkpoint(tmp_path / "b.pt", steps=2, epoch=4)
        monkeypatch.chdir(tmp_path)

        async def run_before(pilot) -> None:
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()

        app = make_app(AppContext(checkpoints=["a.pt", "b.pt"]), screen="inspect")
        assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)
