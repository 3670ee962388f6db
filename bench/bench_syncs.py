"""What a host-sync-counted (sampled) step costs compared with an unsampled one under watch().

Same TransformerEncoder as bench_hooks.py (4 layers, d_model 128, batch 32 x seq 32, Adam, CPU,
one thread), plus a tiny MLP where Python overhead dominates. Each model runs watch() with
counting forced on every step (StepSyncs(mean_gap=1)) and forced off, interleaved in blocks
in rotating order; medians of per-block mean CPU (thread_time) and wall step times.

    .venv/bin/python bench/bench_syncs.py [--blocks 6] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import tensorscope
from tensorscope.syncs import SAMPLE_MEAN_GAP, StepSyncs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hooks import build  # noqa: E402


def build_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 32), torch.randint(0, 4, (64,))
    crit = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        loss.item()  # the bug being counted (same work in both variants)

    return model, opt, step


def variant(model, opt, step, sampled: bool, modules):
    def run(n):
        with tensorscope.watch(model, opt, modules=modules) as s:
            s._syncs = StepSyncs(model, mean_gap=1)
            s._syncs.counter.enabled = sampled
            step()  # step 1 has no window; its end opens step 2's
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(n):
                step()
            c, w = time.thread_time() - c0, time.perf_counter() - w0
        measured = [r.signals["host_syncs"] for r in s.records[1:]]
        assert all(v is not None for v in measured) == sampled, measured
        return c / n, w / n
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tf = build()[:3]
    mlp = build_mlp()
    for _ in range(3):
        tf[2](); mlp[2]()  # noqa: E702  warm up
    cases = {
        ("transformer", "modules=None", False): variant(*tf, False, None),
        ("transformer", "modules=None", True): variant(*tf, True, None),
        ("transformer", "modules='*'", False): variant(*tf, False, "*"),
        ("transformer", "modules='*'", True): variant(*tf, True, "*"),
        ("mlp", "modules='*'", False): variant(*mlp, False, "*"),
        ("mlp", "modules='*'", True): variant(*mlp, True, "*"),
    }
    times: dict = {k: [] for k in cases}
    keys = list(cases)
    for b in range(args.blocks):
        for k in keys[b % len(keys):] + keys[: b % len(keys)]:
            steps = args.steps if k[0] == "transformer" else args.steps * 25
            times[k].append(cases[k](steps))
    print(f"load {open('/proc/loadavg').read().split()[0]}; sampled step = counting window open")
    for model, mods in dict.fromkeys((k[0], k[1]) for k in keys):
        off = [t for t in times[(model, mods, False)]]
        on = [t for t in times[(model, mods, True)]]
        cpu_off, cpu_on = statistics.median(c for c, _ in off), statistics.median(c for c, _ in on)
        wall_off, wall_on = statistics.median(w for _, w in off), statistics.median(w for _, w in on)
        extra = cpu_on / cpu_off - 1
        print(f"{model:11} {mods:13} CPU/step unsampled {cpu_off * 1e3:8.3f} ms  sampled {cpu_on * 1e3:8.3f} ms"
              f"  ({cpu_on / cpu_off:.3f}x)  wall {wall_off * 1e3:8.3f} -> {wall_on * 1e3:8.3f} ms"
              f"  | averaged at 1/{SAMPLE_MEAN_GAP}: +{extra / SAMPLE_MEAN_GAP * 100:.2f} %")


if __name__ == "__main__":
    main()
