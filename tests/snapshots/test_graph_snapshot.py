"""The Graph screen at 160x48, drawn on a small recorded model with a node selected."""

from __future__ import annotations

import torch
import torch.nn as nn

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.export import dot_available

import pytest


def _context() -> AppContext:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.randn(8, 3)
    loss = net(x).pow(2).mean()
    return AppContext(graph_roots={"loss": loss}, model=net)


@pytest.mark.skipif(not dot_available(), reason="graphviz's dot is not installed")
def test_graph_screen_snapshot(snap_compare) -> None:
    async def run_before(pilot) -> None:
        app = pilot.app
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        screen = app.screen
        relu = next(n for n in screen.graph.nodes if n.name == "AddmmBackward0")
        screen._select(node_id=relu.id)
        for _ in range(2):
            await app.workers.wait_for_complete()
            await pilot.pause()

    # Autograd's sequence numbers (shown as "seq nr") come from a per-thread counter that
    # every earlier test in this process advances: build the graph on a fresh thread so
    # the snapshot does not depend on test order.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        context = pool.submit(_context).result()
    assert snap_compare(make_app(context, screen="graph"), terminal_size=(160, 48),
                        run_before=run_before)
