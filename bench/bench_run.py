"""Throughput of one training script under `tensorscope run --headless` vs plain `python`.

Same script (bench/train_throughput.py), runs alternated plain / tensorscope so machine
load hits both alike; each run reports its own samples/s over its timed steps (start-up
excluded). Prints each pair and the median ratio (goal: >= 0.97).

    .venv/bin/python bench/bench_run.py [--pairs 5] [--steps 300] [--width 512] [--detail steps]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "train_throughput.py"


def one(cmd: list[str]) -> float:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1].split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--detail", default=None, help="passed to tensorscope run (default: its own default)")
    opts = parser.parse_args()
    opts.run_args = ["--detail", opts.detail] if opts.detail else []
    script_args = [str(SCRIPT), "--steps", str(opts.steps), "--width", str(opts.width)]
    plain_cmd = [sys.executable, *script_args]
    run_cmd = [sys.executable, "-m", "tensorscope", "run", "--headless", *opts.run_args, *script_args]
    ratios = []
    print(f"{'pair':>4} {'plain samples/s':>16} {'run samples/s':>14} {'ratio':>6}")
    for i in range(opts.pairs):
        plain = one(plain_cmd)
        watched = one(run_cmd)
        ratios.append(watched / plain)
        print(f"{i + 1:>4} {plain:>16.0f} {watched:>14.0f} {watched / plain:>6.3f}")
    print(f"median ratio run/plain: {statistics.median(ratios):.3f} (goal >= 0.97; "
          f"width {opts.width}, {opts.steps} steps)")


if __name__ == "__main__":
    main()
