"""The Inspect screen, driven with Pilot: opening files, the tree, details, diffs, errors."""

from __future__ import annotations

from contextlib import asynccontextmanager

from textual.widgets import Input, Static, TabbedContent, Tree

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.app.screens import REGISTRY
from tests import ckpt_factory as make

SIZE = (160, 48)


def _text(widget: Static) -> str:
    content = widget.content
    if hasattr(content, "plain"):
        return content.plain
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(content)
    return console.export_text()


@asynccontextmanager
async def _opened(paths: list, size: tuple[int, int] = SIZE):
    """The Inspect screen on these files, once their loading workers are done."""
    app = make_app(AppContext(checkpoints=[str(p) for p in paths]), screen="inspect")
    async with app.run_test(size=size) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        yield app, pilot


def _find(tree: Tree, key: str):
    stack = [tree.root]
    while stack:
        node = stack.pop()
        if node.data is not None and node.data.key == key:
            return node
        stack.extend(node.children)
    raise AssertionError(key)


def test_registered_under_i() -> None:
    entry = next(e for e in REGISTRY if e.name == "inspect")
    assert entry.key == "i"


async def test_nothing_given_explains_and_offers_a_path_input(tmp_path) -> None:
    app = make_app(AppContext(), screen="inspect")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        intro = _text(app.screen.query_one("#inspect-intro", Static))
        assert "tensorscope inspect FILE" in intro
        assert app.focused is app.screen.query_one("#inspect-path", Input)


async def test_typed_path_opens_and_bad_path_shows_error_in_place(tmp_path) -> None:
    path = make.tied_state_dict(tmp_path / "tied.pt")
    (tmp_path / "notes.txt").write_text("hello")
    app = make_app(AppContext(), screen="inspect")
    async with app.run_test(size=SIZE) as pilot:
        path_input = app.screen.query_one("#inspect-path", Input)
        path_input.value = str(tmp_path / "notes.txt")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        error = app.screen.query_one("#inspect-error", Static)
        assert "not a torch file" in _text(error) and error.display
        path_input.value = str(path)
        path_input.focus()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not error.display
        tree = app.screen.query_one("#inspect-tree", Tree)
        assert _find(tree, "head.weight").data.kind == "tensor"


async def test_selected_tensor_names_the_keys_sharing_its_storage(tmp_path) -> None:
    path = make.adam_checkpoint(tmp_path / "a.pt")
    async with _opened([path]) as (app, pilot):
        tree = app.screen.query_one("#inspect-tree", Tree)
        tree.move_cursor(_find(tree, "model.head.weight"))
        await pilot.pause()
        detail = _text(app.screen.query_one("#inspect-detail", Static))
        assert "shared with" in detail and "model.emb.weight" in detail
        assert "exp_avg" in detail and "held under" in detail  # the tied weight's Adam state
        tabs = app.screen.query_one(TabbedContent)
        tabs.active = "tab-optimizer"
        await pilot.pause()
        optimizer = _text(app.screen.query_one("#inspect-optimizer", Static))
        assert "Adam/AdamW" in optimizer and "model.fc1.bias" in optimizer
        totals = _text(app.screen.query_one("#inspect-totals", Static))
        assert "epoch" in totals and "Totals by dtype" in totals


async def test_cuda_file_says_saved_from_cuda(tmp_path) -> None:
    path = make.cuda_saved(tmp_path / "c.pt")
    async with _opened([path]) as (app, pilot):
        tree = app.screen.query_one("#inspect-tree", Tree)
        tree.move_cursor(_find(tree, "model.fc1.weight"))
        await pilot.pause()
        assert "cuda:0 (opened on cpu" in _text(app.screen.query_one("#inspect-detail", Static))


async def test_two_files_open_the_diff(tmp_path) -> None:
    a = make.adam_checkpoint(tmp_path / "a.pt", steps=1)
    b = make.adam_checkpoint(tmp_path / "b.pt", steps=2)
    async with _opened([a, b]) as (app, pilot):
        assert app.screen.query_one(TabbedContent).active == "tab-diff"
        diff = _text(app.screen.query_one("#inspect-diff", Static))
        assert "values moved" in diff and "model.fc1.weight" in diff
        tree = app.screen.query_one("#inspect-tree", Tree)
        assert "Δ" in _find(tree, "model.fc1.weight").label.plain


async def test_torchscript_code_tab(tmp_path) -> None:
    path = make.torchscript(tmp_path / "ts.pt")
    async with _opened([path]) as (app, pilot):
        tabs = app.screen.query_one(TabbedContent)
        tabs.active = "tab-code"
        await pilot.pause()
        assert "def forward" in _text(app.screen.query_one("#inspect-code", Static))


async def test_malicious_file_refused_in_place_and_not_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = make.malicious(tmp_path / "evil.pt", marker)
    async with _opened([path]) as (app, pilot):
        assert "--trust" in _text(app.screen.query_one("#inspect-error", Static))
        assert not marker.exists()
        assert app.screen.query_one("#inspect-path", Input)  # still usable: type another path


async def test_big_file_branches_fill_when_opened(tmp_path) -> None:
    import torch

    torch.save({"model": {f"layer{i}.weight": torch.zeros(1) for i in range(400)}}, tmp_path / "big.pt")
    async with _opened([tmp_path / "big.pt"]) as (app, pilot):
        tree = app.screen.query_one("#inspect-tree", Tree)
        layer = _find(tree, "model.layer7")
        assert not layer.is_expanded and not layer.children  # not built until opened
        tree.move_cursor(layer)
        await pilot.press("space")
        await pilot.pause()
        assert [c.data.key for c in layer.children] == ["model.layer7.weight"]


async def test_storage_map_marks_every_key_of_a_tied_storage(tmp_path) -> None:
    from tensorscope.app.widgets.storage_strip import StorageStrip

    path = make.adam_checkpoint(tmp_path / "a.pt")
    async with _opened([path]) as (app, pilot):
        tree = app.screen.query_one("#inspect-tree", Tree)
        tree.move_cursor(_find(tree, "model.head.weight"))
        app.screen.query_one(TabbedContent).active = "tab-strip"
        await pilot.pause()
        strip = app.screen.query_one("#inspect-strip", StorageStrip)
        assert strip.source is not None and strip.source.storage_size == 40
        assert [v.name for v in strip.source.views] == ["model.emb.weight", "model.head.weight"]
        assert strip.source.selected == "model.head.weight"
        legend = _text(app.screen.query_one("#inspect-strip-legend", Static))
        assert "storage s0" in legend and "model.emb.weight" in legend


async def test_an_80_column_terminal_leaves_the_selected_pane_room_for_its_values(tmp_path) -> None:
    # Found at 80x24: the key tree kept its 56 columns and the Selected pane beside it
    # showed its labels ("file", "kind", "holds") with no room left for the values.
    path = make.adam_checkpoint(tmp_path / "a.pt")
    async with _opened([path], size=(80, 24)) as (app, pilot):
        assert app.screen.query_one("#inspect-tree", Tree).size.width <= 40
        assert app.screen.query_one(TabbedContent).size.width >= 40
    async with _opened([path]) as (app, pilot):
        assert app.screen.query_one("#inspect-tree", Tree).outer_size.width == 56  # as before


async def test_a_narrow_key_tree_cuts_the_dtype_not_the_shape(tmp_path) -> None:
    # Walk-through at 80x24: the tree's edge cut "float32 [32, 16]" to "float32 [32, 1".
    import re

    path = make.adam_checkpoint(tmp_path / "a.pt")
    async with _opened([path], size=(80, 24)) as (app, pilot):
        tree = app.screen.query_one("#inspect-tree", Tree)
        lines = [tree.render_line(y).text for y in range(tree.size.height)]
        shapes = [line for line in lines if re.search(r"\[\d", line)]
        assert shapes and all(re.search(r"\[[\d, ]*\]", line) for line in shapes), shapes
