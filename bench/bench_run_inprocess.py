"""What `tensorscope run` costs the training thread, measured inside one process.

Two copies of bench/train_throughput.py's MLP train in the same process; `run`'s
instrumentation (core/runner.py, default detail, with its real event sender and a listener
in another process, as under `tensorscope run`) watches one of them. Blocks of 20 steps
alternate between the two, and the whole measurement is repeated with the roles swapped
(two model copies differ by a few % on their own: memory placement). Process-to-process
noise, which makes bench_run.py need many pairs, cancels out here.

    .venv/bin/python bench/bench_run_inprocess.py [--width 512] [--blocks 50] [--detail sampled]
        [--device cuda --batch 1024 --host-batches]

Prints the median step time of each copy, the extra time per step, and the geometric mean
of the two ratios (goal: >= 0.97). Run the same with MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=1073741824 in the environment for steadier figures (see bench_run.py).
On CUDA (``--device cuda``) each block ends with a synchronize, so a block's time is the
GPU's too; ``--host-batches`` makes each batch on the host and copies it from pinned memory
(``non_blocking``), as a DataLoader-fed loop does, so that the CPU's own work can overlap the
GPU's.
TS_NO_LATER=1 builds every step's record on the training thread, as before plain records
went to the sender thread (for an A/B of that change).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

LISTENER = """
import json, sys
from tensorscope.transport import EventServer
server = EventServer(lambda event: None)
print(json.dumps(server.env()), flush=True)
sys.stdin.read()
"""


def measure(width: int, blocks: int, detail: str, swap: bool, device: str = "cpu",
            batch: int = 256, host_batches: bool = False) -> tuple[float, float]:
    import torch
    from torch import nn

    from tensorscope.runner import Instrumentation
    from tensorscope.transport import sender_from_env

    listener = subprocess.Popen([sys.executable, "-c", LISTENER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    os.environ.update(json.loads(listener.stdout.readline()))
    sender = sender_from_env()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    first = nn.Sequential(nn.Linear(128, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, 10)).to(device)
    copies = [first, copy.deepcopy(first)]
    if swap:
        copies.reverse()
    watched, plain = copies
    x, y = torch.randn(batch, 128, device=device), torch.randint(0, 10, (batch,), device=device)
    pin = device == "cuda"  # page-locked memory needs a GPU
    host_x = torch.randn(8 * batch, 128, pin_memory=pin) if host_batches else None
    host_y = torch.randint(0, 10, (8 * batch,), pin_memory=pin) if host_batches else None
    loops = []
    for model in (watched, plain):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        crit = nn.CrossEntropyLoss()

        def run(n: int, model=model, opt=opt, crit=crit) -> None:
            for i in range(n):
                xb, yb = x, y
                if host_x is not None:
                    at = (i % 8) * batch
                    xb = host_x[at:at + batch].to(device, non_blocking=True)
                    yb = host_y[at:at + batch].to(device, non_blocking=True)
                opt.zero_grad()
                loss = crit(model(xb), yb)
                loss.backward()
                opt.step()
        loops.append(run)
    # The plain copy stands for the same script without tensorscope: run's lookout for other
    # optimizers (a global optimizer pre-hook) must not see its steps, or they would pay for
    # it (and take the chart over, as a second training phase does).
    from torch.optim import optimizer as optim_globals

    hooks = optim_globals._global_optimizer_pre_hooks
    plain_run = loops[1]

    def unseen(n: int) -> None:
        saved = dict(hooks)
        hooks.clear()
        try:
            plain_run(n)
        finally:
            hooks.update(saved)

    loops[1] = unseen
    loops[1](20)
    instr = Instrumentation(__file__, sender.send, detail=detail,
                            emit_later=None if os.environ.get("TS_NO_LATER") else sender.send_later)
    instr.install()
    loops[0](200)  # past discovery, the first detail steps and the schedule's ramp
    result = alternate(loops, blocks, torch.cuda.synchronize if device == "cuda" else None)
    instr.finish()
    sender.close()
    listener.kill()
    return result


def alternate(loops: list[Callable[[int], None]], blocks: int,
              sync: Callable[[], None] | None = None) -> tuple[float, float]:
    """Median seconds per step of the two loops, over ``blocks`` blocks of 20 steps each,
    alternating which goes first. ``sync`` (CUDA) waits for the device around each block."""
    sync = sync or (lambda: None)
    times: list[list[float]] = [[], []]
    for block in range(blocks):
        for which in ((0, 1) if block % 2 else (1, 0)):
            sync()
            start = time.perf_counter()
            loops[which](20)
            sync()
            times[which].append((time.perf_counter() - start) / 20)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--blocks", type=int, default=50)
    parser.add_argument("--detail", default="sampled")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--host-batches", action="store_true")
    parser.add_argument("--one", choices=["0", "1"], help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one is not None:
        print(json.dumps(measure(opts.width, opts.blocks, opts.detail, opts.one == "1",
                                 opts.device, opts.batch, opts.host_batches)))
        return
    extra = ["--device", opts.device, "--batch", str(opts.batch)]
    extra += ["--host-batches"] if opts.host_batches else []
    ratios = []
    for swap in ("0", "1"):
        out = subprocess.run([sys.executable, __file__, "--width", str(opts.width), "--blocks",
                              str(opts.blocks), "--detail", opts.detail, "--one", swap, *extra],
                             capture_output=True, text=True, check=True)
        watched, plain = json.loads(out.stdout.strip().splitlines()[-1])
        ratios.append(plain / watched)
        print(f"copy {'B' if swap == '1' else 'A'} watched: plain {plain * 1e3:.3f} ms, "
              f"watched {watched * 1e3:.3f} ms, extra {(watched - plain) * 1e6:.0f} µs/step, "
              f"ratio {plain / watched:.3f}")
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"geometric mean ratio: {mean:.3f} (goal >= 0.97; width {opts.width}, detail "
          f"{opts.detail}, {opts.device}, batch {opts.batch}"
          f"{', host batches' if opts.host_batches else ''})")


if __name__ == "__main__":
    main()
