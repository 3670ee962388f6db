"""Start-up figures: `tensorscope --help`, the TUI's first frame, and bare `import torch`.

Each is timed as a fresh subprocess (what a user waits for), several times; the median is
printed with its ratio to the goal. Run: .venv/bin/python bench/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent

# The child starts the real app headless and prints when its first frame is on screen
# (auto_pilot runs once the app is ready, i.e. after the first screen was composed and drawn).
FIRST_FRAME = """
import os, sys, time
from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
spawned, screen = float(sys.argv[1]), sys.argv[2]
ctx = AppContext(statements=["x = torch.arange(12.).reshape(3, 4)"] if screen == "storage" else [])
async def ready(pilot):
    # Called once the app is ready, i.e. its first screen has been composed and drawn.
    print(f"first-frame {time.time() - spawned:.4f}", flush=True)
    os._exit(0)  # don't wait for background workers (the home screen probes torch in one)
make_app(ctx, screen=screen).run(headless=True, size=(160, 48), auto_pilot=ready)
"""


def first_frame(screen: str) -> float:
    """Seconds from spawning the process to the child's first frame (as the child saw it)."""
    out = subprocess.run([sys.executable, "-c", FIRST_FRAME, repr(time.time()), screen],
                         capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("first-frame "):
            return float(line.split()[1])
    raise SystemExit(f"no first frame from the {screen} screen:\n{out.stderr[-2000:]}")


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return elapsed


def load_note() -> str:
    import os

    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} cores (figures scale with it)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(load_note())
    cases = [
        ("tensorscope --help", [str(BIN / "tensorscope"), "--help"], 0.25),
        ("python -c 'import torch' (reference)", [sys.executable, "-c", "import torch"], None),
        ("TUI first frame, home screen", "home", 1.5),
        ("TUI first frame, Storage screen with a tensor", "storage", 1.5),
    ]
    wall(cases[1][1])  # warm the page cache once so the first case is not penalised
    print(f"{'case':<48} {'median s':>9} {'min s':>7} {'goal s':>7} {'ratio':>6}")
    for name, cmd, goal in cases:
        times = [wall(cmd) if isinstance(cmd, list) else first_frame(cmd) for _ in range(args.runs)]
        med = statistics.median(times)
        ratio = f"{med / goal:.2f}" if goal else "-"
        print(f"{name:<48} {med:>9.3f} {min(times):>7.3f} {goal if goal else '-':>7} {ratio:>6}")


if __name__ == "__main__":
    main()
