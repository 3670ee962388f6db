"""Autograd graph: tensorscope against torchviz on a stack of 1000 × (Linear, LayerNorm, GELU).

That stack's loss has 8,001 autograd nodes (4,000 backward ops, 4,000 AccumulateGrad
leaves, one sum). Measured:

- extraction: tensorscope's iterative walk (structure; + module attribution; + every saved
  tensor's metadata) against torchviz's ``make_dot`` (recursive; RecursionError at the
  default limit, so it is timed again in a child process with the limit raised);
- full SVG: ``tensorscope`` export (DOT written once, ``dot`` called once) against ``dot``
  alone on the same DOT file;
- the TUI's first readable frame: from building the app on the graph to the first
  (collapsed-by-module) layout on the canvas, headless.

torchviz is a bench-only peer (``pip install torchviz`` into .venv), never a dependency.
Run: ``.venv/bin/python bench/bench_graph.py [--skip-svg]``. Prints figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(depth: int = 1000, width: int = 16):
    from tensorscope.autograd import ModuleRecorder

    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.LayerNorm(width), nn.GELU()]
    model = nn.Sequential(*layers)
    x = torch.randn(2, width)
    with ModuleRecorder() as rec:
        loss = model(x).sum()
    return model, loss, rec.trace


CPU_TIMES: list[float] = []


def median_time(fn, repeat: int = 5) -> float:
    """Median wall time of ``fn``; its median CPU time goes to CPU_TIMES (on a shared,
    loaded machine CPU time is the steadier figure)."""
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU_TIMES.append(statistics.median(cpu))
    return statistics.median(times)


TORCHVIZ_CHILD = textwrap.dedent("""
    import sys, time, threading
    sys.path.insert(0, {root!r})
    sys.setrecursionlimit(200000)          # the peer needs it; tensorscope never does
    threading.stack_size(512 * 1024 * 1024)
    def main():
        from bench.bench_graph import build
        from torchviz import make_dot
        model, loss, _ = build()
        t = time.perf_counter()
        make_dot(loss, params=dict(model.named_parameters()))
        print(time.perf_counter() - t)
    th = threading.Thread(target=main); th.start(); th.join()
""")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-svg", action="store_true", help="skip the two slow dot runs")
    opts = parser.parse_args()

    from tensorscope.autograd import extract
    from tensorscope.export import export, to_dot

    model, loss, trace = build()
    graph = extract({"loss": loss}, model=model)
    print(f"graph: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
          f"{sum(1 for n in graph.nodes if n.kind == 'backward')} backward ops")

    t_walk = median_time(lambda: extract({"loss": loss}))
    t_params = median_time(lambda: extract({"loss": loss}, model=model))
    t_trace = median_time(lambda: extract({"loss": loss}, model=model, trace=trace))

    def with_saved():
        extract({"loss": loss}, model=model).load_saved()

    t_saved = median_time(with_saved)
    c_walk, c_params, c_trace, c_saved = CPU_TIMES[-4:]
    print("                                               wall        CPU")
    print(f"tensorscope extract, structure only:         {t_walk * 1000:7.1f} ms {c_walk * 1000:7.1f} ms"
          "  (goal ≤ 30 ms)")
    print(f"  + parameter names and attribution:         {t_params * 1000:7.1f} ms {c_params * 1000:7.1f} ms")
    print(f"  + recorded module attribution:             {t_trace * 1000:7.1f} ms {c_trace * 1000:7.1f} ms")
    print(f"  + every saved tensor's metadata:           {t_saved * 1000:7.1f} ms {c_saved * 1000:7.1f} ms")

    try:
        from torchviz import make_dot
    except ImportError:
        print("torchviz not installed: pip install torchviz into .venv to compare")
        make_dot = None
    if make_dot is not None:
        t = time.perf_counter()
        try:
            make_dot(loss, params=dict(model.named_parameters()))
            print("torchviz make_dot at the default recursion limit: no error")
        except RecursionError:
            print(f"torchviz make_dot at the default recursion limit ({sys.getrecursionlimit()}): "
                  f"RecursionError after {time.perf_counter() - t:.2f} s")
        child = subprocess.run([sys.executable, "-c", TORCHVIZ_CHILD.format(root=str(ROOT))],
                               capture_output=True, text=True)
        if child.returncode == 0:
            t_viz = float(child.stdout.strip().splitlines()[-1])
            print(f"torchviz make_dot, recursion limit raised:      {t_viz * 1000:7.1f} ms  "
                  f"({t_viz / t_walk:.1f}× tensorscope's walk)")
        else:
            print(f"torchviz make_dot with a raised limit failed: exit {child.returncode}")

    if not opts.skip_svg:
        with tempfile.TemporaryDirectory() as tmp:
            dot_path = Path(tmp) / "g.dot"
            graph.load_saved()
            dot_path.write_text(to_dot(graph))
            t = time.perf_counter()
            subprocess.run(["dot", "-Tsvg", "-o", str(Path(tmp) / "a.svg"), str(dot_path)], check=True)
            t_dot = time.perf_counter() - t
            t = time.perf_counter()
            svg = export(graph, "svg")
            t_ours = time.perf_counter() - t
        print(f"full SVG: dot alone {t_dot:.2f} s, tensorscope export {t_ours:.2f} s "
              f"(ratio {t_ours / t_dot:.2f}; {len(svg) / 1e6:.1f} MB)")

    t_empty = asyncio.run(empty_frame())
    t_frame = asyncio.run(first_frame(model, loss))
    print(f"TUI first readable frame (collapsed by module):  {t_frame:.2f} s  (goal ≤ 1 s)")
    print(f"  of which the app itself (empty Graph screen):  {t_empty:.2f} s")


async def empty_frame() -> float:
    from tensorscope.app.app import make_app
    from tensorscope.app.context import AppContext

    t = time.perf_counter()
    app = make_app(AppContext(), screen="graph")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        return time.perf_counter() - t


async def first_frame(model, loss) -> float:
    from tensorscope.app.app import make_app
    from tensorscope.app.context import AppContext
    from tensorscope.app.widgets.graph_canvas import GraphCanvas

    t = time.perf_counter()
    app = make_app(AppContext(graph_roots={"loss": loss}, model=model), screen="graph")
    async with app.run_test(size=(160, 48)) as pilot:
        while True:
            await pilot.pause(0.01)
            screen = app.screen
            canvas = screen.query(GraphCanvas)
            if canvas and canvas.first().layout_shown is not None:
                elapsed = time.perf_counter() - t
                boxes = len(canvas.first().layout_shown.boxes)
                print(f"  first frame shows {boxes} boxes for {len(screen.graph.nodes)} nodes")
                return elapsed


if __name__ == "__main__":
    main()
