"""The Graph screen, driven with Pilot: open, select, collapse/expand, backward, export."""

from __future__ import annotations

import pytest
import torch
from textual.widgets import Input, Static, Tree

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.app.screens.graph import EMPTY_MESSAGE, GraphScreen
from tensorscope.app.widgets.graph_canvas import GraphCanvas
from tensorscope.export import dot_available
from tests.graph_programs import Net, arithmetic

SIZE = (160, 48)
# The canvas is laid out by graphviz's dot (the outline works without it: see the test below).
needs_dot = pytest.mark.skipif(not dot_available(), reason="graphviz's dot is not installed")


async def settle(app, pilot) -> None:
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


def text_of(widget: Static) -> str:
    content = widget.content
    return content.plain if hasattr(content, "plain") else str(content)


@needs_dot
async def test_empty_screen_explains_and_example_draws_a_graph() -> None:
    app = make_app(AppContext(), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, GraphScreen)
        canvas = screen.query_one(GraphCanvas)
        assert canvas.message == EMPTY_MESSAGE and canvas.layout_shown is None
        await pilot.click("#graph-example")
        await settle(app, pilot)
        g = screen.graph
        assert g is not None and {n.label for n in g.leaves()} == {"0.weight", "0.bias", "2.weight", "2.bias"}
        assert canvas.layout_shown is not None
        assert {b.key for b in canvas.layout_shown.boxes} == {b.key for b in screen.view.nodes}


async def test_expression_error_is_shown_in_place() -> None:
    app = make_app(AppContext(), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#graph-expr", Input).value = "torch.ones(3)"
        await pilot.press("enter")
        await settle(app, pilot)
        banner = screen.query_one("#graph-banner", Static)
        assert "requires_grad=False" in text_of(banner) and banner.has_class("-error")
        assert screen.graph is None


async def test_select_in_outline_shows_saved_tensors_and_versions() -> None:
    prog = arithmetic()
    app = make_app(AppContext(graph_roots={"y": prog["y"]}, namespace={"a": prog["a"], "b": prog["b"]}),
                   screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        tree = screen.query_one("#graph-tree", Tree)
        mul = next(n for n in screen.graph.nodes if n.name == "MulBackward0")
        node = screen._tree_nodes[f"n{mul.id}"]
        tree.move_cursor(node)
        await pilot.pause()
        assert screen.selected_node == mul.id
        details = screen.query_one("#graph-details", Static)
        rendered = app.console.export_text() if False else None
        table = details.content
        from rich.console import Console

        console = Console(width=48, record=True)
        console.print(table)
        text = console.export_text()
        assert "MulBackward0" in text and "self" in text and "other" in text
        assert "version 0 at save, 0 now" in text and "stride (3, 1)" in text
        assert screen.query_one(GraphCanvas).selected == f"n{mul.id}"


@needs_dot
async def test_collapse_and_expand_modules() -> None:
    net = Net()
    out = net(torch.randn(2, 4)).sum()
    app = make_app(AppContext(graph_roots={"out": out}, model=net), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        full = len(screen.view.nodes)
        addmm = next(n for n in screen.graph.nodes if n.name == "AddmmBackward0" and n.module == "head")
        screen._select(node_id=addmm.id)
        await pilot.press("minus")
        await settle(app, pilot)
        assert "head" not in screen.expanded
        assert screen.query_one(GraphCanvas).selected == "m:head"
        assert len(screen.view.nodes) < full
        assert any(b.key == "m:head" for b in screen.query_one(GraphCanvas).layout_shown.boxes)
        await pilot.press("plus")
        await settle(app, pilot)
        assert "head" in screen.expanded and len(screen.view.nodes) == full


async def test_backward_retain_accumulates_then_freed_graph_errors() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    app = make_app(AppContext(graph_roots={"loss": loss}, namespace={"w": w}), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        banner = screen.query_one("#graph-banner", Static)
        await pilot.press("r")
        await settle(app, pilot)
        assert w.grad.tolist() == [2.0, 4.0]
        await pilot.press("r")
        await settle(app, pilot)
        assert w.grad.tolist() == [4.0, 8.0]
        assert "accumulated" in text_of(banner)
        await pilot.press("b")          # last backward without retain_graph: frees the graph
        await settle(app, pilot)
        assert w.grad.tolist() == [6.0, 8.0 + 4.0]
        assert screen.graph.freed and "freed" in text_of(banner)
        await pilot.press("b")          # PyTorch refuses, and the screen says why
        await settle(app, pilot)
        text = text_of(banner)
        assert "second time" in text and "retain_graph=True" in text and banner.has_class("-error")
        assert w.grad.tolist() == [6.0, 12.0]
        # The hint names the key that reruns the forward (it said F5, the Training screen's
        # key, until a walk-through), and the screen shows that key in its footer.
        assert "(ctrl+r)" in text
        assert any(b.key == "ctrl+r" and b.action == "reload" and b.show
                   for b in screen.BINDINGS)


async def test_search_and_export(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    prog = arithmetic()
    app = make_app(AppContext(graph_roots={"y": prog["y"]}, namespace=dict(prog)), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        search = screen.query_one("#graph-search", Input)
        search.value = "sin"
        search.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert screen.graph.nodes[screen.selected_node].name == "SinBackward0"
        screen.query_one(GraphCanvas).focus()
        await pilot.press("x")
        await pilot.pause()
        written = list(tmp_path.glob("tensorscope-graph.*"))
        assert len(written) == 1 and written[0].stat().st_size > 0
        await pilot.press("x")  # a second export keeps the first (it overwrote it silently)
        await pilot.pause()
        names = {p.name for p in tmp_path.glob("tensorscope-graph*")}
        assert names == {written[0].name, written[0].name.replace("graph.", "graph-2.")}


async def test_without_dot_the_outline_works_and_canvas_says_how_to_install(monkeypatch) -> None:
    import tensorscope.export as ex

    monkeypatch.setattr(ex.shutil, "which", lambda name: None)
    prog = arithmetic()
    app = make_app(AppContext(graph_roots={"y": prog["y"]}), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        canvas = screen.query_one(GraphCanvas)
        assert canvas.layout_shown is None and "apt-get install graphviz" in canvas.message
        assert len(screen._tree_nodes) >= 3


@needs_dot
async def test_big_graph_opens_collapsed() -> None:
    layers = []
    for _ in range(60):
        layers += [torch.nn.Linear(4, 4), torch.nn.GELU()]
    net = torch.nn.Sequential(*layers)
    out = net(torch.randn(2, 4)).sum()
    app = make_app(AppContext(graph_roots={"out": out}, model=net), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert len(screen.graph.nodes) > 300
        assert len(screen.view.nodes) <= 120
        assert screen.query_one(GraphCanvas).layout_shown is not None


async def test_inplace_change_is_diagnosed_on_open() -> None:
    x = torch.randn(3, requires_grad=True)
    h = x * 2
    y = h.sin().sum()
    h.add_(1)
    app = make_app(AppContext(graph_roots={"y": y}, namespace={"x": x, "h": h}), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        banner = app.screen.query_one("#graph-banner", Static)
        text = text_of(banner)
        assert "SinBackward0" in text and "version 0" in text and "now at version 1" in text
        await pilot.press("b")
        await settle(app, pilot)
        assert "inplace operation" in text_of(banner) and "out-of-place" in text_of(banner)


@needs_dot
async def test_zoom_levels_relayout_and_click_selects() -> None:
    prog = arithmetic()
    app = make_app(AppContext(graph_roots={"y": prog["y"]}, namespace=dict(prog)), screen="graph")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        canvas = screen.query_one(GraphCanvas)
        detail = canvas.layout_shown
        assert detail.zoom == "detail" and all(b.h >= 3 for b in detail.boxes)
        await pilot.press("z")
        await settle(app, pilot)
        compact = canvas.layout_shown
        assert compact.zoom == "compact" and all(b.h == 1 for b in compact.boxes)
        assert compact.height < detail.height
        box = next(b for b in compact.boxes if b.kind == "leaf")
        canvas.scroll_to(0, 0, animate=False)
        await pilot.pause()
        await pilot.click(GraphCanvas, offset=(box.x + 1 + canvas._pad(), box.y))
        await pilot.pause()
        assert screen.selected_node == box.node_id


@needs_dot
async def test_an_80_column_terminal_still_has_room_for_the_drawing(tmp_path) -> None:
    # Found in a walk-through: the side panes' fixed 40 + 50 columns left the canvas zero
    # columns wide at 80x24, the size many SSH sessions open at.
    app = make_app(AppContext(), screen="graph")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.click("#graph-example")
        await settle(app, pilot)
        canvas = app.screen.query_one(GraphCanvas)
        assert canvas.size.width >= 30 and canvas.layout_shown is not None
        text = "\n".join(canvas.render_line(y).text for y in range(canvas.size.height))
        assert "Backward" in text or "loss" in text  # boxes are drawn, not just borders
        app.save_screenshot(str(tmp_path / "graph-80x24.svg"))


async def test_a_long_pytorch_error_is_shown_to_its_last_line() -> None:
    # At 120 columns the in-place error runs to 9 lines and its advice ("... or clone()
    # before modifying") came last: the banner's 10-line cap cut it off.
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    s = torch.sigmoid(w)
    loss = s.mul_(2).sum()
    app = make_app(AppContext(graph_roots={"loss": loss}, namespace={"w": w}), screen="graph")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("b")
        await settle(app, pilot)
        banner = app.screen.query_one("#graph-banner", Static)
        assert "PyTorch raised" in text_of(banner)
        width = banner.content_region.width
        needed = banner.get_content_height(app.screen.size, app.screen.size, width)
        assert needed > 10 and banner.content_region.height >= needed  # every line has its row
