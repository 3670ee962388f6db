"""What watching costs: step time of a small TransformerEncoder with and without watch().

4 layers, d_model 128, 4 heads, ff 512, batch 32 x seq 32, CPU, one thread. Variants run
interleaved in one process (blocks of steps, in rotating order) so drift hits all alike;
medians of per-block mean step times are printed with their ratio to the bare loop.

    .venv/bin/python bench/bench_hooks.py [--blocks 8] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import tensorscope


def build():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(128, 4, 512, dropout=0.1, batch_first=True)
    model = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(32, 32, 128)
    target = torch.randn(32, 32, 128)
    crit = nn.MSELoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), target)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


class ItemHooks:
    """The seed's style: a forward hook per module calling .item() on stats (a sync each)."""

    def __init__(self, model):
        self.log = []
        self.handles = [m.register_forward_hook(self.hook) for n, m in model.named_modules() if n]

    def hook(self, module, args, out):
        if isinstance(out, torch.Tensor):
            self.log.append((out.mean().item(), out.std().item()))
        if len(self.log) > 10000:
            self.log.clear()

    def close(self):
        for h in self.handles:
            h.remove()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, opt, step = build()
    for _ in range(3):
        step()  # warm up kernels and allocator

    def bare(n):
        for _ in range(n):
            step()
        return None

    def watched(**kw):
        def run(n):
            with tensorscope.watch(model, opt, **kw) as s:
                for _ in range(n):
                    step()
            return s.overhead["per_step_s"]
        return run

    def item_hooks(n):
        h = ItemHooks(model)
        try:
            for _ in range(n):
                step()
        finally:
            h.close()
        return None

    variants = {
        "bare loop": bare,
        "watch(model, opt) defaults (all modules, every step)": watched(),
        "watch(modules=None): step-level only": watched(modules=None),
        "watch(every=10)": watched(every=10),
        "seed-style .item() forward hooks": item_hooks,
    }
    times = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    overheads = {k: [] for k in variants}
    names = list(variants)
    for b in range(args.blocks):
        order = names[b % len(names):] + names[:b % len(names)]
        for name in order:
            t0, c0 = time.perf_counter(), time.thread_time()
            ov = variants[name](args.steps)
            times[name].append((time.perf_counter() - t0) / args.steps)
            cpu[name].append((time.thread_time() - c0) / args.steps)
            if ov is not None:
                overheads[name].append(ov)
    base = statistics.median(times["bare loop"])
    base_cpu = statistics.median(cpu["bare loop"])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.blocks} blocks x {args.steps} steps")
    # Wall time is what a user feels; the thread's CPU time is steadier on a shared machine
    # (other processes' load does not count), and with one torch thread it is all the work.
    print(f"{'variant':54s} {'wall/step':>10s} {'ratio':>7s} {'cpu/step':>10s} {'ratio':>7s} {'in hooks':>9s}")
    for name in names:
        med = statistics.median(times[name])
        med_cpu = statistics.median(cpu[name])
        ov = f"{statistics.median(overheads[name]) * 1e3:.2f}ms" if overheads[name] else "-"
        print(f"{name:54s} {med * 1e3:8.1f}ms {med / base:6.3f}x {med_cpu * 1e3:8.1f}ms "
              f"{med_cpu / base_cpu:6.3f}x {ov:>9s}")


if __name__ == "__main__":
    main()
