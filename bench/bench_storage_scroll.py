"""Frame time of the Storage screen while scrolling a 1e8-element tensor.

Drives the real screen headless at 160x48 with `big = torch.zeros(10_000, 10_000)` and
presses PageDown / Right / End in the grid. Two figures per step:
  - key→frame: Pilot press + pause (the event, the selection message, the redraw);
  - draw: rendering every visible line of the grid and the strip from a cold window
    cache (the window gather + the strips), which is the part that scales with the tensor.
Goal: ≤ 50 ms per frame. Run: .venv/bin/python bench/bench_storage_scroll.py [--steps N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.app.widgets.storage_strip import StorageStrip
from tensorscope.app.widgets.tensor_grid import TensorGrid

GOAL_MS = 50.0


async def run(steps: int) -> tuple[list[float], list[float]]:
    ctx = AppContext(statements=["big = torch.zeros(10_000, 10_000)"])
    app = make_app(ctx, screen="storage")
    key_ms: list[float] = []
    draw_ms: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        grid = app.screen.query_one("#grid", TensorGrid)
        strip = app.screen.query_one("#strip", StorageStrip)
        grid.focus()
        keys = ["pagedown", "pagedown", "right", "pagedown", "end", "pageup", "home"]
        for i in range(steps):
            key = keys[i % len(keys)]
            start = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            key_ms.append((time.perf_counter() - start) * 1000)
            grid.invalidate()
            strip.invalidate()
            start = time.perf_counter()
            for y in range(grid.size.height):
                grid.render_line(y)
            for y in range(strip.size.height):
                strip.render_line(y)
            draw_ms.append((time.perf_counter() - start) * 1000)
    return key_ms, draw_ms


def load_note() -> str:
    import os

    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} cores (figures scale with it)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print(load_note())
    key_ms, draw_ms = asyncio.run(run(args.steps))
    print(f"1e8-element float32 tensor, {args.steps} scroll steps, 160x48")
    for name, values in (("key→frame", key_ms), ("draw (grid + strip)", draw_ms)):
        values = sorted(values)
        p95 = values[int(0.95 * (len(values) - 1))]
        med = statistics.median(values)
        print(f"{name:<22} median {med:6.1f} ms  p95 {p95:6.1f} ms  max {values[-1]:6.1f} ms  "
              f"goal {GOAL_MS:.0f} ms  ratio {med / GOAL_MS:.2f}")


if __name__ == "__main__":
    main()
