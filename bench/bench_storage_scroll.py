"""Frame time of the Storage screen while scrolling a 1e8-element tensor.

Drives the real screen headless at 160x48 with `big = torch.zeros(10_000, 10_000)` and
presses PageDown / Right / End in the grid. Three figures per step:
  - key→frame painted: what a user sees. The key event is posted straight into the app's
    queue (as the terminal driver does) and the clock stops when the screen has composed the
    next frame that contains the whole move (grid cursor, strip cell, Element panel) and turned it into the terminal's escape sequence
    (Textual skips only that last encoding step when headless; the bench does it). Includes
    Textual's frame timer (up to 1/60 s), layout, and every widget repainted by the move;
  - Pilot press + pause: the old figure, kept for comparison. Most of it is the harness:
    Pilot.press waits for CPU idle twice per key and pause() once more, each wait at least
    one 20 ms sleep, so it cannot read below ~60 ms whatever the app does;
  - draw: rendering every visible line of the grid and the strip from a cold window
    cache (the window gather + the strips), which is the part that scales with the tensor.
Goal: ≤ 50 ms key→frame. Run: .venv/bin/python bench/bench_storage_scroll.py [--steps N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from textual import events

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.app.widgets.storage_strip import StorageStrip
from tensorscope.app.widgets.tensor_grid import TensorGrid

GOAL_MS = 50.0


KEYS = ["pagedown", "pagedown", "right", "pagedown", "end", "pageup", "home"]


async def run(steps: int) -> tuple[list[float], list[float], list[float]]:
    ctx = AppContext(statements=["big = torch.zeros(10_000, 10_000)"])
    app = make_app(ctx, screen="storage")
    frame_ms: list[float] = []
    key_ms: list[float] = []
    draw_ms: list[float] = []
    frames: list[float] = []  # perf_counter of every frame painted

    display = app._display

    def painted(screen, renderable) -> None:
        display(screen, renderable)
        if renderable is not None:
            # Headless Textual drops the frame here; encode it as a terminal would get it.
            if hasattr(renderable, "render_segments"):
                renderable.render_segments(app.console)
            frames.append(time.perf_counter())

    app._display = painted
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        grid = app.screen.query_one("#grid", TensorGrid)
        strip = app.screen.query_one("#strip", StorageStrip)
        grid.focus()
        await pilot.pause()
        # 1. key → frame painted, no harness waits in the timed span.
        for i in range(steps):
            key = KEYS[i % len(KEYS)]
            before = (grid.cursor, strip.highlight)
            seen = len(frames)
            start = time.perf_counter()
            app._driver.send_message(events.Key(key, None))
            moved_at = None
            while time.perf_counter() - start < 10:
                # The move is complete when the grid moved AND the strip lit the new cell (the
                # Element panel is updated in the same handler); earlier frames don't count.
                if moved_at is None and grid.cursor != before[0] and strip.highlight != before[1]:
                    moved_at = len(frames)
                if moved_at is not None and len(frames) > moved_at:
                    break
                await asyncio.sleep(0.0005)
            frame_ms.append((frames[-1] - start) * 1000 if len(frames) > seen else float("nan"))
            await asyncio.sleep(0.1)  # a person's key repeat, not a queue of keys
        # 2. the old Pilot figure, and the cold draw.
        for i in range(steps):
            key = KEYS[i % len(KEYS)]
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
    return frame_ms, key_ms, draw_ms


def load_note() -> str:
    import os

    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} cores (figures scale with it)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print(load_note())
    frame_ms, key_ms, draw_ms = asyncio.run(run(args.steps))
    print(f"1e8-element float32 tensor, {args.steps} scroll steps, 160x48")
    for name, values in (("key→frame painted", frame_ms), ("Pilot press+pause", key_ms),
                         ("draw (grid + strip)", draw_ms)):
        values = sorted(values)
        p95 = values[int(0.95 * (len(values) - 1))]
        med = statistics.median(values)
        print(f"{name:<20} median {med:6.1f} ms  p95 {p95:6.1f} ms  max {values[-1]:6.1f} ms  "
              f"goal {GOAL_MS:.0f} ms  ratio {med / GOAL_MS:.2f}")


if __name__ == "__main__":
    main()
