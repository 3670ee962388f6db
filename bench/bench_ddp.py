"""Throughput of 2 DDP ranks under `tensorscope run --nproc 2 --headless` vs plain `torchrun`.

The same script (bench/ddp_train.py: gloo, CPU, a small MLP) runs under each launcher in
turn, alternated ROUNDS times so machine noise hits both; the script times its own steps
after warm-up, so launcher start-up is not counted. Prints each run and the median ratio
(tensorscope / torchrun; 1.00 = no overhead). Usage: bench_ddp.py [ROUNDS] [STEPS]
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "ddp_train.py"
BIN = Path(sys.executable).parent


def _throughput(cmd: list[str]) -> float:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    match = re.search(r"throughput: ([\d.]+) samples/s", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise SystemExit(f"run failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return float(match.group(1))


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    steps = sys.argv[2] if len(sys.argv) > 2 else "150"
    plain_cmd = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", str(SCRIPT), steps]
    plain, watched = [], []
    with tempfile.TemporaryDirectory() as folder:
        record = str(Path(folder) / "bench.jsonl")
        ts_cmd = [str(BIN / "tensorscope"), "run", "--nproc", "2", "--headless", "--record",
                  record, str(SCRIPT), steps]
        for i in range(rounds):
            plain.append(_throughput(plain_cmd))
            watched.append(_throughput(ts_cmd))
            print(f"round {i + 1}: torchrun {plain[-1]:9.1f} samples/s   "
                  f"tensorscope {watched[-1]:9.1f} samples/s", flush=True)
    ratios = [w / p for w, p in zip(watched, plain)]
    print(f"median torchrun {statistics.median(plain):.1f} samples/s, "
          f"tensorscope {statistics.median(watched):.1f} samples/s, "
          f"ratio tensorscope/torchrun {statistics.median(ratios):.2f} "
          f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
