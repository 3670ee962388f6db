"""Steady-state cost of watch(): step time of a small TransformerEncoder with and without it.

4 layers, d_model 128, 4 heads, ff 512, dropout 0.1, batch 32 x seq 32, MSE loss, Adam, CPU,
one torch thread. Each variant runs in a fresh subprocess: it builds the model (fixed seed),
enters its session, runs W warm-up steps inside it (untimed: a watch session's first steps
are its attach step and the steps 2-4 that core/syncs.py always samples for host syncs), then
times N steps and prints one JSON line. The parent runs rounds, each variant once per round
in rotating order so machine load hits all alike, and prints the median per-step CPU time
(``time.thread_time``: the steadier figure on a shared machine, and with one torch thread all
of the step's work) and wall time, each with its ratio to the bare loop, watch()'s own
account of its hook time over the timed steps, and the fraction of timed steps that carried
per-module detail.

    .venv/bin/python bench/bench_hooks.py [--rounds 3] [--warmup 8] [--steps 40]

One child by hand (what the parent runs): ``bench/bench_hooks.py --child defaults``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from tensorscope.watch import watch

GOALS = {"defaults": 1.03, "every_step": 1.10}
"""CPU ratio to the bare loop that each variant should stay under (from the issue)."""

LABELS = {
    "bare": "bare loop",
    "defaults": "watch(model, opt) defaults",
    "every_step": "every module, every step (max_overhead=None)",
    "step_level": "watch(modules=None): step-level only",
    "every10": "watch(every=10)",
    "item_hooks": "seed-style .item() forward hooks",
}
"""Variant id (as passed to --child) -> the label printed in the table, in table order."""


def build() -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    """The model, its optimizer and one training step; same weights in every child."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(128, 4, 512, dropout=0.1, batch_first=True)
    model = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(32, 32, 128)
    target = torch.randn(32, 32, 128)
    crit = nn.MSELoss()

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), target)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


class ItemHooks:
    """The seed's style: a forward hook per module calling .item() on stats (a sync each)."""

    def __init__(self, model: nn.Module) -> None:
        self.log: list[tuple[float, float]] = []
        self.handles = [m.register_forward_hook(self.hook) for n, m in model.named_modules() if n]

    def hook(self, module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            self.log.append((out.mean().item(), out.std().item()))
        if len(self.log) > 10000:
            self.log.clear()

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def watch_kwargs(variant: str) -> dict[str, Any] | None:
    """Keyword arguments for watch() in a watched variant; None for the unwatched ones."""
    return {
        "defaults": {},
        "every_step": {"max_overhead": None},
        "step_level": {"modules": None},
        "every10": {"every": 10},
    }.get(variant)


def timed(step: Callable[[], Any], n: int) -> tuple[float, float]:
    """CPU and wall seconds per step over n steps."""
    c0, t0 = time.thread_time(), time.perf_counter()
    for _ in range(n):
        step()
    return (time.thread_time() - c0) / n, (time.perf_counter() - t0) / n


def child(variant: str, warmup: int, steps: int) -> dict[str, Any]:
    """Warm up, then time ``steps`` steps of one variant; the JSON-ready result."""
    torch.set_num_threads(1)
    model, opt, step = build()
    out: dict[str, Any] = {"variant": variant}
    kw = watch_kwargs(variant)
    if kw is not None:
        # Entered before warm-up, so the session's first steps (attach, always-sampled sync
        # counting) fall in the untimed part, as they do early in a real run.
        with watch(model, opt, **kw) as session:
            for _ in range(warmup):
                step()
            before = session.overhead
            out["cpu_s"], out["wall_s"] = timed(step, steps)
            after = session.overhead
            records = session.records[-steps:]
        # session.overhead["per_step_s"] averages over the whole session; the difference
        # over the timed steps leaves warm-up out, like the step times.
        counted = after["steps"] - before["steps"]
        out["hooks_s"] = (after["total_s"] - before["total_s"]) / max(1, counted)
        details = [r.signals.get("detail") for r in records]
        if records and all(d is not None for d in details):
            out["detail_frac"] = sum(bool(d) for d in details) / len(records)
        every = records[-1].signals.get("detail_every") if records else None
        if every is not None:
            out["detail_every"] = every
        # Random host-sync sampling still lands on a step now and then: worth seeing when a
        # figure looks off.
        out["sync_sampled"] = sum(bool(r.signals.get("host_syncs_sampled")) for r in records)
    elif variant == "item_hooks":
        hooks = ItemHooks(model)
        try:
            for _ in range(warmup):
                step()
            out["cpu_s"], out["wall_s"] = timed(step, steps)
        finally:
            hooks.close()
    else:
        for _ in range(warmup):
            step()
        out["cpu_s"], out["wall_s"] = timed(step, steps)
    return out


def run_child(variant: str, warmup: int, steps: int) -> dict[str, Any]:
    """One variant in a fresh interpreter; its JSON line, parsed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant,
           "--warmup", str(warmup), "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"bench_hooks: child {variant!r} exited {proc.returncode}")
    # The last line is ours; anything torch warns on stdout before it is not.
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}ms"


def median_of(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, 1 torch thread, {os.cpu_count()} cores, load {load:.1f}; "
          f"{args.rounds} rounds x ({args.warmup} warm-up + {args.steps} timed steps), "
          f"one subprocess per variant per round; medians over rounds")
    base_cpu = median_of(results["bare"], "cpu_s")
    base_wall = median_of(results["bare"], "wall_s")
    head = (f"{'variant':66s} {'cpu/step':>9s} {'ratio':>7s} {'wall/step':>10s} {'ratio':>7s} "
            f"{'in hooks':>9s} {'detail':>7s} {'goal':>8s}")
    print(head)
    for variant, label in LABELS.items():
        rs = results[variant]
        cpu, wall = median_of(rs, "cpu_s"), median_of(rs, "wall_s")
        hooks = median_of(rs, "hooks_s")
        frac = median_of(rs, "detail_frac")
        # detail_every is whatever the session reports (a step count once budgeted).
        everys = [r["detail_every"] for r in rs if r.get("detail_every") is not None]
        every = everys[-1] if everys else None
        detail = "-" if frac is None else f"{frac:.2f}"
        if every is not None:
            detail += f" (1/{every})"
        goal = f"<={GOALS[variant]:.2f}x" if variant in GOALS else ""
        print(f"{label:66s} {fmt_ms(cpu):>9s} {cpu / base_cpu:6.3f}x {fmt_ms(wall):>10s} "
              f"{wall / base_wall:6.3f}x {fmt_ms(hooks):>9s} {detail:>7s} {goal:>8s}")
    print("Goals (CPU ratio, the steadier figure on a shared machine): default watch <= 1.03x, "
          "every module every step <= 1.10x.")
    print("'in hooks': watch()'s own account of the time spent in its hooks per timed step (session.overhead); "
          "'detail': fraction of timed steps with per-module detail.")
    sampled = {LABELS[v]: sum(r.get("sync_sampled", 0) for r in rs)
               for v, rs in results.items() if any(r.get("sync_sampled") for r in rs)}
    if sampled:
        print("Timed steps that host-sync counting sampled (all rounds): "
              + ", ".join(f"{k}: {n}" for k, n in sampled.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--child", choices=list(LABELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--rounds and --steps must be >= 1, --warmup >= 0")
    if args.child:
        print(json.dumps(child(args.child, args.warmup, args.steps)), flush=True)
        return
    names = list(LABELS)
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for variant in order:
            results[variant].append(run_child(variant, args.warmup, args.steps))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    report(results, args)


if __name__ == "__main__":
    main()
