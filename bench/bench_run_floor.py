"""The floor under `tensorscope run`'s cost: what hooks at its hook points cost with no work in them.

Same harness as bench_run_inprocess.py (two copies of the width-512 MLP in one process,
blocks of 20 steps alternating, the roles swapped in a second process), but instead of
tensorscope's instrumentation the first copy gets hand-written hooks at the same five
points (model forward pre/post, criterion forward, optimizer step pre/post):

- ``empty``: the hooks do nothing — what PyTorch's dispatch into Python hooks costs;
- ``normfetch``: the optimizer pre-hook takes the exact gradient norm (one foreach norm)
  and reads it and the loss to the host — the least a step record with a norm can cost;
- ``thread``: the same norm on a second thread, started in the pre-hook and joined in the
  post-hook, so that it overlaps the optimizer's own kernels.

    .venv/bin/python bench/bench_run_floor.py [--variants empty,normfetch,thread] [--blocks 60]

Prints each variant's extra time per step and ratio against the bare copy (goal for run
itself: >= 0.97). Steadier with MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=1073741824 in the environment (see bench_run.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import threading

from bench_run_inprocess import alternate  # the same block timing (bench/ is on sys.path)


def _hook(first, crit, opt, variant: str) -> None:
    """The five hooks of ``variant`` on the first copy (see the module docstring)."""
    import torch

    params = list(first.parameters())
    state: dict = {}
    first.register_forward_pre_hook(lambda m, a: None)
    first.register_forward_hook(lambda m, a, o: None)

    def on_loss(module, args, output) -> None:
        state["loss"] = output.detach()

    crit.register_forward_hook(on_loss)
    go, done = threading.Event(), threading.Event()
    if variant == "thread":
        def worker() -> None:
            while True:
                go.wait()
                go.clear()
                with torch.no_grad():
                    state["norms"] = torch._foreach_norm(state["grads"])
                done.set()

        threading.Thread(target=worker, daemon=True).start()

    def pre(optimizer, args, kwargs) -> None:
        if variant == "thread":
            state["grads"] = [p.grad for p in params]
            go.set()
        elif variant == "normfetch":
            norms = torch._foreach_norm([p.grad for p in params])
            state["values"] = [state["loss"].item()] + [n.item() for n in norms]

    def post(optimizer, args, kwargs) -> None:
        if variant == "thread":
            done.wait()
            done.clear()
            state["values"] = [state["loss"].item()] + [n.item() for n in state["norms"]]

    opt.register_step_pre_hook(pre)
    opt.register_step_post_hook(post)


def measure(variant: str, blocks: int, swap: bool) -> tuple[float, float]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    first = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    copies = [first, copy.deepcopy(first)]
    if swap:
        copies.reverse()
    x, y = torch.randn(256, 128), torch.randint(0, 10, (256,))
    loops = []
    for index, model in enumerate(copies):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        crit = nn.CrossEntropyLoss()
        if index == 0:
            _hook(model, crit, opt, variant)

        def run(n: int, model=model, opt=opt, crit=crit) -> None:
            for _ in range(n):
                opt.zero_grad()
                crit(model(x), y).backward()
                opt.step()
        loops.append(run)
    loops[1](20)
    loops[0](200)
    return alternate(loops, blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="empty,normfetch,thread")
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one is not None:
        print(json.dumps(measure(opts.one[0], opts.blocks, opts.one[1] == "1")))
        return
    for variant in opts.variants.split(","):
        ratios, extras = [], []
        for swap in ("0", "1"):
            out = subprocess.run([sys.executable, __file__, "--blocks", str(opts.blocks),
                                  "--one", variant, swap], capture_output=True, text=True, check=True)
            hooked, bare = json.loads(out.stdout.strip().splitlines()[-1])
            ratios.append(bare / hooked)
            extras.append((hooked - bare) * 1e6)
        mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"{variant:10s} extra {extras[0]:5.0f} / {extras[1]:5.0f} µs/step   ratio {mean:.3f}")


if __name__ == "__main__":
    main()
