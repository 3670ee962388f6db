"""How long opening a big checkpoint takes, and how much memory it costs, with and without mmap.

Writes a ~1 GiB torch.save file (16 float32 tensors of 64 MiB) into a temporary folder,
then opens it in fresh subprocesses: torch.load with mmap=True, torch.load with mmap=False,
and tensorscope's open_checkpoint (weights-only + mmap + the whole description). Prints
seconds, resident memory added, and the ratios. Run: ``.venv/bin/python bench/bench_inspect_open.py``
(optionally a size in MiB as the first argument).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = r"""
import json, sys, time, psutil, torch
path, how = sys.argv[1], sys.argv[2]
proc = psutil.Process()
rss0 = proc.memory_info().rss
t0 = time.perf_counter()
if how == "tensorscope":
    from tensorscope.checkpoint import open_checkpoint
    ckpt = open_checkpoint(path)
    n = len(ckpt.tensors)
else:
    obj = torch.load(path, weights_only=True, map_location="cpu", mmap=(how == "mmap"))
    n = len(obj)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "rss_mib": (proc.memory_info().rss - rss0) / 2**20, "tensors": n}))
"""


def main() -> None:
    import torch

    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.pt"
        per = mib * 2**20 // 16 // 4
        torch.save({f"layer{i}.weight": torch.randn(per) for i in range(16)}, path)
        size = path.stat().st_size / 2**20
        results = {}
        for how in ("mmap", "no-mmap", "tensorscope"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", PROBE, str(path), how], capture_output=True,
                                 text=True, check=True)
            results[how] = json.loads(out.stdout.strip().splitlines()[-1])
            results[how]["process_seconds"] = time.perf_counter() - t0
    print(f"checkpoint: {size:.0f} MiB, 16 tensors (page cache warm: the file was just written)")
    for how, r in results.items():
        print(f"  {how:<12} load {r['seconds']:7.3f} s   resident +{r['rss_mib']:7.1f} MiB")
    m, n = results["mmap"], results["no-mmap"]
    print(f"  no-mmap / mmap: time x{n['seconds'] / m['seconds']:.1f}, "
          f"memory x{n['rss_mib'] / max(m['rss_mib'], 1e-3):.0f}")


if __name__ == "__main__":
    main()
