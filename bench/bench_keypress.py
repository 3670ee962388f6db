"""Key-press latency in the Training screen while a training child runs at full CPU.

Starts bench/train_throughput.py under a LiveRun (as `tensorscope run` does), opens the
Training screen headless (Textual's run_test at 160x48), and times key presses that move the
focus (tab): from posting the key event until the app has handled it (the focus moved),
checked every millisecond. Textual then paints the changed region on its next refresh
(<= 1/60 s later). Pilot's own pause() is not used: it forces a full repaint and waits
tens of ms by itself. Prints p50/p90/max (goal: p90 <= 50 ms).

    .venv/bin/python bench/bench_keypress.py [--presses 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from textual import events

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.runsource import LiveRun

SCRIPT = Path(__file__).resolve().parent / "train_throughput.py"


async def measure(presses: int) -> list[float]:
    source = LiveRun(str(SCRIPT), ["--steps", "100000"]).start()
    app = make_app(AppContext(run=source), screen="training")
    latencies = []
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            while len(source.snapshot().train) < 20:  # the run is really going
                await pilot.pause(0.1)
            for _ in range(presses):
                before = app.focused
                start = time.perf_counter()
                app.post_message(events.Key("tab", None))
                while app.focused is before and time.perf_counter() - start < 10:
                    await asyncio.sleep(0.001)
                latencies.append(time.perf_counter() - start)
                await asyncio.sleep(0.13)  # let polls and redraws interleave with presses
            steps = len(source.snapshot().train)
    finally:
        source.stop()
        source.close()
    print(f"training steps during the bench: {steps}")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=60)
    opts = parser.parse_args()
    lat = sorted(asyncio.run(measure(opts.presses)))
    p90 = lat[int(0.9 * (len(lat) - 1))]
    print(f"key-press latency over {len(lat)} presses: p50 {statistics.median(lat) * 1e3:.1f} ms, "
          f"p90 {p90 * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms (goal p90 <= 50 ms)")


if __name__ == "__main__":
    main()
