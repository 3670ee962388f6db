"""watch() overhead measured side by side in ONE process: each variant trains its own copy.

bench_hooks.py runs each variant in its own process, and on this shared 2-core machine two
processes running the same bare loop differ by up to ±5 % — more than the 3 % this bench
must resolve. Here every variant gets its own copy of the model (same seed) and optimizer,
its watch() session stays attached throughout (steady state: no attach, no first steps),
and blocks of steps rotate between the variants, so drift and load hit all of them alike.
The sessions do not see each other's models: watch() keeps no global module hook past its
first two steps and its optimizer hooks are per optimizer. (A host-sync counting window that
a session opens at the end of its block stays open while the other variants run — sampled
steps are ~1 in 25, so this slows every variant a little, the bare loop included.)

Model: 4-layer nn.TransformerEncoder, d_model 128, 4 heads, ff 512, dropout 0.1, batch 32 x
seq 32, MSE, Adam, CPU, one torch thread. Prints medians of per-block CPU time per step.

    .venv/bin/python bench/bench_watch_interleaved.py [--blocks 30] [--steps 4] [--warmup 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench_hooks import build  # the same model, optimizer and step (run as a script: bench/ is on sys.path)
from tensorscope.watch import watch

VARIANTS = {
    "bare loop": None,
    "watch(model, opt) defaults": {},
    "every module, every step (max_overhead=None)": {"max_overhead": None},
    "watch(modules=None): step-level only": {"modules": None},
}
GOALS = {"watch(model, opt) defaults": "<= 1.03x",
         "every module, every step (max_overhead=None)": "<= 1.10x"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=8)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    runs, sessions, contexts = {}, {}, []
    for name, kw in VARIANTS.items():
        model, opt, step = build()
        if kw is not None:
            cm = watch(model, opt, **kw)
            sessions[name] = cm.__enter__()
            contexts.append(cm)
        runs[name] = step
    try:
        for name, step in runs.items():
            for _ in range(opts.warmup):
                step()
        cpu = {name: [] for name in runs}
        hooks = {name: [] for name in sessions}
        names = list(runs)
        for b in range(opts.blocks):
            order = names[b % len(names):] + names[:b % len(names)]
            for name in order:
                before = sessions[name].overhead["total_s"] if name in sessions else 0.0
                t0 = time.thread_time()
                for _ in range(opts.steps):
                    runs[name]()
                cpu[name].append((time.thread_time() - t0) / opts.steps)
                if name in sessions:
                    hooks[name].append((sessions[name].overhead["total_s"] - before) / opts.steps)
    finally:
        for cm in contexts:
            cm.__exit__(None, None, None)
    base = statistics.median(cpu["bare loop"])
    print(f"torch {torch.__version__}, 1 torch thread, one process, {opts.blocks} rotating blocks "
          f"x {opts.steps} steps per variant after {opts.warmup} warm-up steps")
    print(f"{'variant':48s} {'cpu/step':>9s} {'ratio':>7s} {'in hooks':>9s} {'detail':>7s} {'goal':>9s}")
    for name in names:
        med = statistics.median(cpu[name])
        session = sessions.get(name)
        ov = f"{statistics.median(hooks[name]) * 1e3:.2f}ms" if session else "-"
        share = "-"
        if session is not None and session.records:
            recent = session.records[-opts.blocks * opts.steps:]
            share = f"{sum(bool(r.signals.get('detail')) for r in recent) / len(recent):.2f}"
        print(f"{name:48s} {med * 1e3:7.1f}ms {med / base:6.3f}x {ov:>9s} {share:>7s} {GOALS.get(name, ''):>9s}")


if __name__ == "__main__":
    main()
