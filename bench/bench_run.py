"""Throughput of one training script under `tensorscope run --headless` vs plain `python`.

Same script (bench/train_throughput.py), runs alternated plain / tensorscope (and which one
goes first alternates too) so machine load hits both alike; each run reports its own
samples/s over its timed steps (start-up excluded). Prints each pair and the median ratio
per model width (goal: >= 0.97).

    .venv/bin/python bench/bench_run.py [--pairs 5] [--steps 300] [--widths 512,1024]
                                        [--detail steps] [--steady-malloc]

--steady-malloc sets the same glibc malloc thresholds for both processes. Without it, the
bare script's own speed swings by 10-15 % from one process to the next on this machine:
whether glibc gives freed activation buffers back to the kernel (and the next step faults
them in again, 170k-300k page faults per 500 steps) depends on where small long-lived
allocations happen to land. Both sides get the same setting, so the ratio compares like
with like; the default (unset) is what a user's process gets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "train_throughput.py"
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def one(cmd: list[str], env: dict[str, str]) -> float:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1].split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--widths", default="512", help="comma-separated hidden widths")
    parser.add_argument("--detail", default=None, help="passed to tensorscope run (default: its own default)")
    parser.add_argument("--steady-malloc", action="store_true",
                        help="same fixed glibc malloc thresholds for both sides (see above)")
    opts = parser.parse_args()
    env = dict(os.environ, **(STEADY_MALLOC if opts.steady_malloc else {}))
    run_args = ["--detail", opts.detail] if opts.detail else []
    summary = []
    for width in [int(w) for w in opts.widths.split(",")]:
        script_args = [str(SCRIPT), "--steps", str(opts.steps), "--width", str(width)]
        plain_cmd = [sys.executable, *script_args]
        run_cmd = [sys.executable, "-m", "tensorscope", "run", "--headless", *run_args, *script_args]
        ratios, step_ms = [], []
        print(f"width {width}")
        print(f"{'pair':>4} {'plain samples/s':>16} {'run samples/s':>14} {'ratio':>6}")
        for i in range(opts.pairs):
            if i % 2:
                watched, plain = one(run_cmd, env), one(plain_cmd, env)
            else:
                plain, watched = one(plain_cmd, env), one(run_cmd, env)
            ratios.append(watched / plain)
            step_ms.append(256 / plain * 1e3)
            print(f"{i + 1:>4} {plain:>16.0f} {watched:>14.0f} {watched / plain:>6.3f}")
        median = statistics.median(ratios)
        summary.append((width, statistics.median(step_ms), median, min(ratios), max(ratios)))
        print(f"median ratio run/plain: {median:.3f} (goal >= 0.97; width {width}, {opts.steps} steps)")
    print("\nwidth  plain step   median ratio  (range)")
    for width, ms, median, lo, hi in summary:
        print(f"{width:>5} {ms:>8.1f} ms {median:>10.3f}     ({lo:.3f}-{hi:.3f})")


if __name__ == "__main__":
    main()
