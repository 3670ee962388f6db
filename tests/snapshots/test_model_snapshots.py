"""Snapshots of the Model screen at 160x48 (structure only: live numbers and timings vary)."""

from __future__ import annotations

from tensorscope import zoo
from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext


class TestModelScreen:
    def test_examples_offered_without_a_model(self, snap_compare) -> None:
        assert snap_compare(make_app(AppContext(), screen="model"), terminal_size=(160, 48))

    def test_two_layer_mlp_structure(self, snap_compare) -> None:
        ex = zoo.get("two_layer_mlp")

        async def select_fc1(pilot) -> None:
            await pilot.pause()
            await pilot.press("down")
            await pilot.pause()

        app = make_app(AppContext(model=ex.model, model_step=ex.step), screen="model")
        assert snap_compare(app, terminal_size=(160, 48), run_before=select_fc1)
